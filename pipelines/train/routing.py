"""The routing head: calibrated P(the cheap model's answer is as good as the strong model's), `p_weak_ok`.

Job: assemble the routing rows (the outcome rows of `pipelines.data.outcomes` plus any labelled rows
with a `weak_ok` value), fit one logistic head on the MiniLM embedding plus the request features
(`serving.model.textprep.request_features`, computed by the same function at serving time), and export
it as an ONNX graph that the bundle writer splices beside the tier and task heads.

The head (issue #13, chosen by leave-one-source-out routing value; see README "Routing value"):
- input: `[embedding (384), request features (11)]`, standardised by a `StandardScaler` that is part of
  the exported pipeline (its mean/scale live in the ONNX graph, so serving standardises exactly as
  training did);
- objective (`DEFAULT_OBJECTIVE = "pairwise_difficulty"`): a linear ranking head fitted on pairs of rows
  of the *same source* (`pipelines.train.routing_objectives.pairwise_logistic`), target the row's item
  `difficulty` (1 - mean quality of every classed model, `pipelines.data.outcomes`; rows without one,
  such as the deployment's own `traffic` rows of `tierroute data from-log`, rank by `1 - weak_ok` within
  their source). Every source weighs the same, except `traffic`, which weighs as much as four sources
  (`DEFAULT_SOURCE_WEIGHTS`). `objective="logistic"` is the previous head: a pooled logistic `weak_ok`;
- a length prior: `length_coef` x the standardised log token count (the signal that transfers best
  between sources) is added to the "strong needed" score (in standard deviations of the pairwise head's
  training scores; in logit units for "logistic"), folded into the head's weights;
- calibration: Platt scaling on `weak_ok` (a slope and an offset on the score, slope kept > 0 so the
  ranking is the blended head's) fitted on the same equally weighted rows, folded into the weights too.
  The result is still one `StandardScaler + LogisticRegression` pipeline, which skl2onnx exports exactly.

Defaults (`DEFAULT_C = 0.01`, `DEFAULT_LENGTH_COEF = 2.0`, pairwise difficulty) were chosen by mean and
worst-source held-out APGR on `tierroute train`'s own routing rows (`python -m
evals.eval.routing_experiments --grid within`): 0.564 / 0.514 against prompt length's 0.557 / 0.511 and
the previous logistic `weak_ok` head + 4 x z(len)'s 0.544 / 0.504. The gain comes from the graded
difficulty target (a pooled ridge on it does as well); within-source objectives on `weak_ok` alone did
not help, and choosing the length prior by nested leave-one-source-out was worse than a fixed one.
evals/RESULTS.md "Routing value" has the table.

Trade-off: calibration on the training sources says nothing about a new source's base rate; the
LOSO report (`pipelines.train.loso.routing_loso`) is what shows how the head ranks a new source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.model.textprep import REQUEST_FEATURE_NAMES, REQUEST_FEATURES_VERSION

ROUTING_INPUT = "request_features"
ROUTING_OUTPUT = "p_weak_ok"
LOG_TOKENS = REQUEST_FEATURE_NAMES.index("log_tokens")
DEFAULT_C = 0.01
DEFAULT_LENGTH_COEF = 2.0
DEFAULT_ROWS_PER_SOURCE = 2000
OBJECTIVES: tuple[str, ...] = ("logistic", "pairwise_difficulty")
DEFAULT_OBJECTIVE = "pairwise_difficulty"
MIN_PLATT_SLOPE = 0.05
DEFAULT_SOURCE_WEIGHTS: dict[str, float] = {"traffic": 4.0}
"""Relative total weight per source (others: 1). `traffic` = rows of `tierroute data from-log`: the
deployment's own outcomes for its own cheap model weigh as much as the four public outcome sources
together. Measured with the previous (logistic `weak_ok`) head on the closed loop (`python -m
evals.eval.closed_loop --traffic-weight W`, evals/RESULTS.md
"Closing the loop"): weight 1/2/4/8 all rank the failing slice perfectly (AUC 1.0), but with weight 1
the Platt slope stays at its floor and `complexity` hardly moves (0.42 vs 0.35, held-out Brier 0.218);
4 gives 0.54 vs 0.19 (Brier 0.115), 8 0.66 vs 0.11 (0.062); LOSO APGR on the public sources with the
traffic in training is 0.552 mean at every weight (worst source 0.504-0.507)."""


def equal_source_weights(
    sources: np.ndarray, source_weights: Mapping[str, float] | None = None
) -> np.ndarray:
    """Row weights giving every source the same total weight (mean weight 1), or, with
    `source_weights`, a total weight proportional to the source's factor (default 1; 0 drops it)."""
    names, inverse, counts = np.unique(
        np.asarray(sources).astype(str), return_inverse=True, return_counts=True
    )
    factors = np.array([float((source_weights or {}).get(str(n), 1.0)) for n in names], dtype=np.float64)
    if np.any(factors < 0) or not np.any(factors > 0):
        raise ValueError(f"source weights must be >= 0 and not all 0, got {dict(source_weights or {})}")
    per_row = (factors / counts)[inverse]
    return np.asarray(per_row * len(inverse) / per_row.sum(), dtype=np.float64)


@dataclass
class RoutingHead:
    """A fitted routing head: scaler + logistic regression on `[embedding, request features]`."""

    model: Any  # sklearn Pipeline(StandardScaler, LogisticRegression), blend and calibration folded in
    C: float
    length_coef: float
    platt: tuple[float, float]
    use_embedding: bool
    rows: dict[str, int] = field(default_factory=dict)
    objective: str = "logistic"

    def predict(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """p_weak_ok per row, float64 [N]."""
        X = np.hstack([np.asarray(emb, np.float32), np.asarray(feats, np.float32)])
        return np.asarray(self.model.predict_proba(X)[:, 1], dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {
            "input": ROUTING_INPUT,
            "output": ROUTING_OUTPUT,
            "features": list(REQUEST_FEATURE_NAMES),
            "features_version": REQUEST_FEATURES_VERSION,
            "target": (
                "weak_ok (cheap model class as good as the strong class), every source the same total"
                " weight times its --routing-source-weight factor (traffic 4 by default)"
                if self.objective == "logistic"
                else "difficulty (1 - mean quality of every classed model; rows without one: 1 - weak_ok),"
                " ranked on pairs of rows of the same source, every source the same total weight times"
                " its --routing-source-weight factor; Platt scaling on weak_ok"
            ),
            "objective": self.objective,
            "inputs": "embedding + request features" if self.use_embedding else "request features",
            "C": self.C,
            "length_coef": self.length_coef,
            "platt": list(self.platt),
            "training_rows": dict(self.rows),
            "complexity": "1 - p_weak_ok",
        }


def fit_routing_head(
    emb: np.ndarray,
    feats: np.ndarray,
    weak_ok: np.ndarray,
    sources: np.ndarray,
    *,
    C: float = DEFAULT_C,
    length_coef: float = DEFAULT_LENGTH_COEF,
    use_embedding: bool = True,
    source_weights: Mapping[str, float] | None = None,
    seed: int = 0,
    objective: str = DEFAULT_OBJECTIVE,
    difficulty: np.ndarray | None = None,
) -> RoutingHead:
    """Fit the routing head (module docstring).

    `objective` "logistic": the pooled logistic `weak_ok` head, `length_coef` subtracted from its
    standardised log-token weight (logit units). "pairwise_difficulty": a ranking head on pairs of rows
    of the same source (`pipelines.train.routing_objectives.pairwise_logistic`) whose target is the
    row's `difficulty` (`pipelines.data.outcomes`; rows without one, e.g. `traffic`, rank by
    `1 - weak_ok`, compared only with rows of their own source), put in standard-deviation units of its
    training scores, plus `length_coef` x z(log tokens). Both end as one logistic pipeline with Platt
    scaling on `weak_ok`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    y = np.asarray(weak_ok, dtype=bool).astype(np.int64)
    if len(np.unique(y)) < 2:
        raise ValueError("the routing head needs rows where the cheap model was and was not good enough")
    X = np.hstack([np.asarray(emb, np.float32), np.asarray(feats, np.float32)]).astype(np.float64)
    n_emb = np.asarray(emb).shape[1]
    if not use_embedding:
        X[:, :n_emb] = 0.0
    w = equal_source_weights(sources, source_weights)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
    model.fit(X, y, logisticregression__sample_weight=w)
    lr = model[-1]
    coef = lr.coef_.copy()
    if objective == "pairwise_difficulty":
        coef = -_pairwise_coef(X, y, sources, difficulty, C, source_weights, seed)[None, :]
        lr.intercept_ = np.zeros_like(lr.intercept_)
    if not use_embedding:
        coef[:, :n_emb] = 0.0
    coef[0, n_emb + LOG_TOKENS] -= length_coef  # longer -> less likely that the cheap model will do
    lr.coef_ = coef
    logit = np.asarray(model.decision_function(X), dtype=np.float64)
    platt = LogisticRegression(C=1e4, max_iter=1000).fit(logit[:, None], y, sample_weight=w)
    slope = max(float(platt.coef_[0, 0]), MIN_PLATT_SLOPE)
    offset = float(platt.intercept_[0])
    lr.coef_ = lr.coef_ * slope
    lr.intercept_ = lr.intercept_ * slope + offset
    counts = dict(zip(*np.unique(np.asarray(sources).astype(str), return_counts=True), strict=True))
    return RoutingHead(
        model,
        C,
        length_coef,
        (slope, offset),
        use_embedding,
        {str(k): int(v) for k, v in counts.items()},
        objective,
    )


def _pairwise_coef(
    X: np.ndarray,
    y: np.ndarray,
    sources: np.ndarray,
    difficulty: np.ndarray | None,
    C: float,
    source_weights: Mapping[str, float] | None,
    seed: int,
) -> np.ndarray:
    """The pairwise difficulty head's weights over standardised X, in SD units of its training scores
    (higher: harder). Rows without a difficulty rank by `1 - weak_ok` within their own source."""
    from pipelines.train.routing_objectives import pairwise_logistic

    target = (1.0 - y).astype(np.float64)
    if difficulty is not None:
        d = np.asarray(difficulty, dtype=np.float64)
        target = np.where(np.isfinite(d), d, target)
    head = pairwise_logistic(X, target, sources, C=C, source_weights=source_weights, seed=seed)
    sd = float(np.std(head.score(X))) or 1.0
    return head.coef / sd


def routing_head_to_onnx(head: RoutingHead, width: int) -> Any:
    """skl2onnx graph: input `routing_input` [N, width] -> `probabilities` [N, 2] (column 1: weak ok)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    return convert_sklearn(
        head.model,
        initial_types=[("routing_input", FloatTensorType([None, width]))],
        options={id(head.model[-1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )


# ------------------------------------------------------------------------------ routing rows


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}


def weak_ok_values(values: Any) -> list[bool | None]:
    """A `weak_ok` column as booleans (None where empty), whatever the file's type for it.

    `load_labelled_file` hands label columns over as the strings "true"/"false", CSV and JSONL files may
    hold text or 0/1: `astype(bool)` would read the string "false" as True (a non-empty string), which
    once turned every traffic row into `weak_ok=True`. Raises ValueError for anything else."""
    import pandas as pd

    out: list[bool | None] = []
    for v in list(values):
        text = v.strip().lower() if isinstance(v, str) else None
        if text == "" or (text is None and pd.isna(v)):
            out.append(None)
        elif text is not None and text in _BOOL_TEXT:
            out.append(_BOOL_TEXT[text])
        elif isinstance(v, bool | np.bool_ | int | np.integer | float | np.floating) and float(v) in (0, 1):
            out.append(bool(v))
        else:
            raise ValueError(f"weak_ok must be true/false (or 1/0), got {v!r}")
    return out


def routing_rows(
    labelled: Any,
    outcomes: Path | None,
    raw: Path | None,
    *,
    rows_per_source: int = DEFAULT_ROWS_PER_SOURCE,
    echo: Any = print,
) -> Any:
    """Rows the routing head trains on: `text, source, weak_ok, weak_quality, strong_quality, difficulty`.

    Outcome rows come from `outcomes` (written by `tierroute data build`) or, when that file is absent,
    are built in memory from `raw` (`pipelines.data.outcomes.build_outcomes`, a few seconds). RouteLLM
    MMLU rows are kept to the texts the labelled data ships (their embeddings are the classifier's
    anyway); every source is capped at `rows_per_source` rows by a seeded hash of the row id (the same
    rule as `evals.eval.routing_experiments`). Labelled rows with a `weak_ok` value whose text is not an
    outcome row (before the cap: a row the cap left out does not come back) and whose source is not an
    outcome source are added with their own `source` column's value ("labelled" without one) and no
    quality (they train the head; LOSO scores
    only rows with both qualities): rows from `tierroute data from-log` arrive as source `traffic`.
    Returns None when there is nothing to train on."""
    import pandas as pd

    frames = []
    if outcomes is not None and Path(outcomes).is_file():
        out = pd.read_parquet(outcomes)
        echo(f"routing rows: {len(out):,} outcome rows from {outcomes}")
    elif raw is not None and Path(raw).is_dir():
        from pipelines.data.outcomes import build_outcomes

        try:
            out = build_outcomes(Path(raw), None)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            echo(f"routing rows: no outcome rows ({exc})")
            out = None
        else:
            echo(
                f"routing rows: {len(out):,} outcome rows built from {raw} (`tierroute data build` writes them)"  # noqa: E501
            )
    else:
        out = None
    texts = set(labelled["text"].astype(str))
    outcome_texts: set[str] = set()
    outcome_sources: set[str] = set()
    if out is not None and len(out):
        outcome_texts = set(out["text"].astype(str))
        outcome_sources = set(out["source"].astype(str))
        out = out[(out["source"] != "routellm_mmlu") | out["text"].isin(texts)]
        out = out.assign(_h=out["id"].astype(str).map(_hash)).sort_values(["source", "_h"])
        out = out.groupby("source", sort=True).head(rows_per_source)
        if "difficulty" not in out.columns:  # an outcomes file written before the column existed
            out = out.assign(difficulty=np.nan)
        frames.append(out[["text", "source", "weak_ok", "weak_quality", "strong_quality", "difficulty"]])
    if "weak_ok" in labelled.columns:
        values = pd.Series(weak_ok_values(labelled["weak_ok"]), index=labelled.index, dtype=object)
        keep = values.notna() & ~labelled["text"].astype(str).isin(outcome_texts)
        if "source" in labelled.columns:  # an outcome source's rows come from the outcome rows only
            keep &= ~labelled["source"].astype(str).isin(outcome_sources)
        extra = labelled[keep]
        if len(extra):
            frames.append(
                pd.DataFrame(
                    {
                        "text": extra["text"].astype(str),
                        "source": extra["source"].fillna("labelled").astype(str)
                        if "source" in extra
                        else "labelled",
                        "weak_ok": values[extra.index].astype(bool),
                        "weak_quality": np.nan,
                        "strong_quality": np.nan,
                        "difficulty": np.nan,
                    }
                )
            )
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True).drop_duplicates("text").reset_index(drop=True)
    df["weak_ok"] = df["weak_ok"].astype(bool)
    return df


def sources_summary(sources: Sequence[str]) -> str:
    names, counts = np.unique(np.asarray(sources).astype(str), return_counts=True)
    return ", ".join(f"{n} {c:,}" for n, c in zip(names, counts, strict=True))
