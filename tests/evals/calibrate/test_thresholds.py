"""Threshold selection for share, quality floor and budget; expectations with intervals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.calibrate.thresholds import (
    choose_threshold,
    share_for_budget,
    threshold_for_quality,
    threshold_for_share,
)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=80), st.floats(0, 1))
@settings(max_examples=150, deadline=None)
def test_share_never_exceeds_target_and_is_maximal(scores: list[float], target: float) -> None:
    s = np.array(scores)
    thr = threshold_for_share(s, target)
    share = np.mean(s >= thr)
    assert share <= target + 1e-12
    # the next lower distinct score would exceed the target
    lower = s[s < thr]
    if lower.size:
        assert np.mean(s >= lower.max()) > target


def test_quality_floor_reaches_floor_with_least_share() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    w = (rng.random(n) < 0.6).astype(float)
    s = np.maximum(w, (rng.random(n) < 0.9).astype(float))
    score = (s - w) + rng.normal(scale=0.7, size=n)
    thr = threshold_for_quality(score, w, s, 0.8)
    routed = np.where(score >= thr, s, w)
    pgr = (routed.mean() - w.mean()) / (s.mean() - w.mean())
    assert pgr >= 0.8
    # one tie group fewer would fall short
    higher = np.unique(score[score > thr])
    if higher.size:
        r2 = np.where(score >= higher.min(), s, w)
        assert (r2.mean() - w.mean()) / (s.mean() - w.mean()) < 0.8


def test_budget_share() -> None:
    assert share_for_budget(3.0, 1.0, 11.0) == pytest.approx(0.2)
    assert share_for_budget(50.0, 1.0, 11.0) == 1.0
    with pytest.raises(ValueError, match="below the all-weak cost"):
        share_for_budget(0.5, 1.0, 11.0)
    with pytest.raises(ValueError, match="must exceed"):
        share_for_budget(5.0, 2.0, 2.0)


def test_choose_reports_intervals_and_handles_partial_outcomes() -> None:
    rng = np.random.default_rng(1)
    n = 1500
    score = rng.random(n)
    w = np.where(rng.random(n) < 0.5, np.nan, (rng.random(n) < 0.6).astype(float))
    s = np.where(np.isnan(w), np.nan, 1.0)
    c = choose_threshold("target_share", 0.3, score, w, s, weak_cost=1.0, strong_cost=10.0, n_boot=300)
    assert c.share.estimate <= 0.3 and c.share.low < c.share.estimate < c.share.high
    assert c.quality is not None and c.gap_recovered is not None and c.cost_per_1k is not None
    assert c.cost_per_1k.estimate == pytest.approx(1 + 9 * c.share.estimate)
    # random scores recover about the share they spend
    assert c.gap_recovered.low < 0.3 < c.gap_recovered.high
    b = choose_threshold("budget", 2.8, score, weak_cost=1.0, strong_cost=10.0, n_boot=200)
    assert b.cost_per_1k is not None and b.cost_per_1k.estimate <= 2.8 + 1e-9
    with pytest.raises(ValueError, match="needs per-row outcomes"):
        choose_threshold("quality_floor", 0.5, score)
