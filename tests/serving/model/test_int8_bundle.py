"""int8 bundles answer the same for a text whatever it is batched with (one text per session call)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.model.bundle import Bundle
from tests.support.bundles import build_small_bundle

pytestmark = pytest.mark.slow

TEXTS = [
    "hi",
    "Prove that the square root of two is irrational, step by step, with every lemma stated.",
    "Summarise this: " + "the quarterly report shows growth in every region. " * 12,
]


def test_int8_bundle_is_batch_invariant(session_cache: Path, tmp_path: Path) -> None:
    bundle = Bundle.load(build_small_bundle(tmp_path / "int8", session_cache / "encoder", precision="int8"))
    assert bundle.per_item
    together = bundle.predict_arrays(TEXTS)
    for i, text in enumerate(TEXTS):
        alone = bundle.predict_arrays([text])
        for head in ("tier", "task"):
            np.testing.assert_allclose(together.probs[head][i], alone.probs[head][0], atol=1e-6)
        np.testing.assert_allclose(together.embedding[i], alone.embedding[0], atol=1e-6)
    assert together.token_counts.tolist() == [bundle.tokenizer.count_tokens(t) for t in TEXTS]


def test_fp32_bundles_run_whole_batches(serving_bundle: Path) -> None:
    assert not Bundle.load(serving_bundle).per_item
