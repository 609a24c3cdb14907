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


def test_merged_mlps_average_the_members_logits_and_export_as_one_mlp() -> None:
    import onnxruntime as ort
    from sklearn.neural_network import MLPClassifier

    from pipelines.gate.heads import merge_mlps
    from pipelines.train.bundle_build import head_to_onnx
    from pipelines.train.heads import FittedHead

    X, y = _data(600, 4)
    yi = (np.array(y) == "acceptable").astype(int)
    members = [
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=s).fit(X, yi) for s in range(3)
    ]
    merged = merge_mlps(members)
    assert merged.coefs_[0].shape == (6, 24) and merged.hidden_layer_sizes == (24,)

    def logit(m: MLPClassifier) -> np.ndarray:  # by hand: predict_proba saturates
        hidden = np.maximum(X @ m.coefs_[0] + m.intercepts_[0], 0.0)
        return np.asarray(hidden @ m.coefs_[1] + m.intercepts_[1])[:, 0]

    assert np.allclose(logit(merged), np.mean([logit(m) for m in members], axis=0), atol=1e-9)
    assert np.allclose(merged.predict_proba(X)[:, 1], expit(logit(merged)), atol=1e-9)
    # the members differ (else averaging would be pointless) and the merge changed none of them
    assert np.abs(logit(members[0]) - logit(members[1])).max() > 1e-3
    assert members[0].coefs_[0].shape == (6, 8)
    head = FittedHead("acceptable", ("unacceptable", "acceptable"), merged, 0.0, 1.0)
    graph = head_to_onnx(head, "features", X.shape[1])
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    out = {o.name: i for i, o in enumerate(session.get_outputs())}
    got = session.run(None, {"features": X[:64]})[out["probabilities"]]
    assert np.abs(np.asarray(got) - merged.predict_proba(X[:64])).max() < 1e-5


def test_seed_averaged_mlp_head_is_one_wider_calibrated_mlp() -> None:
    X, y = _data(1200, 5)
    Xv, yv = _data(400, 6)
    labels = ("unacceptable", "acceptable")
    head = fit_mlp_head("acceptable", X, y, Xv, yv, labels, hidden=32, alpha=1e-3, max_iter=200, seeds=3)
    assert head.model.coefs_[0].shape == (6, 96) and head.cv_scores["seeds"] == 3.0
    p = head.predict_proba(Xv)[:, 1]
    assert np.mean((p >= 0.5) == (np.array(yv) == "acceptable")) > 0.85


def _shifted(n: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Acceptable rows around (1, 0, 0), unacceptable around (-1, 0, 0), plus a cluster of unacceptable
    rows around (1, 2, 0) (think: listed wrong answers that read like right ones, told apart only by
    the second feature); returns (X, labels, is_cluster)."""
    rng = np.random.default_rng(seed)
    k = n // 4
    centres = np.array([[1.0, 0, 0]] * (n - 2 * k) + [[-1.0, 0, 0]] * k + [CLUSTER[0].tolist()] * k)
    X = (centres + 0.5 * rng.normal(size=(n, 3))).astype(np.float32)
    labels = ["acceptable"] * (n - 2 * k) + ["unacceptable"] * (2 * k)
    return X, labels, np.r_[np.zeros(n - k, bool), np.ones(k, bool)]


CLUSTER = np.array([[1.0, 2.0, 0.0]], dtype=np.float32)


def test_logistic_head_uses_the_row_weights() -> None:
    from pipelines.gate.heads import fit_logistic_head

    X, y, cluster = _shifted(800, 7)
    Xv, yv = X[~cluster], [v for v, c in zip(y, cluster, strict=True) if not c]
    labels = ("unacceptable", "acceptable")
    probe = CLUSTER
    plain = fit_logistic_head("acceptable", X, y, Xv, yv, labels, Cs=(1.0,))
    weights = np.where(cluster, 0.0, 1.0)
    weighted = fit_logistic_head("acceptable", X, y, Xv, yv, labels, Cs=(1.0,), sample_weight=weights)
    # without the cluster's weight nothing says "high second feature = unacceptable": P(acceptable) rises
    assert weighted.predict_proba(probe)[0, 1] > plain.predict_proba(probe)[0, 1] + 0.2
    assert plain.predict_proba(probe)[0, 1] < 0.5


def test_gate_training_passes_listed_wrong_weights_to_the_logistic_head() -> None:
    """`fit_heads` with `head="logistic"` (the small-data fallback) must weigh rows like the MLP path."""
    from pipelines.gate.train import ACCEPT_LABELS, GateTrainConfig, _fit_heads

    X, y, cluster = _shifted(900, 8)
    Xv, yv, cv = _shifted(400, 9)
    Xv, yv = Xv[~cv], [v for v, c in zip(yv, cv, strict=True) if not c]
    Xa, ya = np.vstack([X, Xv]), y + yv
    m = {"train": np.r_[np.ones(900, bool), np.zeros(len(yv), bool)]}
    m["validation"] = ~m["train"]
    coarse = np.array(["ok" if v == "acceptable" else "incorrect" for v in ya])
    config = GateTrainConfig(head="logistic", reason_head=False, cs=(1.0,))
    weights = np.r_[np.where(cluster, 0.0, 1.0), np.ones(len(yv))]
    probe = CLUSTER
    p = {}
    for name, w in (("plain", None), ("weighted", weights)):
        heads = _fit_heads(config, Xa, list(ya), coarse, m, print, w)
        assert len(heads) == 1 and heads[0].labels == ACCEPT_LABELS
        p[name] = heads[0].predict_proba(probe)[0, 1]
    assert p["weighted"] > p["plain"] + 0.2
