"""MMD permutation test: valid under the null, sensitive to shifts, exact p-value floor."""

from __future__ import annotations

import numpy as np
import pytest

from evals.drift.embedding import domain_classifier_auc, mmd_permutation_test


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_null_false_alarm_rate_and_shift_detection() -> None:
    rng = np.random.default_rng(0)
    centre = rng.normal(size=32)
    alarms = 0
    trials = 60
    for s in range(trials):
        a = _unit(centre + rng.normal(size=(120, 32)))
        b = _unit(centre + rng.normal(size=(120, 32)))
        alarms += mmd_permutation_test(a, b, n_permutations=200, seed=s).p_value <= 0.1
    assert alarms / trials <= 0.2  # nominal 0.10; generous bound for 60 trials
    a = _unit(centre + rng.normal(size=(200, 32)))
    shifted_centre = centre + 0.8 * rng.normal(size=32)
    b = _unit(shifted_centre + rng.normal(size=(200, 32)))
    res = mmd_permutation_test(a, b, n_permutations=500, with_domain_auc=True)
    assert res.p_value == pytest.approx(1 / 501)
    assert res.domain_auc is not None and res.domain_auc > 0.75


def test_subsampling_caps_rows() -> None:
    rng = np.random.default_rng(1)
    res = mmd_permutation_test(
        rng.normal(size=(900, 8)), rng.normal(size=(50, 8)), max_rows=100, n_permutations=100
    )
    assert (res.n_ref, res.n_cur) == (100, 50)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="widths"):
        mmd_permutation_test(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="2-D"):
        mmd_permutation_test(np.zeros(5), np.zeros((5, 4)))


def test_domain_auc_near_half_without_shift() -> None:
    rng = np.random.default_rng(2)
    auc = domain_classifier_auc(rng.normal(size=(300, 16)), rng.normal(size=(300, 16)))
    assert 0.35 < auc < 0.65
