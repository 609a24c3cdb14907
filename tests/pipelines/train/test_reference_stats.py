"""Reference statistics: computed from arrays, saved and loaded without pickle, validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.train.reference_stats import FILENAME, ReferenceStats, ReferenceStatsError, compute_stats

HEADS = {"tier": ("simple", "complex", "reasoning"), "task": ("code", "math", "chat")}


def _probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    x = rng.gamma(1.0, size=(n, k))
    return x / x.sum(axis=1, keepdims=True)


def _stats(n: int = 300, seed: int = 0, labelled: bool = True) -> ReferenceStats:
    rng = np.random.default_rng(seed)
    probs = {h: _probs(rng, n, len(labs)) for h, labs in HEADS.items()}
    tier: list[str | None] = [HEADS["tier"][i] for i in rng.integers(0, 3, n)]
    labels = {"tier": tier} if labelled else None
    if labels:
        labels["tier"][0] = None  # an unlabelled row
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    return compute_stats(
        probs,
        HEADS,
        labels=labels,
        token_counts=rng.integers(1, 300, n),
        truncated=rng.random(n) < 0.1,
        embeddings=emb,
        texts=["hello world"] * (n - 1) + ["Привет мир"],
        meta={"split": "test", "model": "m v1"},
        max_embeddings=100,
    )


def test_counts_and_samples() -> None:
    s = _stats()
    tier = s.heads["tier"]
    assert tier.pred_counts.sum() == 300
    assert tier.confidence_hist.sum() == 300
    assert tier.label_counts is not None and tier.label_counts.sum() == 299
    assert tier.has_labels and not s.heads["task"].has_labels
    t, p = tier.labelled_pairs()
    assert t.size == p.size == 299
    assert s.embeddings is not None and s.embeddings.shape == (100, 8)
    assert s.language is not None and s.language["ascii"] == 299 and s.language["cyrillic"] == 1


def test_round_trip(tmp_path: Path) -> None:
    s = _stats()
    path = s.save(tmp_path)
    assert path.name == FILENAME
    back = ReferenceStats.load(tmp_path)
    assert back.n_rows == s.n_rows
    assert back.meta["split"] == "test"
    for h in HEADS:
        a, b = s.heads[h], back.heads[h]
        assert a.labels == b.labels
        np.testing.assert_array_equal(a.pred_counts, b.pred_counts)
        np.testing.assert_array_equal(a.pred_idx, b.pred_idx)
        np.testing.assert_allclose(a.confidence, b.confidence, rtol=1e-6)
        assert (a.true_idx is None) == (b.true_idx is None)
    assert back.embeddings is not None and s.embeddings is not None
    np.testing.assert_array_equal(back.embeddings, s.embeddings)
    assert back.language == s.language


def test_unknown_label_is_an_error() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="labels the model does not know"):
        compute_stats({"tier": _probs(rng, 3, 3)}, HEADS, labels={"tier": ["simple", "hard", None]})


def test_shape_mismatch_is_an_error() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="expected"):
        compute_stats({"tier": _probs(rng, 3, 2)}, HEADS)
    with pytest.raises(ValueError, match="token_counts"):
        compute_stats({"tier": _probs(rng, 3, 3)}, HEADS, token_counts=np.ones(4))


def test_load_rejects_garbage_and_other_versions(tmp_path: Path) -> None:
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ReferenceStatsError, match="not a readable"):
        ReferenceStats.load(bad)
    with pytest.raises(ReferenceStatsError, match="not found"):
        ReferenceStats.load(tmp_path / "missing.npz")
    import json

    path = _stats().save(tmp_path / "ok.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["header"].tobytes())
    header["version"] = 99
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v99.npz", **arrays)
    with pytest.raises(ReferenceStatsError, match="format version 99"):
        ReferenceStats.load(tmp_path / "v99.npz")
