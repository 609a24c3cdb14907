"""Cascade economics of the gate's threshold, and the refusal-detector scoring: pure code."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipelines.gate.economics import CascadePrices, baselines, best_point, cascade_point, cost_curve
from pipelines.gate.refusal_eval import detector_metrics, refusal_detectors


def test_cascade_point_arithmetic() -> None:
    prices = CascadePrices(cheap_cost=1.0, strong_cost=10.0, pass_rate=0.8, bad_answer_cost=0.5)
    # accept 90% of good and 25% of bad answers: P(accept) = 0.8*0.9 + 0.2*0.25 = 0.77
    p = cascade_point(0.5, 0.9, 0.25, prices)
    assert p.escalated == pytest.approx(0.23)
    assert p.cost_per_1000 == pytest.approx(1.0 + 0.23 * 10.0)
    assert p.bad_per_1000 == pytest.approx(1000 * 0.2 * 0.25)
    assert p.objective == pytest.approx(p.cost_per_1000 + 0.5 * p.bad_per_1000)
    b = baselines(prices)
    assert b["always_cheap"]["bad_per_1000"] == pytest.approx(200.0)
    assert b["always_strong"]["cost_per_1000"] == pytest.approx(10.0)
    assert b["perfect_gate"]["cost_per_1000"] == pytest.approx(1.0 + 0.2 * 10.0)


def test_curve_is_monotone_and_best_point_trades_cost_against_bad_answers() -> None:
    rng = np.random.default_rng(0)
    y = np.array([1] * 300 + [0] * 300)
    s = np.concatenate([rng.uniform(0.4, 1.0, 300), rng.uniform(0.0, 0.6, 300)])
    cheap_bad = CascadePrices(bad_answer_cost=0.0)
    dear_bad = CascadePrices(bad_answer_cost=10.0)
    curve = cost_curve(s, y, cheap_bad)
    costs = [c.cost_per_1000 for c in curve]
    bads = [c.bad_per_1000 for c in curve]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(costs))  # higher threshold, more cost
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(bads))  # ... and fewer bad answers
    # free bad answers: accept everything; expensive ones: a threshold that stops (almost) all bad answers
    assert best_point(curve).threshold == 0.0
    strict = best_point(cost_curve(s, y, dear_bad))
    assert strict.threshold >= 0.6 and strict.bad_per_1000 == 0.0
    with pytest.raises(ValueError):
        cost_curve(s[:10], np.ones(10), cheap_bad)
    with pytest.raises(ValueError):
        CascadePrices(pass_rate=1.5)


def test_refusal_detectors_and_metrics() -> None:
    responses = ["I'm sorry, but I can't help with that.", "Paris is the capital.", "Sure: here it is."]
    preds = refusal_detectors(
        responses,
        p_acceptable=np.array([0.1, 0.2, 0.9]),
        reason_top=["refusal", "incorrect", "ok"],
        check_refusal=np.array([True, False, False]),
        check_fails=np.array([True, False, False]),
        threshold=0.5,
    )
    assert preds["phrase"].tolist() == [True, False, False]
    assert preds["model"].tolist() == [True, False, False]  # row 2 is rejected, but not as a refusal
    assert preds["combined"].tolist() == [True, False, False]
    assert preds["gate_rejects"].tolist() == [True, True, False]
    m = detector_metrics(np.array([True, False, False]), preds["gate_rejects"])
    assert m["accuracy"] == pytest.approx(2 / 3) and m["precision"] == 0.5 and m["recall"] == 1.0
