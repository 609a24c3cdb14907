"""Chi-square, PSI, KS and Holm: properties and calibration under the null."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.stats.shift_tests import bonferroni, chi2_homogeneity, holm, ks_two_sample, pool_sparse, psi
from pipelines.train.reference_stats import histogram

counts = st.lists(st.integers(0, 500), min_size=2, max_size=10)


@given(counts, counts)
@settings(max_examples=100, deadline=None)
def test_psi_symmetric_nonnegative(a: list[int], b: list[int]) -> None:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if sum(a) == 0 or sum(b) == 0:
        return
    v = psi(a, b)
    assert v >= -1e-12
    assert v == pytest.approx(psi(b, a))
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)


@given(counts, counts)
@settings(max_examples=100, deadline=None)
def test_pooling_preserves_totals_and_meets_expected_counts(a: list[int], b: list[int]) -> None:
    n = min(len(a), len(b))
    r, c = np.array(a[:n], float), np.array(b[:n], float)
    if r.sum() == 0 or c.sum() == 0:
        return
    pr, pc = pool_sparse(r, c, 5.0)
    assert pr.sum() == r.sum() and pc.sum() == c.sum()
    if pr.size >= 2:
        frac = min(r.sum(), c.sum()) / (r.sum() + c.sum())
        # every category except possibly the catch-all pool meets the expected-count rule
        assert np.all((pr + pc)[:-1] * frac >= 5.0 - 1e-9)
    res = chi2_homogeneity(r, c)
    assert 0.0 <= res.p_value <= 1.0


def test_chi2_matches_scipy_contingency() -> None:
    from scipy.stats import chi2_contingency

    r, c = np.array([120, 80, 50]), np.array([100, 100, 30])
    ours = chi2_homogeneity(r, c)
    ref = chi2_contingency(np.vstack([r, c]), correction=False)
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue)


def test_chi2_false_alarm_rate_near_alpha_with_rare_classes() -> None:
    """With a rare category (expected counts < 5) pooling keeps the test at its nominal level."""
    rng = np.random.default_rng(0)
    probs = np.array([0.5, 0.3, 0.17, 0.02, 0.01])
    alarms = 0
    trials = 1000
    for _ in range(trials):
        r = rng.multinomial(600, probs)
        c = rng.multinomial(80, probs)
        alarms += chi2_homogeneity(r, c).p_value <= 0.05
    assert 0.02 <= alarms / trials <= 0.08


def test_chi2_detects_mix_change() -> None:
    assert chi2_homogeneity([300, 300, 300], [50, 50, 200]).p_value < 1e-6


def test_single_category_gives_p_one() -> None:
    assert chi2_homogeneity([10, 0], [7, 0]).p_value == 1.0


def test_ks_null_and_shift() -> None:
    rng = np.random.default_rng(1)
    a = rng.poisson(40, 2000)
    assert ks_two_sample(a, rng.poisson(40, 500)).p_value > 0.001
    shifted = ks_two_sample(a, rng.poisson(20, 500))
    assert shifted.p_value < 1e-10 and shifted.statistic > 0.5


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40))
@settings(max_examples=100, deadline=None)
def test_holm_properties(p: list[float]) -> None:
    arr = np.array(p)
    adj = holm(arr)
    assert np.all(adj >= arr - 1e-12)
    assert np.all(adj <= bonferroni(arr) + 1e-12)
    assert np.all(adj <= 1.0)
    order = np.argsort(arr, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-12)


def test_holm_controls_family_wise_error() -> None:
    rng = np.random.default_rng(2)
    fw = np.mean([np.any(holm(rng.random(10)) <= 0.05) for _ in range(4000)])
    assert fw <= 0.06


def test_histogram_edges_right_closed() -> None:
    edges = np.linspace(0, 1, 11)
    h = histogram(np.array([0.0, 0.1, 0.1000001, 1.0, 1.5, -2.0]), edges)
    assert h.sum() == 6
    assert h[0] == 3  # 0.0, 0.1 (right-closed) and the clipped -2.0
    assert h[1] == 1
    assert h[9] == 2
