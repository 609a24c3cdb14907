"""Inference off the event loop, with optional micro-batching of concurrent requests.

Job: `Inference.run(texts)` is what the classify route awaits. Without batching, each request's
texts go to a small dedicated thread pool on their own. With batching, requests queue on the event
loop and a free worker takes everything queued (up to `max_batch` texts) as ONE ONNX call, then
hands each request its slice; results come back in input order.

Trade-offs:
- Batching is driven by free workers, not by a timer: a lone request starts at once (no added
  latency at concurrency 1); under load, requests pile up while the workers are busy and the next
  call takes them all. `wait_ms > 0` additionally holds a batch until it is full or that long has
  passed since its oldest request: more merging, more latency. Measured on 2 cores (README):
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
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

M = TypeVar("M")  # the model object a call ran on (returned so responses name the right version)
R = TypeVar("R")  # one text's result

PredictFn = Callable[[Sequence[str]], tuple[M, list[R]]]
BatchObserver = Callable[[int, float], None]


@dataclass
class _Pending(Generic[M, R]):
    texts: Sequence[str]
    future: asyncio.Future[tuple[M, list[R]]]
    enqueued: float


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
        observe: BatchObserver | None = None,
    ) -> None:
        if workers < 1 or max_batch < 1 or wait_ms < 0:
            raise ValueError("workers and max_batch must be >= 1 and wait_ms >= 0")
        self.predict = predict
        self.workers = workers
        self.batching = batching
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.observe = observe
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tierroute-infer")
        self._queue: deque[_Pending[M, R]] = deque()
        self._queued_texts = 0
        self._free = workers
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def describe(self) -> dict[str, object]:
        return {
            "batching": self.batching,
            "max_batch": self.max_batch,
            "batch_wait_ms": self.wait_s * 1000.0,
            "workers": self.workers,
        }

    async def run(self, texts: Sequence[str]) -> tuple[M, list[R]]:
        """Results for `texts`, in order, and the model that produced them."""
        if self._closed:
            raise RuntimeError("inference is shut down")
        loop = asyncio.get_running_loop()
        if not self.batching:
            return await loop.run_in_executor(self._pool, self._timed, texts)
        pending: _Pending[M, R] = _Pending(texts, loop.create_future(), time.monotonic())
        self._queue.append(pending)
        self._queued_texts += len(texts)
        self._dispatch()
        return await pending.future

    def _timed(self, texts: Sequence[str]) -> tuple[M, list[R]]:
        start = time.perf_counter()
        out = self.predict(texts)
        if self.observe is not None:
            self.observe(len(texts), time.perf_counter() - start)
        return out

    def _dispatch(self) -> None:
        """Start batches while workers are free; called on the loop after every arrival and completion."""
        loop = asyncio.get_running_loop()
        while self._free > 0 and self._queue:
            if self.wait_s > 0 and self._queued_texts < self.max_batch:
                due = self._queue[0].enqueued + self.wait_s
                if time.monotonic() < due:
                    if self._timer is None:
                        self._timer = loop.call_at(loop.time() + (due - time.monotonic()), self._on_timer)
                    return
            batch = [self._queue.popleft()]
            size = len(batch[0].texts)
            while self._queue and size + len(self._queue[0].texts) <= self.max_batch:
                item = self._queue.popleft()
                batch.append(item)
                size += len(item.texts)
            self._queued_texts -= size
            self._free -= 1
            task = loop.create_task(self._run_batch(batch))
            self._tasks.add(task)  # keep a reference until done (the loop holds only a weak one)
            task.add_done_callback(self._tasks.discard)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    async def _run_batch(self, batch: list[_Pending[M, R]]) -> None:
        loop = asyncio.get_running_loop()
        texts: list[str] = [t for item in batch for t in item.texts]
        try:
            model, results = await loop.run_in_executor(self._pool, self._timed, texts)
        except BaseException as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            start = 0
            for item in batch:
                end = start + len(item.texts)
                if not item.future.done():  # a client that went away cancelled its future
                    item.future.set_result((model, results[start:end]))
                start = end
        finally:
            self._free += 1
            if not self._closed:
                self._dispatch()

    def close(self) -> None:
        """Stop taking work; fail queued requests; let running calls finish."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("server shutting down"))
        self._pool.shutdown(wait=True, cancel_futures=False)
