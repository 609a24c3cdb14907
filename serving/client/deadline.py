"""Deadline-aware in-process classification: concurrent callers share few, batched, cancellable calls.

Job: `CoalescingClassifier(backend)` puts a cancellable in-process backend (`BundleClassifier`, the
served model) behind `classify(texts, timeout=...)` for any number of threads (and `aclassify` for
event loops). It runs the service's micro-batcher (`serving.model.batcher.Inference`) on a private
event-loop thread, so:
- bounded concurrency: `workers` ONNX calls at a time (default 1 call on the bundle's threads),
  everything else queues (at most `max_queue` texts, then refused at once);
- micro-batching: what queued while a call ran goes into the next call, as ONE batched ONNX call
  (up to `max_batch` texts); results are identical to one-text calls for batch-invariant encoders
  (fp32, int8-static; a dynamic-int8 bundle runs its batch one text at a time by itself);
- a real deadline: a caller waits at most `timeout`; its text leaves the queue when it gives up, and
  a running call nobody waits for any more is aborted (`RunOptions.terminate`), so the CPU goes to
  callers who can still be answered in time;
- shedding (`shed=True`): a text that would wait longer than its whole deadline (estimated from the
  observed cost per text of recent calls and the texts ahead of it) is refused at once
  (`ClassifierTimeout`, "shed: ..."), so its caller falls back in microseconds instead of at the
  deadline, and no CPU is spent on an answer that would come too late. A text with nothing ahead
  of it is always tried: the estimate is refreshed by every call, so one slow period (or an
  estimate over the deadline on its own) never sheds everything from then on.

Trade-offs:
- One extra thread hop per call (caller -> loop thread -> pool worker), ~0.1 ms: cheap next to an
  encoder call, and it is what lets callers from many threads meet in one queue.
- The cost estimate is a moving average of seconds per text over recent calls, of whatever lengths
  they had; it errs towards shedding right after a switch from short to long texts, and towards
  admitting after the opposite. Before the first call there is no estimate and nothing is shed.
- A shed or timed-out caller gets no classification: the router's rules decide (a quality cost the
  router bench reports as the fallback share), never a late answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from serving.client.contract import ClassifierTimeout, ClassifierUnavailable
from serving.model.batcher import CancelToken, Inference, QueueFull
from serving.schemas import ClassifyResponse, ClassifyResult, ModelRef


@runtime_checkable
class CancellableBackend(Protocol):
    """An in-process backend whose calls can be batched and aborted (`BundleClassifier.predict_results`)."""

    def predict_results(
        self, texts: Sequence[str], cancel: CancelToken | None = None
    ) -> tuple[ModelRef, list[ClassifyResult]]: ...


class _Cost:
    """Moving average of seconds per text over recent calls (written by the pool thread, read by the loop)."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.per_text: float | None = None

    def observe(self, n_texts: int, seconds: float) -> None:
        if n_texts < 1:
            return
        x = seconds / n_texts
        self.per_text = x if self.per_text is None else self.per_text + self.alpha * (x - self.per_text)


class CoalescingClassifier:
    """Many callers, few batched ONNX calls, each caller bounded by its own deadline."""

    def __init__(
        self,
        backend: CancellableBackend,
        *,
        workers: int = 1,
        max_batch: int = 16,
        max_queue: int = 64,
        shed: bool = True,
    ) -> None:
        self.backend = backend
        self.shed_enabled = shed
        self.cost = _Cost()
        self.inference: Inference[ModelRef, ClassifyResult] = Inference(
            self._predict,
            workers=workers,
            batching=True,
            max_batch=max_batch,
            max_queue=max_queue,
            cancellable=True,
            observe=self.cost.observe,
        )
        self._calls = itertools.count()
        self.calls = 0  # backend calls started (a batch is one call)
        self.shed = 0  # callers refused at once
        self.timeouts = 0  # callers who gave up waiting
        self._waiting = 0  # texts admitted and not answered yet (loop thread only)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tierroute-coalesce", daemon=True)
        self._thread.start()
        self._closed = False

    # -- what callers use ----------------------------------------------------------------------

    def classify(self, texts: Sequence[str], timeout: float | None = None) -> ClassifyResponse:
        """One result per text, in order, within `timeout` seconds (None: no deadline).

        Raises `ClassifierTimeout` (deadline passed, or shed at once), `ClassifierUnavailable`
        (the backend failed, the queue is full, or this classifier is closed) or what the backend
        raised for these texts."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fut = self._submit(texts, deadline)
        try:
            model, results = fut.result(timeout=None if deadline is None else _left(deadline) + 0.002)
        except concurrent.futures.TimeoutError:  # the loop thread was late: stop waiting anyway
            fut.cancel()
            raise self._timed_out(timeout) from None
        except concurrent.futures.CancelledError:
            raise ClassifierUnavailable("in-process classifier closed") from None
        return ClassifyResponse(model=model, results=results)

    async def aclassify(self, texts: Sequence[str], timeout: float | None = None) -> ClassifyResponse:
        """`classify` for an event loop (any loop: the work runs on this classifier's own)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fut = asyncio.wrap_future(self._submit(texts, deadline))
        try:
            if deadline is None:
                model, results = await fut
            else:
                model, results = await asyncio.wait_for(fut, _left(deadline) + 0.002)
        except TimeoutError:
            raise self._timed_out(timeout) from None
        return ClassifyResponse(model=model, results=results)

    def close(self) -> None:
        """Fail what is queued, let a running call finish, stop the loop thread."""
        if self._closed:
            return
        self._closed = True

        async def _shutdown() -> None:
            self.inference.close()

        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            if not self._thread.is_alive():
                self._loop.close()

    def stats(self) -> dict[str, int]:
        return {"calls": self.calls, "shed": self.shed, "timeouts": self.timeouts}

    # -- inside -----------------------------------------------------------------------------------

    def _submit(
        self, texts: Sequence[str], deadline: float | None
    ) -> concurrent.futures.Future[tuple[ModelRef, list[ClassifyResult]]]:
        if isinstance(texts, str):
            raise TypeError("classify() takes a sequence of texts, not a single string")
        if self._closed:
            raise ClassifierUnavailable("in-process classifier closed")
        return asyncio.run_coroutine_threadsafe(self._run(list(texts), deadline), self._loop)

    def _predict(
        self, texts: Sequence[str], cancel: CancelToken | None = None
    ) -> tuple[ModelRef, list[ClassifyResult]]:
        self.calls = next(self._calls) + 1
        return self.backend.predict_results(texts, cancel)

    def _timed_out(self, timeout: float | None) -> ClassifierTimeout:
        self.timeouts += 1
        return ClassifierTimeout(f"no answer within {(timeout or 0) * 1e3:g} ms")

    def _expected_wait(self, n: int) -> float | None:
        """Seconds until `n` more texts would be answered: everything admitted before them, then them."""
        per_text = self.cost.per_text
        return None if per_text is None else per_text * (self._waiting + n)

    async def _run(self, texts: list[str], deadline: float | None) -> tuple[ModelRef, list[ClassifyResult]]:
        """On the loop thread: admit (or shed), queue, wait at most until `deadline`."""
        left = None if deadline is None else _left(deadline)
        if left is not None:
            if left <= 0:
                raise TimeoutError
            expected = self._expected_wait(len(texts)) if self.shed_enabled and self._waiting else None
            if expected is not None and expected > left:
                self.shed += 1
                raise ClassifierTimeout(
                    f"shed: ~{expected * 1e3:.0f} ms of work ahead ({self._waiting} texts), "
                    f"over the {left * 1e3:.0f} ms left"
                )
        self._waiting += len(texts)
        try:
            return await self.inference.run(texts, timeout=left)
        except QueueFull as exc:
            raise ClassifierUnavailable(f"in-process classifier overloaded: {exc}") from None
        finally:
            self._waiting -= len(texts)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
