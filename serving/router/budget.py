"""The daily budget: a durable spend ledger shared by processes, and what spend means for routing.

Job: record the cost of every answered call (computed from the provider's real token usage with
LiteLLM's cost functions, per-model price overrides applied), never lose one, and answer "how much
has been spent today?" fast enough to ask on every decision.

How a record travels:
1. `record()` appends it as one JSON line to this process's journal file
   (`<ledger>.pending/<pid>-<id>.jsonl`) and fsyncs it: from then on a crash, `kill -9` or a power
   cut cannot lose it. Each record carries a random id (`rid`).
2. It is then written to the SQLite ledger with `INSERT OR IGNORE` on that id, at once if the
   database takes the write within `busy_timeout_s` (100 ms), otherwise by the ledger's writer
   thread, which retries with back-off for as long as another process holds the write lock.
   Until then the record counts in this process's `spent_today()` from memory.
3. A journal is replayed into SQLite when its process is gone: each process holds an exclusive
   `flock` on its own journal; any ledger that opens (and the writer thread, every minute) replays
   and deletes journals whose lock it can take. The id makes a replay of an already-written record
   a no-op, so the count of records equals the count of answered calls whatever failed when.

Trade-offs:
- An fsync per answered call (about a millisecond, off the event loop: the async router calls
  `record()` in a worker thread) buys "no spend lost" without a server. SQLite runs in WAL mode
  with synchronous=FULL, so a record's journal line can be dropped once the row is committed.
- Reads are cached for `refresh_seconds` (default 1 s) and never wait for a lock: a decision
  never waits on disk, and one worker sees another's spend at most that late (or, while the file
  is locked, when its writer gets through). Its own writes update its view at once. A burst of
  concurrent requests can therefore overshoot the ceiling by what they spend in that second; a
  hard cap would need a reservation per request, which we judged not worth a write on the decision
  path.
- Days are UTC calendar days (the `day` column), so the ceiling resets at 00:00 UTC for every
  worker alike.
- POSIX only (`fcntl.flock`), like the rest of the service's deployment targets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass
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
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    rid TEXT
)
"""
INSERT = (
    "INSERT OR IGNORE INTO spend (rid, ts, day, model, route, cost_usd, prompt_tokens, completion_tokens)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
JOURNAL_TRUNCATE_BYTES = 64 * 1024  # drop a journal's written lines once it is this big
ORPHAN_SCAN_S = 60.0
ORPHAN_RETRY_S = 2.0
RETRY_MAX_S = 1.0


def utc_day(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class SpendRecord:
    rid: str
    ts: float
    day: str
    model: str
    route: str | None
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int

    def row(self) -> tuple[Any, ...]:
        return (
            self.rid,
            self.ts,
            self.day,
            self.model,
            self.route,
            self.cost_usd,
            self.prompt_tokens,
            self.completion_tokens,
        )


class BudgetLedger:
    """Spend records: an fsync'd per-process journal, written through to one shared SQLite file."""

    def __init__(
        self, path: str | Path, refresh_seconds: float = 1.0, *, busy_timeout_s: float = 0.1
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.journal_dir = self.path.with_name(self.path.name + ".pending")
        self.refresh_seconds = refresh_seconds
        self._jlock = threading.Lock()  # the journal file
        self._state = threading.Lock()  # pending records, cached sum, the read connection
        self._write = threading.Lock()  # the write connection: one drain at a time
        self._wconn = _connect(self.path, busy_timeout_s=30.0)  # set-up may wait for another writer
        _create_schema(self._wconn)
        self._wconn.execute(f"PRAGMA busy_timeout={max(0, round(busy_timeout_s * 1000))}")
        self._rconn = _connect(self.path, busy_timeout_s=0.0)  # reads never wait
        self._pending: dict[str, SpendRecord] = {}
        self._committing = False
        self._busy_since: float | None = None
        self._sql_day = ""
        self._sql_total = 0.0
        self._sql_at = -math.inf
        self._journal_fd, self.journal_path = _open_journal(self.journal_dir)
        self._journal_bytes = 0
        self._closed = False
        self._orphans_left = False
        self.replay_orphans()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tierroute-ledger", daemon=True)
        self._thread.start()

    # -- writing -------------------------------------------------------------------------------

    def record(
        self,
        model: str,
        cost_usd: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        route: str | None = None,
        ts: float | None = None,
    ) -> None:
        """Journal one spend record (fsync'd), then write it to SQLite now or from the writer thread.

        Blocks for the fsync and at most `busy_timeout_s` for SQLite: call it off the event loop.
        """
        if not math.isfinite(cost_usd) or cost_usd < 0:
            raise ValueError(f"cost must be a finite non-negative number, got {cost_usd}")
        now = time.time() if ts is None else ts
        rec = SpendRecord(
            uuid.uuid4().hex,
            now,
            utc_day(now),
            str(model),
            route,
            float(cost_usd),
            int(prompt_tokens),
            int(completion_tokens),
        )
        line = (json.dumps(asdict(rec), separators=(",", ":")) + "\n").encode("utf-8")
        with self._jlock:
            try:
                _append(self._journal_fd, line)
                self._journal_bytes += len(line)
            except OSError as exc:  # disk full, I/O error: keep it in memory and in SQLite at least
                log.error("spend journal %s not writable (%s); record kept in memory", self.journal_path, exc)
            with self._state:
                self._pending[rec.rid] = rec
        if self._busy_since is not None or not self._drain(wait=False):
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Write every pending record to SQLite, waiting up to `timeout` s; True when none is left."""
        deadline = time.monotonic() + timeout
        while True:
            if self._drain(wait=True):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    @property
    def pending(self) -> int:
        """Records journaled but not yet in SQLite (the database was locked)."""
        with self._state:
            return len(self._pending)

    def _drain(self, *, wait: bool) -> bool:
        """Commit the pending records in one transaction; True when nothing is left pending."""
        if not self._write.acquire(blocking=wait):
            return False
        try:
            with self._state:
                batch = list(self._pending.values())
            if batch:
                try:
                    self._insert([r.row() for r in batch], hold_state=True, batch=batch)
                except sqlite3.Error as exc:
                    if self._busy_since is None:
                        self._busy_since = time.monotonic()
                        log.warning(
                            "spend ledger %s not writable (%s): %d record(s) safe in the journal, retrying",
                            self.path,
                            exc,
                            len(batch),
                        )
                    return False
                if self._busy_since is not None:
                    log.warning(
                        "spend ledger %s writable again after %.1f s; journaled records written",
                        self.path,
                        time.monotonic() - self._busy_since,
                    )
                    self._busy_since = None
            with self._jlock, self._state:
                empty = not self._pending
                if empty and self._journal_bytes >= JOURNAL_TRUNCATE_BYTES:
                    os.ftruncate(self._journal_fd, 0)
                    self._journal_bytes = 0
            return empty
        finally:
            self._write.release()

    def _insert(
        self, rows: list[tuple[Any, ...]], *, hold_state: bool = False, batch: list[SpendRecord] | None = None
    ) -> None:
        """One transaction on the write connection (caller holds `_write`). With `hold_state`, the
        committed batch leaves `_pending` and joins the cached SQL sum atomically for readers."""
        conn = self._wconn
        try:
            conn.execute("BEGIN IMMEDIATE")  # waits up to busy_timeout for another process's writer
            conn.executemany(INSERT, rows)
            if hold_state:
                with self._state:
                    self._committing = True
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if hold_state:
                with self._state:
                    self._committing = False
            raise
        if hold_state and batch is not None:
            with self._state:
                for r in batch:
                    self._pending.pop(r.rid, None)
                if self._sql_day:
                    self._sql_total += sum(r.cost_usd for r in batch if r.day == self._sql_day)
                self._committing = False

    def replay_orphans(self) -> int:
        """Write the journals of processes that are gone into SQLite, then delete them; returns the
        number of records read (already-written ones are ignored by id)."""
        if not self._write.acquire(blocking=False):
            return 0
        try:
            return self._replay_orphans()
        finally:
            self._write.release()

    def _replay_orphans(self) -> int:
        count = 0
        self._orphans_left = False
        try:
            entries = sorted(self.journal_dir.iterdir())
        except FileNotFoundError:
            return 0
        for path in entries:
            if path == self.journal_path or not path.name.endswith((".jsonl", ".tmp")):
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive and writes it itself
                if os.fstat(fd).st_nlink == 0:
                    continue  # another process replayed and deleted it meanwhile
                records = _read_journal(fd, path)
                if records:
                    try:
                        self._insert([r.row() for r in records])
                    except sqlite3.Error as exc:
                        log.warning("cannot replay spend journal %s yet (%s); will retry", path, exc)
                        self._orphans_left = True
                        continue
                    log.warning("replayed %d spend record(s) from %s", len(records), path.name)
                    with self._state:
                        self._sql_at = -math.inf  # re-read the sum
                count += len(records)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return count

    def _run(self) -> None:
        delay = 0.05
        next_scan = time.monotonic() + (ORPHAN_RETRY_S if self._orphans_left else ORPHAN_SCAN_S)
        while not self._stop.is_set():
            with self._state:
                waiting = bool(self._pending)
            self._wake.wait(timeout=delay if waiting else max(0.0, next_scan - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._state:
                waiting = bool(self._pending)
            if waiting:
                delay = 0.05 if self._drain(wait=True) else min(delay * 2, RETRY_MAX_S)
            if time.monotonic() >= next_scan:
                try:
                    self.replay_orphans()
                except OSError as exc:
                    log.warning("spend journal scan failed: %s", exc)
                next_scan = time.monotonic() + (ORPHAN_RETRY_S if self._orphans_left else ORPHAN_SCAN_S)

    # -- reading -------------------------------------------------------------------------------

    def spent_today(self, *, fresh: bool = False) -> float:
        """USD spent today: the shared ledger (cached `refresh_seconds`) plus this process's records
        not yet written to it. Never waits for a lock; a failed read keeps the last known sum."""
        now = time.monotonic()
        day = utc_day()
        with self._state:
            stale = fresh or now - self._sql_at >= self.refresh_seconds or self._sql_day != day
            if stale and not self._committing:
                try:
                    row = self._rconn.execute(
                        "SELECT COALESCE(SUM(cost_usd), 0) FROM spend WHERE day = ?", (day,)
                    ).fetchone()
                    self._sql_day, self._sql_total, self._sql_at = day, float(row[0]), now
                except sqlite3.Error as exc:
                    log.debug("spend ledger read failed (%s); using the last known sum", exc)
            base = self._sql_total if self._sql_day == day else 0.0
            return base + sum(r.cost_usd for r in self._pending.values() if r.day == day)

    def by_model(self, day: str | None = None) -> dict[str, float]:
        """USD by model for a day (default today), as written to the shared ledger."""
        with self._state:
            rows = self._rconn.execute(
                "SELECT model, SUM(cost_usd) FROM spend WHERE day = ? GROUP BY model", (day or utc_day(),)
            ).fetchall()
        return {str(m): float(c) for m, c in rows}

    def close(self, timeout: float = 5.0) -> None:
        """Stop the writer, write what is pending (up to `timeout` s); what is left stays journaled
        and is replayed by the next ledger that opens the file."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)
        done = self.flush(timeout=timeout)
        with self._jlock:
            if done:
                self.journal_path.unlink(missing_ok=True)
            else:
                log.warning(
                    "%d spend record(s) stay in %s; they are written when the ledger next opens",
                    self.pending,
                    self.journal_path,
                )
            os.close(self._journal_fd)  # releases the flock: the journal is now an orphan to replay
        with self._write, self._state:
            self._wconn.close()
            self._rconn.close()


def _connect(path: Path, *, busy_timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={round(busy_timeout_s * 1000)}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _create_schema(conn: sqlite3.Connection) -> None:
    """The table, its indexes, and the `rid` column (added to ledgers made before it existed)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(spend)")}
        if "rid" not in columns:
            conn.execute("ALTER TABLE spend ADD COLUMN rid TEXT")
        conn.execute("CREATE INDEX IF NOT EXISTS spend_day ON spend(day)")
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS spend_rid ON spend(rid)")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _open_journal(folder: Path) -> tuple[int, Path]:
    """A new journal file, locked (flock) before it gets its visible name, so no other process can
    mistake it for a dead process's journal."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp = folder / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    final = folder / f"{name}.jsonl"
    os.rename(tmp, final)
    _fsync_dir(folder)
    return fd, final


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def _read_journal(fd: int, path: Path) -> list[SpendRecord]:
    chunks: list[bytes] = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    out: list[SpendRecord] = []
    for n, line in enumerate(b"".join(chunks).splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(
                SpendRecord(
                    str(d["rid"]),
                    float(d["ts"]),
                    str(d["day"]),
                    str(d["model"]),
                    None if d.get("route") is None else str(d["route"]),
                    float(d["cost_usd"]),
                    int(d.get("prompt_tokens", 0)),
                    int(d.get("completion_tokens", 0)),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:  # a torn last line after a power cut
            log.warning("skipping unreadable line %d of spend journal %s: %s", n, path.name, exc)
    return out


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
