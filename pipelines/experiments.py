"""`tierroute bench variants`: what truncation and int8 cost in accuracy and buy in latency.

Job: train the default heads (no registry) for several (truncation, precision) variants on the
same data and print test macro-F1 per head next to in-process p50/p99 latency at 64 and 1,024
input tokens. This is how the defaults (head_tail, 128 tokens, fp32) were chosen; rerun it when
the data changes. Slow by nature (one embedding pass per variant; cached afterwards).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from pipelines.encoder_export import Precision
from serving.textprep import TruncationSpec

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
    p50_64: float
    p99_64: float
    p50_1024: float
    p99_1024: float


def run_variants(
    data: Path,
    variants: tuple[tuple[str, TruncationSpec, Precision], ...] = DEFAULT_VARIANTS,
    repeats: int = 60,
) -> list[VariantRow]:
    from pipelines.bench import measure, text_of_tokens
    from pipelines.train import TrainConfig, train
    from serving.bundle import TOKENIZER_FILE, Bundle

    rows: list[VariantRow] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec, precision in variants:
            config = TrainConfig(
                data=data,
                spec=spec,
                precision=precision,
                register=False,
                out_dir=Path(tmp),
            )
            result = train(config, progress=True, echo=lambda _m: None)
            bundle = Bundle.load(result.bundle_dir, threads=2)
            lat = {}
            for n in (64, 1024):
                text = text_of_tokens(result.bundle_dir / TOKENIZER_FILE, n)
                s = measure(partial(bundle.predict, [text]), repeats)
                lat[n] = (float(np.percentile(s, 50)), float(np.percentile(s, 99)))
            rows.append(
                VariantRow(
                    name,
                    {h: result.metrics[f"test_{h}_macro_f1"] for h in config.label_columns},
                    lat[64][0],
                    lat[64][1],
                    lat[1024][0],
                    lat[1024][1],
                )
            )
    return rows
