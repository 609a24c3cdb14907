"""The micro-batcher with a fake model: order, merging, limits, errors, waiting, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from serving.model.batcher import Inference


class FakeModel:
    """Uppercases texts; records each call's size; optionally slow or failing."""

    def __init__(self, delay: float = 0.02, fail_on: str | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> tuple[str, list[str]]:
        with self.lock:
            self.calls.append(len(texts))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model failed")
        return "v1", [t.upper() for t in texts]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_concurrent_requests_are_merged_and_answered_in_order() -> None:
    model = FakeModel()

    async def main() -> list[tuple[str, list[str]]]:
        engine = Inference(model, workers=1, batching=True, max_batch=64)
        requests = [[f"r{i}-{j}" for j in range(1 + i % 3)] for i in range(20)]
        out = await asyncio.gather(*(engine.run(r) for r in requests))
        engine.close()
        for req, (version, results) in zip(requests, out, strict=True):
            assert version == "v1"
            assert results == [t.upper() for t in req]
        return out

    run(main())
    assert model.calls[0] == 1  # the first request starts at once, alone
    assert len(model.calls) < 20  # the rest were merged while the worker was busy
    assert sum(model.calls) == sum(1 + i % 3 for i in range(20))


def test_max_batch_is_respected_and_a_big_request_runs_alone() -> None:
    model = FakeModel()

    async def main() -> None:
        engine = Inference(model, workers=1, batching=True, max_batch=4)
        small = [engine.run([f"s{i}"]) for i in range(9)]
        big = engine.run([f"b{i}" for i in range(10)])
        results = await asyncio.gather(*small, big)
        assert results[-1][1] == [f"B{i}" for i in range(10)]
        engine.close()

    run(main())
    assert 10 in model.calls
    assert all(n <= 4 for n in model.calls if n != 10)


def test_a_failing_request_never_fails_its_batch_neighbours() -> None:
    model = FakeModel(fail_on="boom")

    async def main() -> None:
        engine = Inference(model, workers=1, batching=True, max_batch=8)
        first = asyncio.ensure_future(engine.run(["warm-up"]))
        await asyncio.sleep(0.005)  # keep the worker busy so the next two merge
        bad = engine.run(["boom"])
        good_same_batch = engine.run(["fine"])
        results = await asyncio.gather(first, bad, good_same_batch, return_exceptions=True)
        assert results[0] == ("v1", ["WARM-UP"])
        assert isinstance(results[1], RuntimeError)
        assert results[2] == ("v1", ["FINE"])  # merged with the bad one, answered all the same
        assert await engine.run(["later"]) == ("v1", ["LATER"])
        engine.close()

    run(main())
    assert model.calls == [1, 2, 1, 1, 1]  # warm-up, the merged call, each request alone, "later"


def test_wait_ms_holds_a_lone_request_to_merge_the_next() -> None:
    model = FakeModel(delay=0.001)

    async def main() -> None:
        engine = Inference(model, workers=2, batching=True, max_batch=8, wait_ms=80)
        a = asyncio.ensure_future(engine.run(["a"]))
        await asyncio.sleep(0.01)
        b = asyncio.ensure_future(engine.run(["b"]))
        assert await asyncio.gather(a, b) == [("v1", ["A"]), ("v1", ["B"])]
        engine.close()

    run(main())
    assert model.calls == [2]


def test_without_batching_every_request_is_its_own_call() -> None:
    model = FakeModel(delay=0.005)
    observed: list[int] = []

    async def main() -> None:
        engine = Inference(model, workers=2, batching=False, observe=lambda n, s: observed.append(n))
        out = await asyncio.gather(*(engine.run([f"t{i}", "x"]) for i in range(6)))
        assert [r[1][0] for r in out] == [f"T{i}" for i in range(6)]
        engine.close()

    run(main())
    assert model.calls == [2] * 6 and observed == [2] * 6


def test_closed_engine_refuses_work() -> None:
    async def main() -> None:
        engine = Inference(FakeModel(), workers=1)
        engine.close()
        with pytest.raises(RuntimeError):
            await engine.run(["x"])

    run(main())


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"max_batch": 0}, {"wait_ms": -1}])
def test_bad_configuration_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Inference(FakeModel(), **kwargs)  # type: ignore[arg-type]


def test_a_full_queue_refuses_at_once_and_an_empty_one_admits_anything() -> None:
    from serving.model.batcher import QueueFull

    model = FakeModel(delay=0.05)

    async def main() -> None:
        engine = Inference(model, workers=1, batching=True, max_batch=4, max_queue=4)
        running = asyncio.ensure_future(engine.run(["a"]))  # taken by the worker at once
        await asyncio.sleep(0)
        queued = asyncio.ensure_future(engine.run(["b", "c", "d"]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await engine.run(["e", "f"])  # 3 queued + 2 > 4
        assert await asyncio.gather(running, queued) == [("v1", ["A"]), ("v1", ["B", "C", "D"])]
        big = await engine.run([str(i) for i in range(9)])  # bigger than max_queue, queue empty: admitted
        assert len(big[1]) == 9
        engine.close()

    run(main())


def test_abandoned_requests_leave_the_queue_and_abort_their_running_call() -> None:
    from serving.model.batcher import CancelToken

    started = threading.Event()
    tokens: list[CancelToken] = []
    calls: list[list[str]] = []

    def predict(texts: Sequence[str], cancel: CancelToken) -> tuple[str, list[str]]:
        calls.append(list(texts))
        tokens.append(cancel)
        started.set()
        for _ in range(500 if "slow" in texts else 0):  # a long call, stopped once nobody waits for it
            if cancel.cancelled:
                raise RuntimeError("aborted")
            time.sleep(0.01)
        return "v1", [t.upper() for t in texts]

    async def main() -> None:
        engine = Inference(predict, workers=1, batching=True, max_batch=2, cancellable=True)
        running = asyncio.ensure_future(engine.run(["slow"]))
        while not started.is_set():
            await asyncio.sleep(0.001)
        waiting = [asyncio.ensure_future(engine.run([f"q{i}"], timeout=0.05)) for i in range(3)]
        for w in waiting:
            with pytest.raises(TimeoutError):
                await w
        assert engine.queued_texts == 0 and engine.dropped == 3  # left the queue, never run
        running.cancel()  # the last waiter of the running call goes away: the call is aborted
        with pytest.raises(asyncio.CancelledError):
            await running
        assert await engine.run(["fresh"], timeout=30) == ("v1", ["FRESH"])
        assert engine.aborted == 1 and tokens[0].cancelled
        engine.close()

    run(main())
    assert calls == [["slow"], ["fresh"]]
