"""Layer-truncated encoders (`--encoder-layers N`): export, bundle, serving, parity; and distillation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli.train import register
from pipelines.train.classifier import TrainConfig
from pipelines.train.encoder_export import FULL_LAYERS, export_encoder

runner = CliRunner(env={"COLUMNS": "200"})
TEXTS = [
    "What is the capital of France?",
    "Write a Python function that merges two sorted lists and explain its complexity.",
    "Summarise the following article about the history of tea in three bullet points.",
    "Prove that the square root of two is irrational.",
    "hi! how are you today?",
    "Extract every date from: the meeting moved from 3 May 2021 to 14 June 2022.",
]


def _torch_embeddings(texts: list[str], tokenizer, layers: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    from pipelines.train.encoder_export import _pooled_module, load_torch_encoder

    module = _pooled_module(load_torch_encoder(layers))
    b = tokenizer.encode_batch(texts)
    with torch.no_grad():
        out = module(
            *(torch.from_numpy(b.feeds()[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
        )
    return np.asarray(out.numpy())


def _attention_nodes(path: Path) -> int:
    import onnx

    return sum(node.op_type == "Attention" for node in onnx.load(str(path)).graph.node)


def test_layer_counts_out_of_range_are_refused(tmp_path: Path) -> None:
    for bad in (0, 7):
        with pytest.raises(ValueError, match="encoder layers must be in"):
            TrainConfig(encoder_layers=bad)
        with pytest.raises(ValueError, match="encoder layers must be in"):
            export_encoder(tmp_path, "fp32", layers=bad)
    assert not list(tmp_path.iterdir())  # nothing exported
    with pytest.raises(ValueError, match="not the static one"):
        TrainConfig(encoder="static", encoder_layers=3)
    with pytest.raises(ValueError, match="encoder_distil needs"):
        TrainConfig(encoder_layers=6, encoder_distil=True)  # the full model: nothing to distil
    with pytest.raises(ValueError, match="encoder_distil needs"):
        TrainConfig(encoder_layers=3, encoder_distil=True, precision="int8")
    root, bench = typer.Typer(), typer.Typer()
    register(root, bench)
    root.add_typer(bench, name="bench")
    r = runner.invoke(root, ["train", "--encoder-layers", "9", "--no-register", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2, r.output
    assert "encoder layers must be in" in r.output
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_truncated_encoder_trains_a_bundle_that_serves_with_parity(
    small_labelled_file: Path, session_cache: Path, tmp_path: Path
) -> None:
    from pipelines.train.classifier import train
    from serving.model.bundle import Bundle, read_manifest

    full = export_encoder(session_cache / "encoder", "fp32")
    cut = export_encoder(session_cache / "encoder", "fp32", layers=2)
    assert cut.path != full.path and cut.sha256 != full.sha256  # its own cache entry and hash
    assert export_encoder(session_cache / "encoder", "fp32", layers=2).sha256 == cut.sha256  # cached
    assert (_attention_nodes(full.path), _attention_nodes(cut.path)) == (FULL_LAYERS, 2)  # fused, cut
    assert "layers" not in full.describe() and cut.describe()["layers"] == 2

    config = TrainConfig(
        data=small_labelled_file,
        encoder_layers=2,
        precision="fp32",  # the cut fp32 graph above, bit for bit (the default is int8)
        out_dir=tmp_path / "bundles",
        encoder_cache=session_cache / "encoder",
        embedding_cache=session_cache / "embeddings",
        register=False,
        routing_head=False,
        loso=False,
    )
    result = train(config, progress=False, echo=lambda _m: None)
    assert result.metrics["parity_max_abs_diff"] <= 1e-4
    manifest = read_manifest(result.bundle_dir)
    assert manifest["encoder"]["layers"] == 2 and manifest["encoder"]["sha256"] == cut.sha256
    bundle = Bundle.load(result.bundle_dir)  # the serving loader: verifies hashes, runs its self-check
    texts = pd.read_parquet(small_labelled_file)["text"].tolist()[:48]
    out = bundle.predict_arrays(texts)
    # the served embedding is the 2-layer torch model's, not the 6-layer one's
    want = _torch_embeddings(texts, bundle.tokenizer, 2)
    assert np.abs(out.embedding - want).max() < 1e-4
    assert np.abs(out.embedding - _torch_embeddings(texts, bundle.tokenizer, FULL_LAYERS)).max() > 1e-2
    for head in result.heads:
        assert np.abs(out.probs[head.name] - head.predict_proba(want)).max() <= 1e-4


@pytest.mark.slow
def test_distillation_moves_the_cut_encoder_toward_the_full_one(session_cache: Path, tmp_path: Path) -> None:
    from pipelines.train.distill import DistilConfig, distil_truncated
    from pipelines.train.embed import Embedder
    from serving.model.textprep import TruncationSpec

    spec = TruncationSpec()
    cache = session_cache / "encoder"
    teacher = Embedder(export_encoder(cache, "fp32"), spec, cache_dir=None)
    plain = Embedder(export_encoder(cache, "fp32", layers=2), spec, cache_dir=None)
    config = DistilConfig(max_texts=len(TEXTS), epochs=4, batch_size=3, lr=2e-4, seed=0, threads=2)
    messages: list[str] = []
    distilled = distil_truncated(
        2, TEXTS, teacher.embed, spec, cache, config, progress=False, echo=messages.append
    )
    assert distilled.layers == 2 and distilled.describe()["distilled_from"].endswith("(6 layers)")
    assert messages and "cosine loss" in messages[0]
    target = teacher.embed(TEXTS, progress=False)
    before = np.sum(plain.embed(TEXTS, progress=False) * target, axis=1)
    after = np.sum(Embedder(distilled, spec, cache_dir=None).embed(TEXTS, progress=False) * target, axis=1)
    assert after.mean() > before.mean() + 0.01, (before, after)
    again = distil_truncated(
        2, TEXTS, teacher.embed, spec, cache, config, progress=False, echo=messages.append
    )
    assert again.sha256 == distilled.sha256 and len(messages) == 1  # cached: not trained twice
