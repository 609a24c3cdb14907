"""Bootstrap intervals and permutation tests agree with scikit-learn and behave statistically."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score

from evals.stats.bootstrap import (
    bootstrap_classification,
    confusion_matrix,
    f1_from_confusion,
    independent_bootstrap_diff,
    macro_f1_from_confusion,
    paired_bootstrap_diff,
    permutation_test_diff,
)


def _noisy_predictions(rng: np.random.Generator, n: int, k: int, acc: float) -> tuple[np.ndarray, np.ndarray]:
    t = rng.integers(0, k, size=n)
    wrong = rng.random(n) > acc
    p = np.where(wrong, rng.integers(0, k, size=n), t)
    return t, p


pairs = st.integers(min_value=2, max_value=6).flatmap(
    lambda k: st.tuples(
        st.just(k),
        st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=60),
    )
)


@given(pairs)
@settings(max_examples=80, deadline=None)
def test_point_metrics_match_sklearn(case: tuple[int, list[tuple[int, int]]]) -> None:
    k, rows = case
    t = np.array([a for a, _ in rows])
    p = np.array([b for _, b in rows])
    cm = confusion_matrix(t, p, k)
    assert cm.sum() == len(rows)
    assert accuracy_from_cm(cm) == pytest.approx(accuracy_score(t, p))
    # sklearn's default macro-F1 averages over labels present in truth or prediction, as we do
    assert float(macro_f1_from_confusion(cm)) == pytest.approx(
        f1_score(t, p, average="macro", zero_division=0)
    )


def accuracy_from_cm(cm: np.ndarray) -> float:
    return float(np.trace(cm) / cm.sum())


@given(pairs, st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_interval_contains_estimate_and_is_ordered(
    case: tuple[int, list[tuple[int, int]]], seed: int
) -> None:
    k, rows = case
    t = np.array([a for a, _ in rows])
    p = np.array([b for _, b in rows])
    res = bootstrap_classification(t, p, k, n_boot=200, seed=seed)
    for iv in (res.accuracy, res.macro_f1):
        assert 0.0 <= iv.low <= iv.high <= 1.0
        # the percentile interval of a bounded statistic brackets the estimate except in degenerate tails
        assert iv.low - 1e-9 <= iv.estimate <= iv.high + 1e-9 or len(rows) < 5


def test_interval_coverage_near_nominal() -> None:
    """Over repeated samples from a known population, ~95% of accuracy intervals cover the truth."""
    rng = np.random.default_rng(1)
    covered = 0
    trials = 200
    for s in range(trials):
        t, p = _noisy_predictions(rng, 300, 3, acc=0.7)
        true_acc = 0.7 + 0.3 / 3  # correct by design or by chance
        iv = bootstrap_classification(t, p, 3, n_boot=400, seed=s).accuracy
        covered += iv.contains(true_acc)
    assert 0.88 <= covered / trials <= 0.99


def test_f1_nan_for_absent_class_and_macro_ignores_it() -> None:
    t = np.array([0, 0, 1, 1])
    p = np.array([0, 1, 1, 1])
    cm = confusion_matrix(t, p, 3)
    f1 = f1_from_confusion(cm)
    assert np.isnan(f1[2])
    assert float(macro_f1_from_confusion(cm)) == pytest.approx(np.mean(f1[:2]))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="equally long"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_classification(np.array([0]), np.array([0]), 2, confidence=1.5)


def test_paired_diff_detects_better_model_and_not_identical_one() -> None:
    rng = np.random.default_rng(2)
    t, a = _noisy_predictions(rng, 800, 4, acc=0.6)
    b = np.where(rng.random(800) < 0.5, t, a)  # b fixes half of a's rows -> strictly better
    res = paired_bootstrap_diff(t, a, b, 4, n_boot=500)
    assert res.delta.estimate > 0
    assert res.delta.low > 0
    assert res.p_value < 0.01
    same = paired_bootstrap_diff(t, a, a, 4, n_boot=200)
    assert same.delta.estimate == 0 and same.delta.low == 0 and same.delta.high == 0


def test_independent_diff_interval_brackets_zero_for_same_population() -> None:
    rng = np.random.default_rng(3)
    t1, p1 = _noisy_predictions(rng, 600, 3, 0.7)
    t2, p2 = _noisy_predictions(rng, 600, 3, 0.7)
    res = independent_bootstrap_diff(t1, p1, t2, p2, 3, n_boot=500)
    assert res.delta.low < 0 < res.delta.high


def test_permutation_test_is_calibrated_under_null_and_powerful_under_drop() -> None:
    rng = np.random.default_rng(4)
    pvals = []
    for s in range(100):
        t1, p1 = _noisy_predictions(rng, 200, 3, 0.7)
        t2, p2 = _noisy_predictions(rng, 200, 3, 0.7)
        pvals.append(permutation_test_diff(t1, p1, t2, p2, 3, n_permutations=200, seed=s)[1])
    pv = np.array(pvals)
    assert 0.03 <= np.mean(pv <= 0.1) <= 0.2  # nominal 0.10
    t1, p1 = _noisy_predictions(rng, 300, 3, 0.8)
    t2, p2 = _noisy_predictions(rng, 300, 3, 0.55)
    delta, p = permutation_test_diff(t1, p1, t2, p2, 3, n_permutations=500)
    assert delta < -0.1
    assert p < 0.01
    # a rise is not a drop: the one-sided test stays quiet
    _, p_up = permutation_test_diff(t2, p2, t1, p1, 3, n_permutations=500)
    assert p_up > 0.5
