"""Heads (CV + temperature calibration) and metrics (ECE, per-class) on controlled data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.train.calibration import expected_calibration_error, top_label
from pipelines.train.heads import encode_labels, fit_head, fit_temperature
from pipelines.train.metrics import classification_metrics, plot_confusion_matrix, plot_reliability

LABELS = ("simple", "complex", "reasoning")


def _blobs(n: int, seed: int, spread: float = 1.2) -> tuple[np.ndarray, list[str]]:
    centres = np.random.default_rng(1234).normal(size=(3, 384))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    X = centres[y] + spread * rng.normal(size=(n, 384))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), [LABELS[i] for i in y]


def test_fit_head_keeps_declared_label_order_and_calibrates() -> None:
    Xt, yt = _blobs(600, 0)
    Xv, yv = _blobs(300, 1)
    head = fit_head("tier", Xt, yt, Xv, yv, LABELS)
    assert head.labels == LABELS
    assert list(head.model.classes_) == [0, 1, 2]  # columns follow LABELS, not alphabetical order
    proba = head.predict_proba(Xv)
    assert proba.shape == (300, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert head.C in (0.5, 2.0, 8.0, 32.0)
    assert head.temperature > 0
    Xs, ys = _blobs(400, 2)
    m = classification_metrics(ys, head.predict_proba(Xs), LABELS)
    assert m["macro_f1"] > 0.8  # separable blobs: a broken head would sit near 0.33


def test_temperature_recovers_a_known_scale() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(5000, 3))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(logits * 3.0, y) == pytest.approx(3.0, rel=0.1)


def test_unknown_label_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the declared set"):
        encode_labels(["simple", "hard"], LABELS)


def test_missing_class_in_train_is_refused() -> None:
    X, _ = _blobs(60, 0)
    with pytest.raises(ValueError, match="no training rows"):
        fit_head("tier", X, ["simple"] * 30 + ["complex"] * 30, X, ["simple"] * 60, LABELS)


def test_ece_zero_for_perfect_calibration_and_large_for_overconfidence() -> None:
    y = np.array([0, 1, 0, 1])
    confident_right = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(*top_label(confident_right, y)) == pytest.approx(0.0)
    confident_wrong = confident_right[:, ::-1]
    assert expected_calibration_error(*top_label(confident_wrong, y)) == pytest.approx(1.0)


def test_per_class_metrics_and_plots(tmp_path: Path) -> None:
    y = ["a", "a", "b", "b"]
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    m = classification_metrics(y, proba, ["a", "b"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["a_recall"] == pytest.approx(0.5) and m["b_recall"] == pytest.approx(1.0)
    assert m["a_precision"] == pytest.approx(1.0)
    cm = plot_confusion_matrix(y, proba, ["a", "b"], tmp_path / "cm.png", "t")
    rel = plot_reliability(y, proba, ["a", "b"], tmp_path / "rel.png", "t")
    for p in (cm, rel):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
