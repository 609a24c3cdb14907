"""The daily budget: a SQLite spend ledger shared by processes, and what spend means for routing.

Job: record the cost of every answered call (computed from the provider's real token usage with
LiteLLM's cost functions, per-model price overrides applied) and answer "how much has been spent
today?" fast enough to ask on every decision.

Trade-offs:
- SQLite in WAL mode with a busy timeout: several worker processes append to one file and read
  the day's sum without a server. Writes are one small INSERT per call (~50 us); it is the call
  to an LLM that dominates.
- Reads are cached for `refresh_seconds` (default 1 s): a decision never waits on disk, and one
  worker sees another's spend at most that late. Its own writes update its cache at once. A
  burst of concurrent requests can therefore overshoot the ceiling by what they spend in that
  second; a hard cap would need a reservation per request, which we judged not worth a write on
  the decision path.
- Days are UTC calendar days (the `day` column), so the ceiling resets at 00:00 UTC for every
  worker alike.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("tierroute.router.budget")

SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    route TEXT,
    cost_usd REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS spend_day ON spend(day);
"""


def utc_day(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC).strftime("%Y-%m-%d")


class BudgetLedger:
    """Append-only spend records in one SQLite file; `spent_today()` is cached."""

    def __init__(self, path: str | Path, refresh_seconds: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=10.0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.executescript(SCHEMA)
        self._cached_day = ""
        self._cached_total = 0.0
        self._cached_at = -math.inf

    def record(
        self,
        model: str,
        cost_usd: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        route: str | None = None,
        ts: float | None = None,
    ) -> None:
        if not math.isfinite(cost_usd) or cost_usd < 0:
            raise ValueError(f"cost must be a finite non-negative number, got {cost_usd}")
        now = time.time() if ts is None else ts
        day = utc_day(now)
        with self._lock:
            self._conn.execute(
                "INSERT INTO spend (ts, day, model, route, cost_usd, prompt_tokens, completion_tokens)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, day, model, route, float(cost_usd), int(prompt_tokens), int(completion_tokens)),
            )
            if day == self._cached_day:
                self._cached_total += cost_usd

    def spent_today(self, *, fresh: bool = False) -> float:
        now = time.monotonic()
        if not fresh and now - self._cached_at < self.refresh_seconds and self._cached_day:
            return self._cached_total
        day = utc_day()
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(SUM(cost_usd), 0) FROM spend WHERE day = ?", (day,)
            ).fetchone()
            self._cached_day = day
            self._cached_total = float(row[0])
            self._cached_at = now
            return self._cached_total

    def by_model(self, day: str | None = None) -> dict[str, float]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT model, SUM(cost_usd) FROM spend WHERE day = ? GROUP BY model", (day or utc_day(),)
            ).fetchall()
        return {str(m): float(c) for m, c in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@dataclass(frozen=True, slots=True)
class BudgetState:
    state: str  # ok | degraded | exhausted
    spent_usd: float
    limit_usd: float


def budget_state(spent: float, limit: float, downgrade_at: float) -> BudgetState:
    if spent >= limit:
        return BudgetState("exhausted", spent, limit)
    if spent >= downgrade_at * limit:
        return BudgetState("degraded", spent, limit)
    return BudgetState("ok", spent, limit)


def usage_of(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, dict) else lambda k, d=None: getattr(usage, k, d)
    return int(get("prompt_tokens", 0) or 0), int(get("completion_tokens", 0) or 0)


def cost_of_response(
    response: Any,
    *,
    litellm_model: str,
    cost_map_key: str | None,
    price_override: tuple[float, float] | None,
) -> float:
    """USD for one response from its real usage, with LiteLLM's `completion_cost`.

    `price_override` is (input, output) USD per token from the policy; otherwise LiteLLM prices
    the model under `cost_map_key` (the bundled cost map's name for it). If LiteLLM cannot price
    it we fall back to usage x the override or zero, and log, rather than fail the request.
    """
    import litellm
    from litellm.types.utils import CostPerToken

    prompt_tokens, completion_tokens = usage_of(response)
    custom = (
        CostPerToken(input_cost_per_token=price_override[0], output_cost_per_token=price_override[1])
        if price_override is not None
        else None
    )
    try:
        cost = litellm.completion_cost(
            completion_response=response,
            model=cost_map_key or litellm_model,
            custom_cost_per_token=custom,
        )
        return float(cost)
    except Exception as exc:  # LiteLLM raises many types for "unknown model"; pricing must not fail a call
        if price_override is not None:
            return prompt_tokens * price_override[0] + completion_tokens * price_override[1]
        log.warning("cannot price %s (%s); recording zero cost", litellm_model, exc)
        return 0.0
