"""The gate's MLP head: temperature folded into the output layer, ONNX export as is."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from pipelines.gate.heads import _logits, fit_mlp_head


def _data(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    # XOR of two signs: no linear head can do better than chance, one hidden layer can
    y = np.where((X[:, 0] > 0) ^ (X[:, 1] > 0), "acceptable", "unacceptable")
    return X, y.tolist()


def test_mlp_head_learns_an_interaction_and_is_calibrated_on_validation() -> None:
    X, y = _data(1200, 0)
    Xv, yv = _data(400, 1)
    labels = ("unacceptable", "acceptable")
    head = fit_mlp_head("acceptable", X, y, Xv, yv, labels, hidden=32, alpha=1e-3, max_iter=200)
    Xt, yt = _data(400, 2)
    p = head.predict_proba(Xt)
    assert p.shape == (400, 2) and np.allclose(p.sum(1), 1.0)
    accuracy = np.mean((p[:, 1] >= 0.5) == (np.array(yt) == "acceptable"))
    assert accuracy > 0.85
    assert head.temperature > 0 and head.cv_scores["iterations"] >= 1
    # the temperature lives in the output layer: scaling it back gives the uncalibrated logits
    z = _logits(head.model, Xt)[:, 1]
    head.model.coefs_[-1] *= head.temperature
    head.model.intercepts_[-1] *= head.temperature
    raw = _logits(head.model, Xt)[:, 1]
    assert np.allclose(expit(raw / head.temperature), expit(z), atol=1e-6)


def test_mlp_head_needs_every_label_in_training() -> None:
    X, _ = _data(50, 0)
    with pytest.raises(ValueError, match="no training rows"):
        fit_mlp_head(
            "acceptable", X, ["acceptable"] * 50, X, ["acceptable"] * 50, ("unacceptable", "acceptable")
        )


def test_calibrated_mlp_head_exports_to_onnx_with_the_same_probabilities() -> None:
    import onnxruntime as ort

    from pipelines.train.bundle_build import head_to_onnx

    X, y = _data(600, 3)
    head = fit_mlp_head("acceptable", X, y, X[:200], y[:200], ("unacceptable", "acceptable"), hidden=16)
    graph = head_to_onnx(head, "features", X.shape[1])
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    out = {o.name: i for i, o in enumerate(session.get_outputs())}
    got = session.run(None, {"features": X[:64]})[out["probabilities"]]
    assert np.abs(np.asarray(got) - head.predict_proba(X[:64])).max() < 1e-5
