"""`tierroute bench variants`: what truncation and int8 cost in accuracy and buy in latency.

Job: train the default heads (no registry) for several (truncation, precision) variants on the
same data and print test macro-F1 per head next to in-process p50/p99 latency at 64 and 1,024
input tokens. This is how the defaults (head_tail, 128 tokens, fp32) were chosen; rerun it when
the data changes. Slow by nature (one embedding pass per variant; cached afterwards).

"served" macro-F1 is the bundle itself classifying the test texts one at a time, as the service does
without micro-batching; with the parity check in `train` it must equal the training-time number.
int8 needs care to get there: onnxruntime's dynamic quantisation scales activations per batch, so
int8 training embeds one text per call and int8 bundles serve one text per call (a first version
fitted heads on batch-16 int8 embeddings: parity 0.19, served task macro-F1 -1.2 points).
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


def run_variants(
    data: Path,
    variants: tuple[tuple[str, TruncationSpec, Precision], ...] = DEFAULT_VARIANTS,
    repeats: int = 60,
    encoder_cache: Path = Path("models/encoder"),
    embedding_cache: Path | None = Path(".cache/embeddings"),
) -> list[VariantRow]:
    from pipelines.bench.classify import measure, text_of_tokens
    from pipelines.data.dataset import load_labelled_file
    from pipelines.train.classifier import TrainConfig, train
    from serving.model.bundle import TOKENIZER_FILE, Bundle

    test = load_labelled_file(data, ("tier", "task")).df
    test = test[test["split"] == "test"].reset_index(drop=True)
    rows: list[VariantRow] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec, precision in variants:
            config = TrainConfig(
                data=data,
                spec=spec,
                precision=precision,
                register=False,
                out_dir=Path(tmp),
                encoder_cache=encoder_cache,
                embedding_cache=embedding_cache,
            )
            result = train(config, progress=True, echo=lambda _m: None)
            bundle = Bundle.load(result.bundle_dir, threads=2)
            served = served_macro_f1(bundle, test, config.label_columns)
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
                )
            )
    return rows


def served_macro_f1(bundle: Any, test: Any, heads: tuple[str, ...]) -> dict[str, float]:
    """Macro-F1 of the bundle classifying each test text alone (batch 1), per head."""
    from sklearn.metrics import f1_score

    from pipelines.train.progress import progress

    labels = {spec.name: spec.labels for spec in bundle.heads}
    preds: dict[str, list[str]] = {h: [] for h in heads}
    for text in progress(test["text"].tolist(), desc="served (batch 1)", unit="text"):
        out = bundle.predict_arrays([text])
        for h in heads:
            preds[h].append(labels[h][int(out.probs[h][0].argmax())])
    return {h: float(f1_score(test[h].tolist(), preds[h], average="macro")) for h in heads}
