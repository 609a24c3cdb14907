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


def test_int8_static_bundle_batches_and_is_batch_invariant(session_cache: Path, tmp_path: Path) -> None:
    path = build_small_bundle(tmp_path / "int8s", session_cache / "encoder", precision="int8-static")
    bundle = Bundle.load(path)
    assert bundle.manifest["encoder"]["precision"] == "int8-static"
    assert not bundle.per_item  # one session call for the whole batch
    calls: list[int] = []
    real_run = bundle.session.run

    class CountingSession:
        def run(self, *args: object, **kwargs: object) -> object:
            calls.append(1)
            return real_run(*args, **kwargs)  # type: ignore[arg-type]

        def __getattr__(self, name: str) -> object:
            return getattr(real_run.__self__, name)

    bundle.session = CountingSession()
    together = bundle.predict_arrays(TEXTS)
    assert len(calls) == 1
    for i, text in enumerate(TEXTS):
        alone = bundle.predict_arrays([text])
        np.testing.assert_allclose(together.embedding[i], alone.embedding[0], atol=1e-6)
        for head in ("tier", "task"):
            np.testing.assert_allclose(together.probs[head][i], alone.probs[head][0], atol=1e-6)


def test_int8_static_graph_quantises_activations(session_cache: Path, tmp_path: Path) -> None:
    """Static QDQ, not weight-only: activations of the MatMuls carry calibrated QuantizeLinear nodes,
    and the attention mask / pooling path stays fp32 (the padding trap)."""
    import onnx

    from pipelines.train.encoder_export import export_encoder

    fp32 = export_encoder(session_cache / "encoder", "fp32")
    static = export_encoder(session_cache / "encoder", "int8-static", calibration_texts=TEXTS * 4)
    assert static.path != fp32.path and static.precision == "int8-static"
    graph = onnx.load(str(static.path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 12  # activations of 12 MatMuls (6 layers x 2; FFN-down stays fp32)
    quantised_inputs = {i for n in graph.node if n.op_type == "DequantizeLinear" for i in n.output}
    for node in graph.node:
        if node.op_type in ("Attention", "EmbedLayerNormalization", "ReduceSum", "ReduceL2"):
            assert not set(node.input) & quantised_inputs, f"{node.op_type} reads a quantised tensor"
    again = export_encoder(session_cache / "encoder", "int8-static", calibration_texts=TEXTS * 4)
    assert again.sha256 == static.sha256  # cached by the calibration texts' digest
