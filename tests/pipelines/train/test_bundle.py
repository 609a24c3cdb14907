"""The exported bundle: parity with the training-time model, contract shape, and refusal of bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.model.bundle import Bundle, BundleError, read_manifest, sha256_file


@pytest.fixture()
def bundle_copy(trained_bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(trained_bundle, dst)
    return dst


def _torch_embeddings(texts: list[str], bundle: Bundle) -> np.ndarray:
    """The training-time encoder in torch (not ONNX), fed the same token ids."""
    import torch

    from pipelines.train.encoder_export import load_torch_encoder

    model = load_torch_encoder(int(bundle.manifest["encoder"].get("layers", 6)))  # as trained
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            b = bundle.tokenizer.encode_batch(texts[i : i + 32])
            ids, mask = torch.from_numpy(b.input_ids), torch.from_numpy(b.attention_mask)
            hidden = model(
                input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
            ).last_hidden_state
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(out)


def test_parity_with_torch_encoder_and_sklearn_heads(trained, small_labelled_file: Path) -> None:  # type: ignore[no-untyped-def]
    """>= 200 real texts: bundle probabilities vs torch embeddings + sklearn heads, max |diff| <= 1e-4."""
    df = pd.read_parquet(small_labelled_file)
    texts = df["text"].tolist()[:240]
    assert len(texts) >= 200
    bundle = Bundle.load(trained.bundle_dir)
    out = bundle.predict_arrays(texts)
    X = _torch_embeddings(texts, bundle)
    assert np.abs(out.embedding - X).max() < 1e-4
    for head in trained.heads:
        diff = np.abs(out.probs[head.name] - head.predict_proba(X)).max()
        assert diff <= 1e-4, f"{head.name}: {diff}"
    from serving.model.textprep import request_feature_matrix

    assert trained.routing is not None and out.p_weak_ok is not None
    want = trained.routing.predict(X, request_feature_matrix(texts))
    assert np.abs(out.p_weak_ok - want).max() <= 1e-4
    assert float(np.std(want)) > 0.01 and want.min() >= 0.0 and want.max() <= 1.0  # not a constant
    assert trained.metrics["parity_max_abs_diff"] <= 1e-4


def test_predictions_follow_the_contract(trained_bundle: Path) -> None:
    bundle = Bundle.load(trained_bundle)
    bundle.self_check()
    texts = ["What is 2 + 2?", "Prove the Riemann hypothesis for function fields.", ""]
    preds = bundle.predict(texts)
    assert len(preds) == 3
    tier_labels = next(h.labels for h in bundle.heads if h.name == "tier")
    assert tier_labels == ("simple", "complex", "reasoning")
    for p in preds:
        r = p.to_result()
        assert set(r) >= {
            "tier",
            "tier_probs",
            "task",
            "task_probs",
            "complexity",
            "confidence",
            "tokens",
            "truncated",
            "p_weak_ok",
        }
        assert r["tier"] == max(r["tier_probs"], key=r["tier_probs"].get)
        assert sum(r["tier_probs"].values()) == pytest.approx(1.0, abs=1e-4)
        # the bundle has a routing head: complexity is 1 - p_weak_ok, not the tier formula
        assert 0.0 <= r["p_weak_ok"] <= 1.0
        assert r["complexity"] == pytest.approx(1.0 - r["p_weak_ok"], abs=1e-6)
        assert r["confidence"] == pytest.approx(max(r["tier_probs"].values()))
    assert preds[2].tokens == 0
    assert bundle.predict([]) == []


def test_batch_and_single_agree(trained_bundle: Path) -> None:
    bundle = Bundle.load(trained_bundle)
    texts = ["short", "a much longer request that pads the batch with many more tokens than the first"]
    batch = bundle.predict_arrays(texts).probs["tier"]
    single = np.concatenate([bundle.predict_arrays([t]).probs["tier"] for t in texts])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_manifest_describes_the_bundle(trained_bundle: Path) -> None:
    m = read_manifest(trained_bundle)
    assert m["schema_version"] == 2 and m["self_check"]["cases"] and m["kind"] == "classifier"
    assert m["encoder"]["sha256"] and m["encoder"]["dim"] == 384
    assert m["text"]["max_tokens"] == 128 and m["text"]["strategy"] == "head_tail"
    assert m["training_data"]["digest"]
    assert "test_tier_macro_f1" in m["metrics"]
    assert m["files"]["model.onnx"] == sha256_file(trained_bundle / "model.onnx")


def test_tampered_model_is_refused(bundle_copy: Path) -> None:
    model = bundle_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model.onnx: sha256 .* does not match"):
        Bundle.load(bundle_copy)


def test_truncated_model_is_refused(bundle_copy: Path) -> None:
    model = bundle_copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(BundleError, match="modified or only partly copied"):
        Bundle.load(bundle_copy)


def test_corrupt_model_with_matching_hash_is_refused(bundle_copy: Path) -> None:
    model = bundle_copy / "model.onnx"
    model.write_bytes(b"not an onnx graph")
    manifest = json.loads((bundle_copy / "bundle.json").read_text())
    manifest["files"]["model.onnx"] = sha256_file(model)
    (bundle_copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="onnxruntime cannot load"):
        Bundle.load(bundle_copy)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.update(schema_version=99), "schema_version 99"),
        (lambda m: m.pop("heads"), "missing keys"),
        (lambda m: m.update(kind="gate"), "expected 'classifier'"),
        (lambda m: m["heads"].append({"name": "x", "labels": ["a"], "output": "x_probs"}), "lacks outputs"),
    ],
)
def test_bad_manifest_is_refused(bundle_copy: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    path = bundle_copy / "bundle.json"
    manifest = json.loads(path.read_text())
    mutate(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Bundle.load(bundle_copy)


def test_missing_files_are_refused(bundle_copy: Path, tmp_path: Path) -> None:
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json is missing"):
        Bundle.load(bundle_copy)
    with pytest.raises(BundleError, match="not found"):
        Bundle.load(tmp_path / "nowhere")
    (bundle_copy / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(bundle_copy)


def test_training_metrics_and_plots(trained) -> None:  # type: ignore[no-untyped-def]
    m = trained.metrics
    for head in ("tier", "task"):
        for k in ("accuracy", "macro_f1", "log_loss", "ece"):
            assert 0.0 <= m[f"test_{head}_{k}"] < 10
        # better than chance on real data even with ~25 rows per cell
        assert m[f"test_{head}_macro_f1"] > 1.5 / (3 if head == "tier" else 8)
    pngs = [p for p in trained.artifacts if p.suffix == ".png"]
    assert len(pngs) == 4 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
