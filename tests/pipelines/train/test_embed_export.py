"""Embedding cache and atomic bundle writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.train.embed import Embedder
from serving.model.textprep import TruncationSpec


def test_cache_never_reembeds_and_keys_on_spec(encoder_artifact, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    texts = ["first request", "second request", "first request"]
    e1 = Embedder(encoder_artifact, TruncationSpec(), cache_dir=tmp_path)
    a = e1.embed(texts, progress=False)
    assert e1.last_stats["embedded"] == 2
    np.testing.assert_allclose(a[0], a[2])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    e2 = Embedder(encoder_artifact, TruncationSpec(), cache_dir=tmp_path)  # a new process would do this
    b = e2.embed(texts, progress=False)
    assert e2.last_stats["embedded"] == 0 and e2.last_stats["cache_hits"] == 3
    np.testing.assert_array_equal(a, b)
    e3 = Embedder(encoder_artifact, TruncationSpec(max_tokens=64), cache_dir=tmp_path)
    e3.embed(texts[:1], progress=False)
    assert e3.last_stats["embedded"] == 1  # another truncation spec is another cache


def test_corrupt_cache_shard_is_a_miss(encoder_artifact, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    e = Embedder(encoder_artifact, TruncationSpec(), cache_dir=tmp_path)
    e.embed(["hello"], progress=False)
    assert e.cache_dir is not None
    for shard in e.cache_dir.glob("*.npz"):
        shard.write_bytes(b"garbage")
    e2 = Embedder(encoder_artifact, TruncationSpec(), cache_dir=tmp_path)
    out = e2.embed(["hello"], progress=False)
    assert e2.last_stats["embedded"] == 1 and out.shape == (1, 384)


def test_build_bundle_failure_leaves_nothing(trained, encoder_artifact, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pipelines.train.bundle_build import build_bundle

    head = trained.heads[0]
    with pytest.raises(ValueError, match="duplicate head names"):
        build_bundle(tmp_path / "b", encoder_artifact, [head, head], TruncationSpec())
    assert list(tmp_path.iterdir()) == []


def test_int8_cache_is_keyed_on_batch_size(encoder_artifact, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """int8 embeddings depend on their batch, fp32 ones do not: only int8 keys on the batch size."""
    from dataclasses import replace

    spec = TruncationSpec()

    def cache_dir(precision: str, batch: int) -> Path | None:
        enc = replace(encoder_artifact, precision=precision)
        return Embedder(enc, spec, cache_dir=tmp_path, batch_size=batch).cache_dir

    assert cache_dir("fp32", 1) == cache_dir("fp32", 16)
    assert cache_dir("int8", 1) != cache_dir("int8", 16)
    assert cache_dir("int8", 1) != cache_dir("fp32", 1)
