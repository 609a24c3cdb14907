"""Scoring a model on a labelled set: per-head metrics with intervals, slices, and routing value.

Job: pure functions from arrays (probabilities, label indices, outcome columns) to the numbers
`tierroute eval` reports and the promotion gate compares:
- per head: accuracy, macro-F1, ECE with 95% bootstrap intervals; log-loss; per-class precision,
  recall, F1 (F1 with an interval) and support;
- per slice (e.g. `source`): n, accuracy and macro-F1 with intervals, per head;
- routing value when the set has per-model outcomes (see `OUTCOME_COLUMNS`): APGR and the strong
  share for 50% / 80% of the quality gap, for the model's router score next to a prompt-length
  baseline, random routing (0.5 by construction) and the oracle, all on the same rows.

Outcome columns (first match wins, rows with a missing value are left out of routing value):
- `weak_quality` + `strong_quality`: the routing pair's mean quality (`data/labelled/outcomes.parquet`);
- `weak_score` + `strong_score`: numeric quality per row (e.g. judge scores in [0, 1]);
- `weak_correct` + `strong_correct`: booleans (or 0/1), e.g. benchmark correctness;
- `weak_ok` alone: the weak model's answer was as good as the strong one's; the strong model is
  taken as acceptable on every row, so quality = share of requests answered acceptably.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evals.eval.routing_value import RoutingValue, evaluate_router, oracle_score
from evals.stats.bootstrap import Interval, bootstrap_classification, confusion_matrix
from evals.stats.calibration import bootstrap_ece, top_label

OUTCOME_COLUMNS: tuple[tuple[str, ...], ...] = (
    ("weak_quality", "strong_quality"),
    ("weak_score", "strong_score"),
    ("weak_correct", "strong_correct"),
    ("weak_ok",),
)
MIN_SLICE_ROWS = 10


@dataclass
class HeadEvaluation:
    head: str
    labels: tuple[str, ...]
    n: int
    accuracy: Interval
    macro_f1: Interval
    ece: Interval
    log_loss: float
    per_class: list[dict[str, Any]]
    confusion: np.ndarray

    def flat_metrics(self, prefix: str = "") -> dict[str, float]:
        out = {f"{prefix}{self.head}_n": float(self.n), f"{prefix}{self.head}_log_loss": self.log_loss}
        for name, iv in (("accuracy", self.accuracy), ("macro_f1", self.macro_f1), ("ece", self.ece)):
            out[f"{prefix}{self.head}_{name}"] = iv.estimate
            out[f"{prefix}{self.head}_{name}_low"] = iv.low
            out[f"{prefix}{self.head}_{name}_high"] = iv.high
        for row in self.per_class:
            out[f"{prefix}{self.head}_{row['label']}_f1"] = row["f1"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "n": self.n,
            "accuracy": self.accuracy.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "ece": self.ece.to_dict(),
            "log_loss": self.log_loss,
            "per_class": self.per_class,
            "confusion": self.confusion.tolist(),
            "labels": list(self.labels),
        }


@dataclass
class SliceRow:
    column: str
    value: str
    head: str
    n: int
    accuracy: Interval
    macro_f1: Interval

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "value": self.value,
            "head": self.head,
            "n": self.n,
            "accuracy": self.accuracy.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
        }


@dataclass
class RoutingEvaluation:
    outcome_source: str
    n: int
    routers: list[RoutingValue] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"outcomes": self.outcome_source, "n": self.n, "routers": [r.to_dict() for r in self.routers]}


def evaluate_head(
    head: str,
    labels: Sequence[str],
    y_true: np.ndarray,
    proba: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> HeadEvaluation:
    """Metrics of one head on rows with a label (y_true >= 0)."""
    k = len(labels)
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if t.size == 0:
        raise ValueError(f"head {head!r}: no labelled rows")
    pred = p.argmax(axis=1)
    ci = bootstrap_classification(t, pred, k, n_boot=n_boot, seed=seed)
    conf, correct = top_label(p, t)
    ece = bootstrap_ece(conf, correct, n_boot=n_boot, seed=seed)
    cm = confusion_matrix(t, pred, k)
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(axis=0) > 0, tp / cm.sum(axis=0), np.nan)
        recall = np.where(cm.sum(axis=1) > 0, tp / cm.sum(axis=1), np.nan)
    per_class = [
        {
            "label": labels[j],
            "precision": float(precision[j]),
            "recall": float(recall[j]),
            "f1": ci.per_class_f1[j].estimate,
            "f1_low": ci.per_class_f1[j].low,
            "f1_high": ci.per_class_f1[j].high,
            "support": int(cm[j].sum()),
        }
        for j in range(k)
    ]
    log_loss = float(-np.mean(np.log(np.clip(p[np.arange(t.size), t], 1e-12, 1.0))))
    return HeadEvaluation(
        head, tuple(labels), int(t.size), ci.accuracy, ci.macro_f1, ece, log_loss, per_class, cm
    )


def evaluate_slices(
    column: str,
    values: Sequence[Any],
    head: str,
    y_true: np.ndarray,
    proba: np.ndarray,
    n_classes: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    min_rows: int = MIN_SLICE_ROWS,
) -> list[SliceRow]:
    """Accuracy and macro-F1 with intervals per distinct value of `column` (labelled rows, >= min_rows)."""
    vals = np.array(["<missing>" if v is None or v != v else str(v) for v in values], dtype=object)
    t = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(proba).argmax(axis=1)
    rows: list[SliceRow] = []
    for value in sorted(set(vals.tolist())):
        m = (vals == value) & (t >= 0)
        if int(m.sum()) < min_rows:
            continue
        ci = bootstrap_classification(t[m], pred[m], n_classes, n_boot=n_boot, seed=seed)
        rows.append(SliceRow(column, value, head, int(m.sum()), ci.accuracy, ci.macro_f1))
    return rows


def outcome_arrays(df: Any) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(description, weak quality, strong quality) from the first matching outcome columns, or None.

    Values are floats with NaN where a row lacks an outcome."""
    for cols in OUTCOME_COLUMNS:
        if all(c in df.columns for c in cols):
            if len(cols) == 2:
                weak = _as_float(df[cols[0]].tolist())
                strong = _as_float(df[cols[1]].tolist())
                return f"{cols[0]} / {cols[1]}", weak, strong
            weak = _as_float(df[cols[0]].tolist())
            strong = np.where(np.isnan(weak), np.nan, 1.0)
            return f"{cols[0]} (strong model assumed acceptable)", weak, strong
    return None


def _as_float(values: Sequence[Any]) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, str):
            s = v.strip().lower()
            if s in ("true", "yes", "1"):
                out[i] = 1.0
            elif s in ("false", "no", "0"):
                out[i] = 0.0
            elif s:
                try:
                    out[i] = float(s)
                except ValueError:
                    raise ValueError(f"outcome value {v!r} is not a number or boolean") from None
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue  # pandas NA
        if f == f:
            out[i] = f
    return out


def router_score(
    spec: str,
    probs: Mapping[str, np.ndarray],
    heads: Mapping[str, Sequence[str]],
    p_weak_ok: np.ndarray | None = None,
) -> np.ndarray:
    """Per-row 'send to strong' score from the model's probabilities.

    `complexity`: what the bundle serves as `complexity`: 1 - `p_weak_ok` when the bundle has a routing
    head (pass its output), else expected tier index / (K-1) from the `tier` head;
    `HEAD:LABEL`: P(HEAD = LABEL);
    `not:HEAD:LABEL`: 1 - P(HEAD = LABEL) (e.g. `not:tier:simple`, or `not:weak_ok:True` for a
    head trained on `weak_ok`)."""
    if spec == "complexity":
        if p_weak_ok is not None:
            return 1.0 - np.asarray(p_weak_ok, dtype=np.float64)
        if "tier" not in probs:
            raise ValueError("router score 'complexity' needs a 'tier' head; use HEAD:LABEL instead")
        p = np.asarray(probs["tier"], dtype=np.float64)
        return (p @ np.arange(p.shape[1])) / max(p.shape[1] - 1, 1)
    negate = spec.startswith("not:")
    body = spec[4:] if negate else spec
    head, sep, label = body.partition(":")
    if not sep or head not in probs:
        raise ValueError(
            f"router score {spec!r}: expected complexity, HEAD:LABEL or not:HEAD:LABEL with a known head"
        )
    labels = list(heads[head])
    if label not in labels:
        raise ValueError(f"router score {spec!r}: head {head!r} has no label {label!r} (labels: {labels})")
    s = np.asarray(probs[head], dtype=np.float64)[:, labels.index(label)]
    return 1.0 - s if negate else s


def evaluate_routing(
    outcome_source: str,
    weak: np.ndarray,
    strong: np.ndarray,
    scores: Mapping[str, np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> RoutingEvaluation | None:
    """Routing value of every named score on rows with both outcomes; None when there is no gap."""
    m = ~np.isnan(weak) & ~np.isnan(strong)
    if int(m.sum()) < 2 or float(np.mean(strong[m]) - np.mean(weak[m])) <= 0:
        return None
    w, s = weak[m], strong[m]
    routers = [evaluate_router(name, sc[m], w, s, n_boot=n_boot, seed=seed) for name, sc in scores.items()]
    routers.append(
        evaluate_router("oracle (upper bound)", oracle_score(w, s), w, s, n_boot=n_boot, seed=seed)
    )
    return RoutingEvaluation(outcome_source, int(m.sum()), routers)
