"""The spend ledger: survives restarts, is shared by processes, prices real usage with LiteLLM."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from serving.router.budget import BudgetLedger, budget_state, cost_of_response, utc_day


def test_restart_keeps_spend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    first = BudgetLedger(path)
    first.record("sonnet", 0.25, 1000, 100, route="r1")
    first.record("haiku", 0.05)
    first.close()
    second = BudgetLedger(path)
    assert second.spent_today() == pytest.approx(0.30)
    assert second.by_model() == pytest.approx({"sonnet": 0.25, "haiku": 0.05})
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_yesterday_does_not_count(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "l.sqlite")
    ledger.record("sonnet", 9.0, ts=time.time() - 2 * 86400)
    ledger.record("sonnet", 1.0)
    assert ledger.spent_today(fresh=True) == pytest.approx(1.0)
    assert utc_day(0) == "1970-01-01"


def _writer(path: str, n: int) -> None:
    ledger = BudgetLedger(path)
    for _ in range(n):
        ledger.record("m", 0.01)
    ledger.close()


def test_several_processes_share_one_ledger(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    reader = BudgetLedger(path, refresh_seconds=0)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), 50)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert reader.spent_today() == pytest.approx(1.5)


def test_cached_reads_see_other_writers_after_refresh(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    reader = BudgetLedger(path, refresh_seconds=3600)
    writer = BudgetLedger(path)
    assert reader.spent_today() == 0.0
    writer.record("m", 2.0)
    assert reader.spent_today() == 0.0  # cached
    assert reader.spent_today(fresh=True) == pytest.approx(2.0)
    reader.record("m", 1.0)  # own writes show at once
    assert reader.spent_today() == pytest.approx(3.0)


def test_rejects_nonsense_costs(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "l.sqlite")
    with pytest.raises(ValueError):
        ledger.record("m", float("nan"))
    with pytest.raises(ValueError):
        ledger.record("m", -1.0)


def test_budget_state_thresholds() -> None:
    assert budget_state(0.79, 1.0, 0.8).state == "ok"
    assert budget_state(0.80, 1.0, 0.8).state == "degraded"
    assert budget_state(1.00, 1.0, 0.8).state == "exhausted"


def test_cost_from_real_usage_with_litellm() -> None:
    from litellm import ModelResponse

    response = ModelResponse(
        model="gpt-4o-mini",
        choices=[{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        usage={"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "total_tokens": 2_000_000},
    )
    mapped = cost_of_response(
        response, litellm_model="openai/gpt-4o-mini", cost_map_key="gpt-4o-mini", price_override=None
    )
    assert mapped == pytest.approx(0.15 + 0.60)  # LiteLLM's bundled prices for gpt-4o-mini
    overridden = cost_of_response(
        response, litellm_model="openai/gpt-4o-mini", cost_map_key="gpt-4o-mini", price_override=(1e-6, 2e-6)
    )
    assert overridden == pytest.approx(1.0 + 2.0)
