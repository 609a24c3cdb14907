"""Routing value: APGR of random is 0.5, oracle beats every router, ties are order-independent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.eval.routing_value import apgr, evaluate_router, oracle_score, routing_curve, share_for_gap

rows = st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.booleans()), min_size=2, max_size=60)


@given(rows)
@settings(max_examples=100, deadline=None)
def test_curve_endpoints_and_constant_score_is_half(data: list[tuple[int, bool, bool]]) -> None:
    score = np.array([r[0] for r in data], float)
    w = np.array([r[1] for r in data], float)
    s = np.array([r[2] for r in data], float)
    c = routing_curve(score, w, s)
    assert c.share[0] == 0 and c.share[-1] == 1
    assert c.quality[0] == pytest.approx(w.mean()) and c.quality[-1] == pytest.approx(s.mean())
    if s.mean() > w.mean():
        assert apgr(np.zeros(len(data)), w, s) == pytest.approx(0.5)
        assert apgr(oracle_score(w, s), w, s) >= apgr(score, w, s) - 1e-12


@given(rows, st.randoms(use_true_random=False))
@settings(max_examples=50, deadline=None)
def test_row_order_does_not_matter(data: list[tuple[int, bool, bool]], rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(data)
    rnd.shuffle(shuffled)
    a = [np.array(col, float) for col in zip(*data, strict=True)]
    b = [np.array(col, float) for col in zip(*shuffled, strict=True)]
    va, vb = apgr(*a), apgr(*b)
    assert (np.isnan(va) and np.isnan(vb)) or va == pytest.approx(vb)


def test_random_scores_average_half_and_oracle_shares() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    w = (rng.random(n) < 0.6).astype(float)
    s = np.maximum(w, (rng.random(n) < 0.75).astype(float))  # strong never worse here
    vals = [apgr(rng.random(n), w, s) for _ in range(30)]
    assert np.mean(vals) == pytest.approx(0.5, abs=0.02)
    c = routing_curve(oracle_score(w, s), w, s)
    gain_share = np.mean(s > w)
    assert share_for_gap(c, 1.0) == pytest.approx(gain_share, abs=1e-9)
    assert share_for_gap(c, 0.5) == pytest.approx(gain_share / 2, abs=1e-9)


def test_evaluate_router_intervals() -> None:
    rng = np.random.default_rng(1)
    n = 1500
    w = (rng.random(n) < 0.6).astype(float)
    s = np.maximum(w, (rng.random(n) < 0.8).astype(float))
    informative = (s - w) + rng.normal(scale=0.8, size=n)
    v = evaluate_router("noisy-oracle", informative, w, s, n_boot=300)
    assert 0.5 < v.apgr.low <= v.apgr.estimate <= v.apgr.high
    assert v.share_for_50.estimate < v.share_for_80.estimate
    rnd = evaluate_router("random", rng.random(n), w, s, n_boot=300)
    assert rnd.apgr.low < 0.5 + 0.05 and rnd.apgr.high > 0.5 - 0.05


def test_no_gap_gives_nan() -> None:
    w = np.ones(10)
    assert np.isnan(apgr(np.arange(10.0), w, w))
