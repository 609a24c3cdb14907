"""Inference off the event loop, with optional micro-batching of concurrent requests.

Job: `Inference.run(texts)` is what the classify route awaits. Without batching, each request's
texts go to a small dedicated thread pool on their own. With batching, requests queue on the event
loop and a free worker takes everything queued (up to `max_batch` texts) as ONE ONNX call, then
hands each request its slice; results come back in input order.

Trade-offs:
- Batching is driven by free workers, not by a timer: a lone request starts at once (no added
  latency at concurrency 1); under load, requests pile up while the workers are busy and the next
  call takes them all. `wait_ms > 0` additionally holds a batch until it is full or that long has
  passed since its oldest request: more merging, more latency. Measured on 2 cores (evals/RESULTS.md):
  wait 2 ms added 2 ms at concurrency 1 and no throughput, so the default is 0.
- What batching buys on a CPU is modest: the encoder's FLOPs grow with the texts either way; a
  batch of 8 costs ~10% less per text than 8 single calls (fp32, 2 threads), nothing for int8.
  Measured over HTTP: ~8-10% less server CPU per request and +4-10% requests/s at concurrency 32.
- Merged texts are padded to the longest one in the call (the bundle pads per call). We do not
  reorder by length: requests of similar size are the common case and the encoder window caps
  every text at 128 tokens, so padding waste is bounded.
- A request bigger than `max_batch` runs alone (never split), so its latency is one call.
- Everything queue-related runs on the event loop thread (no locks); only `predict` runs in the
  pool. The pool is small (`workers`, default 1 call using 2 ONNX Runtime threads): more calls
  at once than the cores can run only fight (2 workers x 2 threads measured 10% slower).

Overload and failure handling (a request never pays for another one):
- The queue is bounded (`max_queue` texts waiting, running calls not counted): `run` raises
  `QueueFull` at once instead of queueing work that would only time out (HTTP 503 + Retry-After).
  A request always gets in when nothing is queued, so a lone oversized request is never refused.
- `run(texts, timeout=...)` gives up after `timeout` seconds (TimeoutError; HTTP 503).
- Work nobody waits for is dropped: a request whose caller is cancelled (client disconnected,
  deadline passed) leaves the queue at once; when every request of a running call has gone away,
  the call's `CancelToken` fires, and a cancellable `predict` (the bundle: ONNX Runtime's
  `RunOptions.terminate`) aborts it, so the worker is free for live requests within milliseconds.
- A failing merged call is re-run one request at a time, so one bad input fails only its own
  request, never its batch neighbours.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

M = TypeVar("M")  # the model object a call ran on (returned so responses name the right version)
R = TypeVar("R")  # one text's result

PredictFn = Callable[..., tuple[M, list[R]]]
"""`predict(texts)` or, with `Inference(cancellable=True)`, `predict(texts, cancel=CancelToken)`."""
BatchObserver = Callable[[int, float], None]


class QueueFull(Exception):
    """The queue already holds `max_queue` texts: the caller should retry later (HTTP 503)."""


class CancelToken:
    """Fired (from the event loop thread) when nobody waits for a running call any more.

    `predict` runs in a pool thread: it may poll `cancelled` between steps or register a hook with
    `on_cancel` (called at once if the token already fired). Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._hooks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def on_cancel(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if not self._cancelled:
                self._hooks.append(hook)
                return
        hook()

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()


@dataclass(eq=False)
class _Pending(Generic[M, R]):
    texts: Sequence[str]
    future: asyncio.Future[tuple[M, list[R]]]
    enqueued: float
    queued: bool = True
    call: _Call[M, R] | None = None


@dataclass(eq=False)
class _Call(Generic[M, R]):
    items: list[_Pending[M, R]]
    token: CancelToken = field(default_factory=CancelToken)

    def abandoned(self) -> bool:
        return all(item.future.done() for item in self.items)


class Inference(Generic[M, R]):
    """Runs `predict` in a thread pool; merges concurrent calls when `batching` is on."""

    def __init__(
        self,
        predict: PredictFn[M, R],
        *,
        workers: int = 2,
        batching: bool = True,
        max_batch: int = 32,
        wait_ms: float = 0.0,
        max_queue: int = 4096,
        cancellable: bool = False,
        observe: BatchObserver | None = None,
    ) -> None:
        if workers < 1 or max_batch < 1 or wait_ms < 0 or max_queue < 1:
            raise ValueError("workers, max_batch and max_queue must be >= 1 and wait_ms >= 0")
        self.predict = predict
        self.workers = workers
        self.batching = batching
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.max_queue = max_queue
        self.cancellable = cancellable
        self.observe = observe
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tierroute-infer")
        self._queue: deque[_Pending[M, R]] = deque()
        self._queued_texts = 0
        self._free = workers
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.dropped = 0  # requests that left before their result (cancelled or timed out)
        self.aborted = 0  # running calls cancelled because nobody waited for them any more

    def describe(self) -> dict[str, object]:
        return {
            "batching": self.batching,
            "max_batch": self.max_batch,
            "batch_wait_ms": self.wait_s * 1000.0,
            "workers": self.workers,
            "max_queue": self.max_queue,
        }

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    async def run(self, texts: Sequence[str], *, timeout: float | None = None) -> tuple[M, list[R]]:
        """Results for `texts`, in order, and the model that produced them.

        Raises QueueFull when the queue is full, TimeoutError after `timeout` seconds, RuntimeError
        once shut down, or what `predict` raised for these texts.
        """
        if self._closed:
            raise RuntimeError("inference is shut down")
        if self._queue and self._queued_texts + len(texts) > self.max_queue:
            raise QueueFull(f"{self._queued_texts} texts queued (max {self.max_queue})")
        loop = asyncio.get_running_loop()
        pending: _Pending[M, R] = _Pending(texts, loop.create_future(), time.monotonic())
        self._queue.append(pending)
        self._queued_texts += len(texts)
        self._dispatch()
        try:
            if timeout is None:
                return await pending.future
            async with asyncio.timeout(timeout):
                return await pending.future
        except BaseException:
            if pending.future.cancelled() or not pending.future.done():  # we stopped waiting
                self._abandon(pending)
            raise

    def _abandon(self, pending: _Pending[M, R]) -> None:
        """The caller stopped waiting: drop its queued work, or abort its call if nobody else waits."""
        pending.future.cancel()
        self.dropped += 1
        if pending.queued:
            pending.queued = False
            self._queue.remove(pending)
            self._queued_texts -= len(pending.texts)
        elif pending.call is not None and pending.call.abandoned() and not pending.call.token.cancelled:
            self.aborted += 1
            pending.call.token.cancel()

    def _timed(self, texts: Sequence[str], token: CancelToken) -> tuple[M, list[R]]:
        start = time.perf_counter()
        out = self.predict(texts, cancel=token) if self.cancellable else self.predict(texts)
        if self.observe is not None:
            self.observe(len(texts), time.perf_counter() - start)
        return out

    def _dispatch(self) -> None:
        """Start calls while workers are free; called on the loop after every arrival and completion."""
        loop = asyncio.get_running_loop()
        while self._free > 0 and self._queue:
            if self.batching and self.wait_s > 0 and self._queued_texts < self.max_batch:
                due = self._queue[0].enqueued + self.wait_s
                if time.monotonic() < due:
                    if self._timer is None:
                        self._timer = loop.call_at(loop.time() + (due - time.monotonic()), self._on_timer)
                    return
            batch = [self._queue.popleft()]
            size = len(batch[0].texts)
            while self.batching and self._queue and size + len(self._queue[0].texts) <= self.max_batch:
                item = self._queue.popleft()
                batch.append(item)
                size += len(item.texts)
            self._queued_texts -= size
            self._free -= 1
            call: _Call[M, R] = _Call(batch)
            for item in batch:
                item.queued = False
                item.call = call
            task = loop.create_task(self._run_call(call))
            self._tasks.add(task)  # keep a reference until done (the loop holds only a weak one)
            task.add_done_callback(self._tasks.discard)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    async def _execute(self, call: _Call[M, R]) -> tuple[M, list[R]]:
        texts: list[str] = [t for item in call.items for t in item.texts]
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, texts, call.token)

    async def _run_call(self, call: _Call[M, R]) -> None:
        try:
            try:
                model, results = await self._execute(call)
            except Exception as exc:
                if len(call.items) > 1 and not call.abandoned():
                    await self._run_one_by_one(call.items)
                else:
                    _fail(call.items, exc)
            else:
                start = 0
                for item in call.items:
                    end = start + len(item.texts)
                    if not item.future.done():  # a client that went away cancelled its future
                        item.future.set_result((model, results[start:end]))
                    start = end
        except BaseException:  # the loop is cancelling this task: shutting down
            _fail(call.items, RuntimeError("server shutting down"))
            raise
        finally:
            self._free += 1
            if not self._closed:
                self._dispatch()

    async def _run_one_by_one(self, items: list[_Pending[M, R]]) -> None:
        """A merged call failed: isolate the culprit by running each live request on its own."""
        for item in items:
            if item.future.done():
                continue
            solo: _Call[M, R] = _Call([item])
            item.call = solo
            try:
                out = await self._execute(solo)
            except Exception as exc:
                _fail([item], exc)
            else:
                if not item.future.done():
                    item.future.set_result(out)

    def close(self) -> None:
        """Stop taking work; fail queued requests; let running calls finish."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        while self._queue:
            item = self._queue.popleft()
            item.queued = False
            if not item.future.done():
                item.future.set_exception(RuntimeError("server shutting down"))
        self._queued_texts = 0
        self._pool.shutdown(wait=True, cancel_futures=False)


def _fail(items: Sequence[_Pending[M, R]], exc: BaseException) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(exc)
