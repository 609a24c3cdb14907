"""`tierroute bench fast`: the three variants of a two-stage bundle timed in one run (no timed assertions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.bench.fast import bench_fast, load_variants
from serving.model.two_stage import TwoStageBundle


def test_bench_fast_rows_cover_every_variant_and_input(trained_static: Any) -> None:
    texts = ["hi", "Prove that there are infinitely many primes.", "Summarise this article about tea."]
    rows = bench_fast(Path(trained_static.two_stage_dir), texts, token_sizes=(16,), repeats=3, threads=1)
    assert [(r.variant, r.inputs) for r in rows] == [
        ("fast-only", "16 tokens"),
        ("MiniLM-only", "16 tokens"),
        ("two-stage", "16 tokens"),
        ("fast-only", "3 real texts"),
        ("MiniLM-only", "3 real texts"),
        ("two-stage", "3 real texts"),
    ]
    for r in rows:
        assert 0 < r.p50_ms <= r.p99_ms
        assert (r.share_fast is not None) == (r.variant == "two-stage")
    variants = load_variants(Path(trained_static.two_stage_dir), threads=1)
    assert isinstance(variants["two-stage"], TwoStageBundle)
    assert not isinstance(variants["fast-only"], TwoStageBundle)
    assert variants["fast-only"].manifest["encoder"]["type"] == "static"


def test_bench_fast_refuses_a_plain_bundle(trained_bundle: Path) -> None:
    with pytest.raises(ValueError, match="not a two-stage bundle"):
        load_variants(trained_bundle)
