"""Closing the loop on a slice prompt length cannot find: English list and quiz asks, as long as the other
requests, which the simulated cheap model answers uselessly. The gate passes the answers; only users' `bad`
feedback in the log reveals them. One retrain on the log must make the served `complexity` rank the slice
first on requests about unseen topics (the German slice of `tests/test_closed_loop_e2e.py` is partly found by
length before any traffic, so it cannot show this). In process (`evals.eval.closed_loop.run_benchmark`: the
service's classifier client, the cascade's gate, the service's log writer, `data from-log`, `train`); the HTTP
path is the e2e test's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evals.eval.closed_loop import LIST_SLICE, ROUTER_SCORE, run_benchmark

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[3] / "data" / "labelled" / "requests.parquet"


def test_one_retrain_learns_a_slice_that_length_cannot_find(tmp_path: Path, encoder_artifact: Any) -> None:
    result = run_benchmark(
        tmp_path,
        traffic_n=300,
        held_out_n=160,
        default_limit=300,
        labelled=SHIPPED,
        encoder_cache=Path(encoder_artifact.path).parent,
        seed=0,
        slice_kind=LIST_SLICE,
    )
    counts, held, in_slice = result["counts"], result["held_out"], result["held_out_slice"]
    assert counts["escalated"] == 0  # the gate passes the useless answers ...
    assert 60 <= counts["feedback_bad"] <= 150  # ... users' feedback marks them (and the tables) bad
    assert 20 <= in_slice <= held - 60
    oracle_apgr = 1.0 - (in_slice / held) / 2  # every slice request strong, nothing else
    numbers = result["numbers"]
    was, now = numbers["before (complexity)"], numbers["after (complexity)"]
    # the slice is not what the default routing head (length prior included) already ranks first
    assert was["auc"] <= 0.9, was
    for router in (ROUTER_SCORE, "complexity"):
        was, now = numbers[f"before ({router})"], numbers[f"after ({router})"]
        assert now["auc"] >= max(was["auc"] + 0.1, 0.95), (router, was, now)
        assert now["apgr"] >= min(was["apgr"] + 0.1, oracle_apgr - 0.01), (router, was, now, oracle_apgr)
        gap_was, gap_now = was["slice_mean"] - was["rest_mean"], now["slice_mean"] - now["rest_mean"]
        assert gap_now >= gap_was + 0.15, (router, was, now)  # on a scale a threshold can act on
    assert np.isclose(numbers["after (complexity)"]["apgr"], oracle_apgr, atol=0.01)
