"""Cascade economics of the gate's threshold, and the refusal-detector scoring: pure code."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipelines.gate.economics import CascadePrices, baselines, best_point, cascade_point, cost_curve
from pipelines.gate.refusal_eval import detector_metrics, pick_refusal_min, refusal_detectors


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


def test_refusal_min_keeps_unsure_model_refusals_out_and_is_picked_on_labels() -> None:
    responses = ["Sure, here it is.", "Let me explain the basics first.", "I'd rather not."]
    truth = np.array([False, False, True])

    def at(tau: float) -> dict[str, np.ndarray]:
        return refusal_detectors(
            responses,
            p_acceptable=np.array([0.9, 0.1, 0.1]),
            reason_top=["ok", "refusal", "refusal"],
            check_refusal=np.zeros(3, bool),
            check_fails=np.zeros(3, bool),
            threshold=0.5,
            p_refusal=np.array([0.0, 0.55, 0.92]),
            refusal_min=tau,
        )

    assert at(0.0)["combined"].tolist() == [False, True, True]  # the unsure 0.55 refusal is a false one
    assert at(0.9)["combined"].tolist() == [False, False, True]
    tau, scores = pick_refusal_min(truth, at, grid=(0.0, 0.5, 0.6, 0.9, 0.95, 1.01))
    assert tau == 0.9  # 0.6 and 0.9 are both perfect: ties go to the stricter value
    assert scores["0"] == pytest.approx(2 / 3) and scores["1.01"] == pytest.approx(2 / 3)


def test_phrase_detector_is_the_unchanged_list_and_combined_follows_the_checks() -> None:
    """A hedge-then-help answer: the phrase list (the baseline the issue compares against) still calls it a
    refusal; the checks do not, so `combined` does not either when the model accepts it."""
    from serving.gate.checks import check_response

    hedge = (
        "Unfortunately I do not have a comprehensive list of every bakery founded by women in Lyon. A few "
        "examples:\n1. Maison Pozzoli, started in 1998 by two sisters, known for its brioche.\n2. Le Fournil "
        "de Marie, a small organic bakery in the Croix-Rousse.\n3. Atelier Dora, famous for its pralines.\n"
        "Local food guides and the chamber of commerce list many more, with opening years, owners and "
        "the neighbourhoods they serve."
    )
    responses = [hedge, "I'm sorry, but I can't help with that."]
    results = [check_response("Which bakeries in Lyon were founded by women?", r) for r in responses]
    preds = refusal_detectors(
        responses,
        p_acceptable=np.array([0.9, 0.1]),
        reason_top=["ok", "refusal"],
        check_refusal=np.array(["refusal" in c.reasons for c in results]),
        check_fails=np.array([not c.ok for c in results]),
        threshold=0.5,
    )
    assert preds["phrase"].tolist() == [True, True]
    assert preds["combined"].tolist() == [False, True]
    assert preds["gate_rejects"].tolist() == [False, True]
