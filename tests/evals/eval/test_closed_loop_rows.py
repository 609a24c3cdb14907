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
