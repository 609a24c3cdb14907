"""Promotion by routing value: a candidate that routes worse than the champion beyond tolerance fails."""

from __future__ import annotations

import numpy as np

from evals.eval.routing_gate import routing_rows


def _rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=600)
    weak = (x < 0).astype(float)  # the weak model fails where x is large
    return x, weak, np.ones(600)


def test_worse_candidate_is_refused_better_or_equal_passes() -> None:
    x, weak, strong = _rows()
    good, bad = x, -x
    refused = routing_rows("f:all", weak, strong, bad, good, 0.01, n_boot=100)
    assert len(refused) == 1 and refused[0].ok is False
    assert refused[0].metric == "f:all:apgr" and refused[0].delta < -0.4
    assert "worse by" in refused[0].note
    passed = routing_rows("f:all", weak, strong, good, bad, 0.01, n_boot=100)
    assert passed[0].ok is True and passed[0].delta > 0.4
    same = routing_rows("f:all", weak, strong, good, good, 0.0, n_boot=100)
    assert same[0].ok is True and same[0].delta == 0.0


def test_no_champion_records_and_passes_and_no_gap_gives_no_row() -> None:
    x, weak, strong = _rows()
    first = routing_rows("f:all", weak, strong, x, None, 0.01, n_boot=100)
    assert first[0].ok is True and first[0].champion is None and first[0].candidate > 0.7
    assert routing_rows("f:all", strong, strong, x, x, 0.01) == []  # no quality gap: nothing to gate
    nan = np.full(600, np.nan)
    assert routing_rows("f:all", nan, strong, x, x, 0.01) == []
