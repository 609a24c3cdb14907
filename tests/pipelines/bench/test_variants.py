"""`bench variants` on a small real slice: one fp32 variant, trained, served and timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.bench.variants import run_variants
from serving.model.textprep import TruncationSpec

pytestmark = pytest.mark.slow


def test_fp32_variant_serves_what_it_trained(small_labelled_file: Path, session_cache: Path) -> None:
    rows = run_variants(
        small_labelled_file,
        variants=(("head 64", TruncationSpec(64, "head", 0), "fp32"),),
        repeats=5,
        encoder_cache=session_cache / "encoder",
        embedding_cache=session_cache / "embeddings",
    )
    (row,) = rows
    assert row.name == "head 64" and set(row.macro_f1) == {"tier", "task"}
    assert row.parity <= 1e-4
    for head in ("tier", "task"):
        # batch-1 serving of an fp32 bundle reproduces the training-time predictions
        assert row.served_macro_f1[head] == pytest.approx(row.macro_f1[head], abs=0.01)
        assert 0.0 < row.macro_f1[head] <= 1.0
    assert 0 < row.p50_64 <= row.p99_64 and 0 < row.p50_1024 <= row.p99_1024
