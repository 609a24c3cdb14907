"""Per-head metrics, slices, outcome columns and router scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals.eval.evaluate import evaluate_head, evaluate_routing, evaluate_slices, outcome_arrays, router_score


def _data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_head_metrics_match_training_metrics() -> None:
    from pipelines.train import metrics

    y, p = _data()
    labels = ("simple", "complex", "reasoning")
    ev = evaluate_head("tier", labels, y, p, n_boot=200)
    ref = metrics.classification_metrics([labels[i] for i in y], p, labels)
    assert ev.accuracy.estimate == pytest.approx(ref["accuracy"])
    assert ev.macro_f1.estimate == pytest.approx(ref["macro_f1"])
    assert ev.ece.estimate == pytest.approx(ref["ece"])
    assert ev.log_loss == pytest.approx(ref["log_loss"], rel=1e-6)
    for row in ev.per_class:
        assert row["precision"] == pytest.approx(ref[f"{row['label']}_precision"])
        assert row["recall"] == pytest.approx(ref[f"{row['label']}_recall"])
        assert row["f1_low"] <= row["f1"] <= row["f1_high"]


def test_slices_skip_small_groups() -> None:
    y, p = _data(300)
    values = ["a"] * 200 + ["b"] * 95 + ["c"] * 5
    rows = evaluate_slices("source", values, "tier", y, p, 3, n_boot=100)
    assert [(r.value, r.n) for r in rows] == [("a", 200), ("b", 95)]


def test_outcome_columns() -> None:
    df = pd.DataFrame({"text": ["x"] * 4, "weak_ok": [True, False, None, "true"]})
    desc, w, s = outcome_arrays(df)  # type: ignore[misc]
    assert "weak_ok" in desc
    np.testing.assert_array_equal(np.isnan(w), [False, False, True, False])
    assert list(s[~np.isnan(s)]) == [1.0, 1.0, 1.0]
    df2 = pd.DataFrame({"weak_correct": [1, 0], "strong_correct": [1, 1], "weak_ok": [True, True]})
    assert outcome_arrays(df2)[0].startswith("weak_correct")  # type: ignore[index]
    assert outcome_arrays(pd.DataFrame({"text": ["x"]})) is None


def test_router_scores() -> None:
    probs = {"tier": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.6, 0.2]])}
    heads = {"tier": ("simple", "complex", "reasoning")}
    np.testing.assert_allclose(router_score("complexity", probs, heads), [0.0, 1.0, 0.5])
    # a bundle with a routing head: complexity is what it serves, 1 - p_weak_ok, not the tier formula
    p_weak = np.array([0.1, 0.7, 0.4])
    np.testing.assert_allclose(router_score("complexity", probs, heads, p_weak), [0.9, 0.3, 0.6])
    np.testing.assert_allclose(router_score("tier:reasoning", probs, heads, p_weak), [0.0, 1.0, 0.2])
    np.testing.assert_allclose(router_score("not:tier:simple", probs, heads), [0.0, 1.0, 0.8])
    np.testing.assert_allclose(router_score("tier:reasoning", probs, heads), [0.0, 1.0, 0.2])
    with pytest.raises(ValueError, match="no label"):
        router_score("tier:hard", probs, heads)


def test_routing_evaluation_includes_oracle_and_skips_no_gap() -> None:
    rng = np.random.default_rng(2)
    n = 500
    w = (rng.random(n) < 0.5).astype(float)
    s = np.ones(n)
    ev = evaluate_routing("weak_ok", w, s, {"model": 1 - w + rng.normal(scale=0.5, size=n)}, n_boot=100)
    assert ev is not None
    names = [r.name for r in ev.routers]
    assert names[-1].startswith("oracle")
    assert ev.routers[0].apgr.estimate > 0.6
    assert evaluate_routing("x", np.ones(5), np.ones(5), {"m": np.arange(5.0)}) is None
