"""The spend ledger: survives restarts, is shared by processes, prices real usage with LiteLLM."""

from __future__ import annotations

import json
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


def _spend_rows(path: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(path) as conn:
        return [
            (str(r), str(m), float(c)) for r, m, c in conn.execute("SELECT rid, model, cost_usd FROM spend")
        ]


def test_locked_database_keeps_records_in_the_journal_until_it_can_write(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = BudgetLedger(path, refresh_seconds=0)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    try:
        ledger.record("m", 0.5)  # returns: the record is safe in the journal
        assert ledger.pending == 1
        assert ledger.spent_today() == pytest.approx(0.5)  # counted from memory meanwhile
        assert _spend_rows(path) == []
        assert b'"cost_usd":0.5' in ledger.journal_path.read_bytes()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert ledger.flush(timeout=30)
    assert [(m, c) for _, m, c in _spend_rows(path)] == [("m", 0.5)]
    assert ledger.spent_today(fresh=True) == pytest.approx(0.5)  # not counted twice
    ledger.close()
    assert not ledger.journal_path.exists()


def test_a_dead_process_journal_is_replayed_once(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    first = BudgetLedger(path)
    first.record("m", 1.0)  # written to SQLite and still in the journal (truncated only when large)
    journal = first.journal_path.read_bytes()
    first.close()
    # a process killed with two records journaled, one of which had reached SQLite
    pending = path.with_name(path.name + ".pending")
    line = json.dumps({**json.loads(journal), "rid": "other", "cost_usd": 2.0}).encode()
    (pending / "12345-deadbeef.jsonl").write_bytes(journal + line + b"\n" + b'{"rid": "torn')
    second = BudgetLedger(path, refresh_seconds=0)
    assert sorted(c for _, _, c in _spend_rows(path)) == [1.0, 2.0]
    assert second.spent_today() == pytest.approx(3.0)
    assert not (pending / "12345-deadbeef.jsonl").exists()
    second.close()


def test_a_live_process_journal_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    alive = BudgetLedger(path)
    other = BudgetLedger(path)
    assert alive.journal_path.exists() and other.replay_orphans() == 0
    assert alive.journal_path.exists()
    alive.close()
    other.close()


def test_a_ledger_made_before_record_ids_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE spend (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, day TEXT NOT NULL,"
            " model TEXT NOT NULL, route TEXT, cost_usd REAL NOT NULL,"
            " prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0)"
        )
        conn.execute(
            "INSERT INTO spend (ts, day, model, cost_usd) VALUES (?, ?, 'm', 0.25)", (time.time(), utc_day())
        )
    ledger = BudgetLedger(path)
    ledger.record("m", 0.25)
    assert ledger.spent_today(fresh=True) == pytest.approx(0.5)
    ledger.close()
