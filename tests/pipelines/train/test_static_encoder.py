"""The static fast path's encoder graph, its bundle (parity with the training-time heads) and the
two-stage bar calibration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.train.static_encoder import static_graph
from pipelines.train.two_stage import bar_stats, choose_bar
from serving.model.bundle import Bundle, read_manifest
from serving.model.textprep import TextTokenizer, TruncationSpec


def test_static_graph_is_the_weighted_mean_of_token_vectors_normalised(tmp_path: Path) -> None:
    import onnx

    from serving.model.onnx_session import make_session

    rng = np.random.default_rng(0)
    vocab, dim = 50, 6
    vectors = rng.normal(size=(vocab, dim)).astype(np.float32)
    weights = np.ones(vocab, dtype=np.float32)
    weights[[0, 1, 2]] = 0.0  # e.g. [PAD], [CLS], [SEP]
    path = tmp_path / "static.onnx"
    onnx.save(static_graph(vectors, weights), str(path))
    ids = np.array([[1, 7, 9, 9, 2, 0], [1, 3, 2, 0, 0, 0], [1, 2, 0, 0, 0, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    mask[0, -1] = 0
    out = make_session(path).run(
        ["embedding"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    )[0]
    for row, kept in ((0, [7, 9, 9]), (1, [3])):
        mean = vectors[kept].mean(axis=0)
        np.testing.assert_allclose(out[row], mean / np.linalg.norm(mean), atol=1e-6)
    # only special tokens: a zero vector, never NaN
    assert np.all(out[2] == 0.0)


def _probs(top: list[float]) -> np.ndarray:
    return np.array([[p, 1.0 - p] for p in top])


def test_choose_bar_is_the_lowest_confidence_that_keeps_agreement() -> None:
    # fast confidences 0.99 .. 0.55; the two least confident rows disagree with the full stage
    conf = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.55]
    fast = {"tier": _probs(conf)}
    full_top = ["a"] * 5 + ["b", "b"]
    full = {"tier": np.array([[0.9, 0.1] if t == "a" else [0.1, 0.9] for t in full_top])}
    bar = choose_bar(fast, full, target=0.97)
    assert bar.min_confidence == pytest.approx(0.7)
    assert bar.share_fast == pytest.approx(5 / 7)
    assert bar.agreement == 1.0
    # a looser target lets one disagreeing row in (6/7 rows answered, 5/6 agree)
    assert choose_bar(fast, full, target=0.8).min_confidence == pytest.approx(0.6)
    # nothing reaches the target: the fast stage never answers
    never = choose_bar(fast, {"tier": 1.0 - fast["tier"]}, target=0.97)
    assert never.min_confidence > 1.0 and never.share_fast == 0.0
    fixed = bar_stats(fast, full, 0.85)
    assert fixed.share_fast == pytest.approx(3 / 7) and fixed.agreement == 1.0


def test_static_bundle_matches_training_heads_and_self_checks(trained_static: Any) -> None:
    result = trained_static
    assert result.metrics["parity_max_abs_diff"] <= 1e-4
    manifest = read_manifest(result.bundle_dir)
    assert manifest["kind"] == "classifier"
    assert manifest["encoder"]["type"] == "static" and manifest["encoder"]["dim"] == 256
    assert manifest["text"]["max_tokens"] == 512
    bundle = Bundle.load(result.bundle_dir)
    assert type(bundle) is Bundle
    bundle.self_check()
    out = bundle.predict_arrays(["Prove that there are infinitely many primes.", "hi"])
    assert out.embedding.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(out.embedding, axis=1), 1.0, atol=1e-5)
    assert all(p.stage is None for p in bundle.predict(["hi"]))


def test_static_encoder_reads_the_minilm_tokenizer_and_matches_model2vec(
    trained_static: Any, session_cache: Path
) -> None:
    bundle_dir = Path(trained_static.bundle_dir)
    assert read_manifest(bundle_dir)["encoder"]["distilled_from"] == "sentence-transformers/all-MiniLM-L6-v2"
    # the export compared the graph with model2vec's own StaticModel.encode before caching it
    (meta_path,) = (session_cache / "encoder").glob("static-*/encoder.static.json")
    meta = json.loads(meta_path.read_text())
    assert meta["model2vec_min_cosine"] >= 0.999
    assert meta["vocabulary_rows_used"] > 25_000
    # token counts are MiniLM's: the static bundle counts tokens like the MiniLM bundle does
    minilm = json.loads((Path(trained_static.two_stage_dir) / "full" / "bundle.json").read_text())
    tok_static = TextTokenizer(bundle_dir / "tokenizer.json", TruncationSpec(max_tokens=512))
    tok_minilm = TextTokenizer(
        Path(trained_static.two_stage_dir) / "full" / "tokenizer.json",
        TruncationSpec.from_dict(minilm["text"]),
    )
    text = "Summarise this article about the history of tea in three sentences."
    assert tok_static.count_tokens(text) == tok_minilm.count_tokens(text)
