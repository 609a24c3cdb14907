"""Leave-one-source-out routing value: folds never train on the held-out source; baselines and random."""

from __future__ import annotations

import numpy as np
import pytest

from evals.eval.loso import leave_one_source_out, markdown_table, mean_apgr


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sources = np.repeat(np.array(["a", "b", "c", "tiny"]), [400, 400, 400, 20])
    x = rng.normal(size=sources.size)
    strong = np.ones(sources.size)
    weak = (x + 0.3 * rng.normal(size=sources.size) < 0).astype(float)  # weak fails where x is large
    return sources, x, weak, strong


def test_learned_router_transfers_and_folds_exclude_the_held_out_source() -> None:
    sources, x, weak, strong = _data()
    seen_train: list[set[str]] = []

    def fit_score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        seen_train.append(set(sources[train].tolist()))
        assert not np.any(train & test)
        slope = np.polyfit(x[train], (strong - weak)[train], 1)[0]
        return slope * x[test]

    results = leave_one_source_out(
        sources,
        weak,
        strong,
        {"linear": fit_score},
        {"x": x, "minus x": -x},
        seen_by={"x": {"a"}},
        min_rows=100,
        n_boot=200,
    )
    assert {r.source for r in results} == {"a", "b", "c"}  # "tiny" is below min_rows
    for held_out, train_sources in zip(["a", "b", "c"], seen_train, strict=True):
        assert held_out not in train_sources
    by = {(r.source, r.router): r for r in results}
    for source in ("a", "b", "c"):
        assert by[(source, "random")].value.apgr.estimate == pytest.approx(0.5)
        assert by[(source, "linear")].value.apgr.estimate > 0.7
        assert by[(source, "minus x")].value.apgr.estimate < 0.3
        lo, hi = by[(source, "linear")].value.apgr.low, by[(source, "linear")].value.apgr.high
        assert lo <= by[(source, "linear")].value.apgr.estimate <= hi
    assert by[("a", "x")].held_out is False and by[("b", "x")].held_out is True
    assert mean_apgr(results, "linear") > 0.7
    table = markdown_table(results)
    assert "| a | 400 | x (saw this source) |" in table and table.count("\n") == 2 + len(results) - 1


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="equal length"):
        leave_one_source_out(np.array(["a"]), np.zeros(2), np.zeros(2), {})
