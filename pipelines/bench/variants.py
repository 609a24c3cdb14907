"""`tierroute bench variants`: what truncation and int8 cost in accuracy and buy in latency.

Job: train the default heads (no registry) for several (truncation, precision) variants on the
same data and print test macro-F1 per head next to in-process p50/p99 latency at 64 and 1,024
input tokens. This is how the defaults (head_tail, 128 tokens, fp32) were chosen; rerun it when
the data changes. Slow by nature (one embedding pass per variant; cached afterwards).

"served" macro-F1 is the bundle itself classifying the test texts one at a time, as the service does
without micro-batching; with the parity check in `train` it must equal the training-time number.
int8 needs care to get there: onnxruntime's dynamic quantisation scales activations per batch, so
int8 training embeds one text per call and int8 bundles serve one text per call (a first version
fitted heads on batch-16 int8 embeddings: parity 0.19, served task macro-F1 -1.2 points). The
`int8-static` variant (calibrated QDQ, fixed scales) trains and serves in batches.

Routing value: APGR of the served bundle's `complexity` on the test rows with a `weak_ok` outcome
(weak quality = weak_ok, strong quality = 1: the definition of `evals.eval.routing_value.apgr`, which
`pipelines` cannot import; a test checks both agree). Every variant is scored on the same rows, and
the fp32 default is trained and timed in the same run, so the columns compare within one run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.train.encoder_export import Precision
from serving.model.textprep import TruncationSpec

DEFAULT_VARIANTS: tuple[tuple[str, TruncationSpec, Precision], ...] = (
    ("head 64", TruncationSpec(64, "head", 0), "fp32"),
    ("head_tail 64", TruncationSpec(64, "head_tail", 16), "fp32"),
    ("head 128", TruncationSpec(128, "head", 0), "fp32"),
    ("head_tail 128 (default)", TruncationSpec(128, "head_tail", 32), "fp32"),
    ("head_tail 128 int8", TruncationSpec(128, "head_tail", 32), "int8"),
    ("head_tail 128 int8-static", TruncationSpec(128, "head_tail", 32), "int8-static"),
    ("head_tail 256", TruncationSpec(256, "head_tail", 64), "fp32"),
)


@dataclass
class VariantRow:
    name: str
    macro_f1: dict[str, float]
    served_macro_f1: dict[str, float]
    parity: float
    p50_64: float
    p99_64: float
    p50_1024: float
    p99_1024: float
    routing_apgr: float = float("nan")
    routing_rows: int = 0
    embed_texts_per_s: float = float("nan")


def select_variants(names: str | None) -> tuple[tuple[str, TruncationSpec, Precision], ...]:
    """DEFAULT_VARIANTS whose name contains one of the comma-separated `names` (all when None)."""
    if not names:
        return DEFAULT_VARIANTS
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    picked = tuple(v for v in DEFAULT_VARIANTS if any(w == v[0] or w == v[0].split(" (")[0] for w in wanted))
    if not picked:
        raise ValueError(f"no variant named {names!r}; known: {', '.join(v[0] for v in DEFAULT_VARIANTS)}")
    return picked


def run_variants(
    data: Path,
    variants: tuple[tuple[str, TruncationSpec, Precision], ...] = DEFAULT_VARIANTS,
    repeats: int = 60,
    encoder_cache: Path = Path("models/encoder"),
    embedding_cache: Path | None = Path(".cache/embeddings"),
    keep_dir: Path | None = None,
) -> list[VariantRow]:
    """Train, serve and time each variant; with `keep_dir`, its bundles are kept there (for `bench http`)."""
    from pipelines.bench.classify import measure, text_of_tokens
    from pipelines.train.classifier import TrainConfig, train
    from serving.model.bundle import TOKENIZER_FILE, Bundle

    test = _test_rows(data)
    rows: list[VariantRow] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = str(keep_dir) if keep_dir is not None else tmp_dir
        for name, spec, precision in variants:
            config = TrainConfig(
                data=data,
                spec=spec,
                precision=precision,
                register=False,
                out_dir=Path(tmp),
                model_name=_slug(name) if keep_dir is not None else "tierroute-classifier",
                encoder_cache=encoder_cache,
                embedding_cache=embedding_cache,
            )
            result = train(config, progress=True, echo=lambda _m: None)
            bundle = Bundle.load(result.bundle_dir, threads=2)
            served, complexity = served_predictions(bundle, test, config.label_columns)
            apgr, n_routing = routing_value(complexity, test)
            lat = {}
            for n in (64, 1024):
                text = text_of_tokens(result.bundle_dir / TOKENIZER_FILE, n)
                s = measure(partial(bundle.predict, [text]), repeats)
                lat[n] = (float(np.percentile(s, 50)), float(np.percentile(s, 99)))
            rows.append(
                VariantRow(
                    name,
                    {h: result.metrics[f"test_{h}_macro_f1"] for h in config.label_columns},
                    served,
                    result.metrics["parity_max_abs_diff"],
                    lat[64][0],
                    lat[64][1],
                    lat[1024][0],
                    lat[1024][1],
                    apgr,
                    n_routing,
                    result.metrics.get("embed_texts_per_s", float("nan")),
                )
            )
    return rows


def _slug(name: str) -> str:
    """`head_tail 128 int8-static` -> `variant-head_tail-128-int8-static` (a kept bundle's folder prefix)."""
    kept = "".join(c if c.isalnum() or c in "_-" else "-" for c in name.split(" (")[0])
    return "variant-" + "-".join(p for p in kept.split("-") if p)


def _test_rows(data: Path) -> Any:
    """The test split with tier, task and, where the file has it, the `weak_ok` outcome."""
    from pipelines.data.dataset import DataValidationError, load_labelled_file

    try:
        df = load_labelled_file(data, ("tier", "task", "weak_ok"), allow_missing_labels=True).df
        df = df[df["tier"].notna() & df["task"].notna()]
    except DataValidationError:  # no weak_ok column: no routing value, the rest as before
        df = load_labelled_file(data, ("tier", "task")).df
    return df[df["split"] == "test"].reset_index(drop=True)


def served_predictions(bundle: Any, test: Any, heads: tuple[str, ...]) -> tuple[dict[str, float], np.ndarray]:
    """Macro-F1 per head of the bundle classifying each test text alone (batch 1), and its `complexity`."""
    from sklearn.metrics import f1_score

    from pipelines.train.progress import progress
    from serving.model.bundle import TIER_HEAD, complexity_from_tier_probs

    labels = {spec.name: spec.labels for spec in bundle.heads}
    preds: dict[str, list[str]] = {h: [] for h in heads}
    complexity = np.full(len(test), np.nan)
    for i, text in enumerate(progress(test["text"].tolist(), desc="served (batch 1)", unit="text")):
        out = bundle.predict_arrays([text])
        for h in heads:
            preds[h].append(labels[h][int(out.probs[h][0].argmax())])
        if TIER_HEAD in out.probs:
            complexity[i] = complexity_from_tier_probs(out.probs[TIER_HEAD])[0]
    return {h: float(f1_score(test[h].tolist(), preds[h], average="macro")) for h in heads}, complexity


def served_macro_f1(bundle: Any, test: Any, heads: tuple[str, ...]) -> dict[str, float]:
    """Macro-F1 of the bundle classifying each test text alone (batch 1), per head."""
    return served_predictions(bundle, test, heads)[0]


def apgr(score: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    """Area under the performance-gap-recovered curve when the highest scores go to the strong model.

    Same definition as `evals.eval.routing_value.apgr` (tie groups routed together, random = 0.5);
    NaN when there is no gap to recover."""
    r, w, s = (np.asarray(a, dtype=np.float64) for a in (score, weak, strong))
    order = np.argsort(-r, kind="stable")
    ends = np.append(np.flatnonzero(np.diff(r[order]) != 0) + 1, r.size)
    cum = np.concatenate([[0.0], np.cumsum((s - w)[order])])[np.concatenate([[0], ends])]
    gap = float(s.mean() - w.mean())
    if r.size == 0 or gap <= 0:
        return float("nan")
    pgr = cum / (r.size * gap)
    share = np.concatenate([[0], ends]) / r.size
    return float(np.sum(np.diff(share) * (pgr[1:] + pgr[:-1]) / 2.0))


def routing_value(complexity: np.ndarray, test: Any) -> tuple[float, int]:
    """(APGR of `complexity`, rows) on the test rows with a `weak_ok` outcome; (NaN, 0) without any."""
    if "weak_ok" not in test.columns:
        return float("nan"), 0
    mask = test["weak_ok"].notna().to_numpy() & np.isfinite(complexity)
    if not mask.any():
        return float("nan"), 0
    weak = np.array(
        [str(v).strip().lower() in ("true", "1", "1.0") for v in test["weak_ok"][mask]], dtype=np.float64
    )
    return apgr(complexity[mask], weak, np.ones_like(weak)), int(mask.sum())
