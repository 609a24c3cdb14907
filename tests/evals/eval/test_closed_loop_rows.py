"""The closed-loop simulation's default outcome rows keep AlpacaEval's chat/writing rows although the build
leaves AlpacaEval's task empty (the keyword rule is applied where the simulation needs it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evals.eval.closed_loop import DEFAULT_TASKS, default_outcome_rows
from pipelines.data.sources.instructions import instruction_task


def test_default_outcome_rows_restore_alpaca_tasks_by_the_keyword_rule(repo_root: Path) -> None:
    shipped = repo_root / "data" / "labelled" / "requests.parquet"
    assert pd.read_parquet(shipped).query("source == 'alpaca_eval'")["task"].isna().all()  # the build's
    rows = default_outcome_rows(shipped, None)
    alpaca = rows[rows["source"] == "alpaca_eval"]
    assert {"chat", "writing"} <= set(alpaca["task"]) and len(alpaca) > 400
    assert (alpaca["task"] == alpaca["text"].map(instruction_task)).all()
    assert set(rows["task"]) == set(DEFAULT_TASKS) and rows["weak_ok"].notna().all()


def test_list_slice_is_english_list_asks_as_long_as_the_rest() -> None:
    import numpy as np

    from evals.eval.closed_loop import LIST_SLICE, LIST_TEMPLATES, cheap_answer, simulate_requests
    from serving.router.cascade import run_gate
    from serving.router.policy import GateSettings

    reqs = simulate_requests(600, seed=3, slice_kind=LIST_SLICE)
    kinds = {r.slice for r in reqs}
    assert kinds == {"en", "table", LIST_SLICE}  # no German in this mode
    listed = [r for r in reqs if r.slice == LIST_SLICE]
    english = [r for r in reqs if r.slice == "en"]
    heads = {t.split("{t}")[0] for t in LIST_TEMPLATES}
    assert all(any(r.text.startswith(h) for h in heads) for r in listed)
    assert not any(any(r.text.startswith(h) for h in heads) for r in english)
    assert 0.15 < len(listed) / len(reqs) < 0.35 and not any(r.weak_ok for r in listed)
    # about as long as the other English requests: length alone cannot find the slice
    ratio = np.mean([len(r.text) for r in listed]) / np.mean([len(r.text) for r in english])
    assert 0.8 < ratio < 1.2
    # the cheap model's useless answer passes the deterministic gate: only users' feedback reveals it
    _kind, content = cheap_answer(LIST_SLICE)
    assert run_gate(listed[0].text, content, GateSettings(), finish_reason="stop").ok
    # the German default is unchanged
    assert {r.slice for r in simulate_requests(300, seed=3)} == {"en", "de", "table"}
