"""ECE: the training report's number is this ECE, and it is zero when calibrated by construction."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evals.stats.calibration import bootstrap_ece, expected_calibration_error, reliability_bins, top_label


@given(
    arrays(np.float64, st.integers(1, 200), elements=st.floats(0.0, 1.0)),
    st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_ece_bounds_and_equals_bin_formula(conf: np.ndarray, seed: int) -> None:
    correct = (np.random.default_rng(seed).random(conf.size) < 0.5).astype(float)
    ece = expected_calibration_error(conf, correct)
    assert 0.0 <= ece <= 1.0
    rb = reliability_bins(conf, correct)
    m = rb.counts > 0
    expected = np.sum(rb.counts[m] / conf.size * np.abs(rb.accuracy[m] - rb.mean_confidence[m]))
    assert ece == pytest.approx(expected, abs=1e-12)


def test_training_report_ece_is_this_ece() -> None:
    from pipelines.train.metrics import classification_metrics

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4)) * 2
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, size=500)
    conf, correct = top_label(proba, y)
    labels = ["a", "b", "c", "d"]
    report = classification_metrics([labels[i] for i in y], proba, labels)
    assert report["ece"] == pytest.approx(expected_calibration_error(conf, correct))
    assert report["ece"] > 0.01


def test_perfectly_calibrated_sample_has_small_ece_and_overconfident_large() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.3, 1.0, size=20000)
    correct = (rng.random(conf.size) < conf).astype(float)
    assert expected_calibration_error(conf, correct) < 0.02
    over = np.minimum(conf + 0.2, 1.0)
    assert expected_calibration_error(over, correct) > 0.15


def test_bootstrap_interval_brackets_estimate() -> None:
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.4, 1.0, size=400)
    correct = (rng.random(400) < conf - 0.1).astype(float)
    iv = bootstrap_ece(conf, correct, n_boot=300)
    assert iv.low <= iv.estimate <= iv.high
    assert iv.high - iv.low > 0


def test_rejects_bad_confidence() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(np.array([1.2]), np.array([1.0]))
