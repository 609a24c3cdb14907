"""The router's in-process classification path (`serving.client.deadline.CoalescingClassifier`):
concurrent calls are coalesced into batched calls, a deadline really stops the work, and a
cancelled or shed call leaves the next one unharmed. Fake backends where the point is control
over when a call runs; real bundles (ONNX Runtime) for parity and for `RunOptions.terminate`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from serving.client import (
    BundleClassifier,
    CancellableBackend,
    ClassifierTimeout,
    ClassifierUnavailable,
    CoalescingClassifier,
)
from serving.model.batcher import CancelToken
from serving.router import Router, RouteRequest
from serving.router.decision import ClassifierConsulted
from serving.router.policy import Policy
from serving.schemas import ClassifyResponse, ClassifyResult, ModelRef

MakePolicy = Callable[..., Policy]
REF = ModelRef(name="fake")


def _result(text: str) -> ClassifyResult:
    """A valid, confident result that depends on the text (so a mix-up between callers shows)."""
    tier = ("simple", "complex", "reasoning")[len(text) % 3]
    probs = {t: (0.9 if t == tier else 0.05) for t in ("simple", "complex", "reasoning")}
    return ClassifyResult(
        tier=tier,
        tier_probs=probs,
        task="chat",
        task_probs={"chat": 1.0},
        complexity=0.5,
        confidence=0.9,
        tokens=len(text),
        truncated=False,
    )


class GatedBackend:
    """Counts calls; a call blocks while `gate` is clear (bounded), and stops early when cancelled."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.calls: list[list[str]] = []
        self.tokens: list[CancelToken | None] = []
        self.cancelled = threading.Event()

    def predict_results(
        self, texts: Sequence[str], cancel: CancelToken | None = None
    ) -> tuple[ModelRef, list[ClassifyResult]]:
        self.calls.append(list(texts))
        self.tokens.append(cancel)
        if cancel is not None:
            cancel.on_cancel(self.cancelled.set)
        self.started.set()
        for _ in range(3000):  # at most ~30 s, never forever
            if self.gate.is_set():
                break
            if cancel is not None and cancel.cancelled:
                raise ClassifierUnavailable("cancelled: nobody waits for this call")
            time.sleep(0.01)
        return REF, [_result(t) for t in texts]

    def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        model, results = self.predict_results(texts)
        return ClassifyResponse(model=model, results=results)


def _wait_until(cond: Callable[[], bool], steps: int = 3000) -> None:
    for _ in range(steps):
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def test_concurrent_calls_are_coalesced_into_one_batched_call() -> None:
    backend = GatedBackend()
    assert isinstance(backend, CancellableBackend)
    cc = CoalescingClassifier(backend, workers=1, max_batch=16)
    backend.gate.clear()
    texts = [f"text number {i}" + "x" * i for i in range(8)]
    out: dict[int, Any] = {}

    def caller(i: int) -> None:
        out[i] = cc.classify([texts[i]], timeout=60)

    first = threading.Thread(target=caller, args=(0,))
    first.start()
    assert backend.started.wait(30)  # the first call occupies the only worker ...
    rest = [threading.Thread(target=caller, args=(i,)) for i in range(1, 8)]
    for t in rest:
        t.start()
    _wait_until(lambda: cc.inference.queued_texts == 7)  # ... while the other seven queue
    backend.gate.set()
    for t in [first, *rest]:
        t.join(timeout=60)
    assert backend.calls == [[texts[0]], texts[1:]]  # 2 calls for 8 requests
    assert cc.stats()["calls"] == 2
    for i, text in enumerate(texts):  # each caller got its own text's result
        assert out[i].results == [_result(text)] and out[i].model == REF
    cc.close()


def test_an_overdue_call_is_cancelled_and_the_next_call_is_answered() -> None:
    backend = GatedBackend()
    cc = CoalescingClassifier(backend, workers=1, shed=False)
    backend.gate.clear()
    with pytest.raises(ClassifierTimeout):
        cc.classify(["stuck"], timeout=0.05)
    assert backend.cancelled.wait(30)  # nobody waits for the running call: its token fired
    token = backend.tokens[0]
    assert token is not None and token.cancelled
    _wait_until(lambda: cc.inference._free == 1)  # the worker is free again (the call stopped early)
    backend.gate.set()
    fresh = cc.classify(["fresh"], timeout=60)
    assert fresh.results == [_result("fresh")]
    assert backend.calls == [["stuck"], ["fresh"]] and not backend.tokens[1].cancelled  # type: ignore[union-attr]
    assert cc.stats()["timeouts"] == 1
    cc.close()


def test_queued_callers_past_their_deadline_are_never_run() -> None:
    backend = GatedBackend()
    cc = CoalescingClassifier(backend, workers=1, shed=False)
    backend.gate.clear()
    holder = threading.Thread(target=lambda: cc.classify(["holder"], timeout=60))
    holder.start()
    assert backend.started.wait(30)
    for i in range(3):
        with pytest.raises(ClassifierTimeout):
            cc.classify([f"late {i}"], timeout=0.02)
    assert cc.inference.queued_texts == 0 and cc.inference.dropped == 3
    backend.gate.set()
    holder.join(timeout=60)
    assert backend.calls == [["holder"]]  # the three late texts were dropped, not computed
    cc.close()


def test_work_that_cannot_finish_in_time_is_shed_at_once() -> None:
    backend = GatedBackend()
    cc = CoalescingClassifier(backend, workers=1)
    cc.cost.per_text = 1000.0  # the observed cost says: 1000 s a text
    backend.gate.clear()
    holder = threading.Thread(target=lambda: cc.classify(["ahead"], timeout=None))
    holder.start()  # a text with nothing ahead of it is always tried, whatever the estimate
    assert backend.started.wait(30)
    with pytest.raises(ClassifierTimeout, match=r"^shed: "):
        cc.classify(["too slow"], timeout=30)  # behind it: ~2000 s expected, over the 30 s left
    assert backend.calls == [["ahead"]] and cc.stats()["shed"] == 1
    backend.gate.set()
    holder.join(timeout=60)
    assert backend.calls == [["ahead"]]  # the shed text was never computed
    assert cc.cost.per_text < 1000.0  # the observed call pulled the estimate down
    assert cc.classify(["now fine"], timeout=30).results == [_result("now fine")]
    cc.close()


def test_async_callers_are_coalesced_and_bounded_too() -> None:
    backend = GatedBackend()
    cc = CoalescingClassifier(backend, workers=1, shed=False)

    async def main() -> None:
        backend.gate.clear()
        first = asyncio.ensure_future(cc.aclassify(["a0"], timeout=60))
        for _ in range(3000):
            if backend.started.is_set():
                break
            await asyncio.sleep(0.01)
        others = [asyncio.ensure_future(cc.aclassify([f"a{i}"], timeout=60)) for i in (1, 2, 3)]
        for _ in range(3000):
            if cc.inference.queued_texts == 3:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(ClassifierTimeout):
            await cc.aclassify(["late"], timeout=0.02)
        backend.gate.set()
        got = await asyncio.gather(first, *others)
        assert [r.results[0] for r in got] == [_result(f"a{i}") for i in range(4)]

    asyncio.run(main())
    assert backend.calls == [["a0"], ["a1", "a2", "a3"]]
    cc.close()


def _classifier_step(d: Any) -> ClassifierConsulted:
    return next(s for s in d.trace if isinstance(s, ClassifierConsulted))


def test_router_falls_back_to_rules_when_the_in_process_deadline_passes(make_policy: MakePolicy) -> None:
    backend = GatedBackend()
    policy = make_policy(lambda d: d["classifier"].update(inprocess_timeout_ms=50, timeout_ms=5000))
    router = Router(policy, classifier=backend)
    stage = router._cls
    assert stage.coalescer is not None and stage.timeout == 0.05  # in process: inprocess_timeout_ms
    backend.gate.clear()
    late = router.decide(RouteRequest.from_text("Prove that there are infinitely many primes."))
    step = _classifier_step(late)
    assert (step.status, late.decided_by) == ("timeout", "default")
    assert step.detail == "no answer within 50 ms; rules decide"
    assert backend.cancelled.wait(30)
    backend.gate.set()
    _wait_until(lambda: stage.coalescer is not None and stage.coalescer.inference._free == 1)
    stage.timeout = 60.0  # a loaded box: the next answer must not miss its deadline by chance
    ok = router.decide(RouteRequest.from_text("Prove that there are infinitely many primes."))
    assert _classifier_step(ok).status == "ok" and ok.decided_by in {"classifier", "capability"}
    backend.gate.clear()
    backend.started.clear()
    holder = threading.Thread(
        target=lambda: stage.coalescer and stage.coalescer.classify(["ahead"], timeout=60)
    )
    holder.start()
    assert backend.started.wait(30)
    stage.coalescer.cost.per_text = 1000.0
    shed = router.decide(RouteRequest.from_text("Prove that there are infinitely many primes."))
    assert _classifier_step(shed).status == "timeout" and _classifier_step(shed).detail.startswith("shed: ")
    backend.gate.set()
    holder.join(timeout=60)
    assert len(backend.calls) == 3  # the shed decision never reached the backend
    router.close()


# --- real bundles: ONNX Runtime ----------------------------------------------------------------


class _FirstCallWaits:
    """A real backend whose first call waits for `go`, so later callers queue and get coalesced."""

    def __init__(self, inner: BundleClassifier) -> None:
        self.inner = inner
        self.go = threading.Event()
        self.started = threading.Event()
        self.sizes: list[int] = []

    def predict_results(
        self, texts: Sequence[str], cancel: CancelToken | None = None
    ) -> tuple[ModelRef, list[ClassifyResult]]:
        self.sizes.append(len(texts))
        if len(self.sizes) == 1:
            self.started.set()
            assert self.go.wait(60)
        return self.inner.predict_results(texts, cancel)


PARITY_TEXTS = [
    "What is the capital of France?",
    "Prove that there are infinitely many primes, step by step.",
    "Refactor this service so it handles retries and backpressure. " * 30,
    "hi",
    "Summarise this article about tea and its history in three bullets.",
    "Write a Python function that parses ISO dates. " * 60,
]


@pytest.mark.slow
def test_coalesced_results_equal_unbatched_classification(serving_bundle: Path) -> None:
    plain = BundleClassifier(serving_bundle, threads=1)
    expected = [plain.classify([t]).results[0] for t in PARITY_TEXTS]
    gated = _FirstCallWaits(BundleClassifier(serving_bundle, threads=2))
    cc = CoalescingClassifier(gated, workers=1, max_batch=16)
    got: dict[int, ClassifyResult] = {}

    def caller(i: int) -> None:
        got[i] = cc.classify([PARITY_TEXTS[i]], timeout=120).results[0]

    threads = [threading.Thread(target=caller, args=(0,))]
    threads[0].start()
    assert gated.started.wait(60)
    threads += [threading.Thread(target=caller, args=(i,)) for i in range(1, len(PARITY_TEXTS))]
    for t in threads[1:]:
        t.start()
    _wait_until(lambda: cc.inference.queued_texts == len(PARITY_TEXTS) - 1)
    gated.go.set()
    for t in threads:
        t.join(timeout=120)
    assert gated.sizes == [1, len(PARITY_TEXTS) - 1]  # one batched call for the five that queued
    for i, want in enumerate(expected):
        have = got[i]
        assert (have.tier, have.task, have.tokens) == (want.tier, want.task, want.tokens)
        assert have.truncated == want.truncated
        for probs, ref in ((have.tier_probs, want.tier_probs), (have.task_probs, want.task_probs)):
            assert probs is not None and ref is not None and probs.keys() == ref.keys()
            assert max(abs(probs[k] - ref[k]) for k in ref) < 1e-6
        assert abs(have.confidence - want.confidence) < 1e-6
    cc.close()


class _SignalsWhenRunning(CancelToken):
    """A token that says when `run_session` registered its terminate hook (ONNX Runtime is about to run)."""

    def __init__(self) -> None:
        super().__init__()
        self.registered = threading.Event()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        super().on_cancel(hook)
        self.registered.set()


@pytest.mark.slow
def test_run_options_terminate_stops_a_real_onnx_call_and_the_next_is_clean(serving_bundle: Path) -> None:
    cls = BundleClassifier(serving_bundle, threads=1)
    long = "Explain the trade-offs of this distributed cache design in detail. " * 80
    texts = [f"{i} {long}" for i in range(96)]
    token = _SignalsWhenRunning()
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            cls.predict_results(texts, token)
            outcome.append(None)
        except BaseException as exc:  # recorded for the assertion
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert token.registered.wait(60)
    token.cancel()  # sets RunOptions.terminate on the running call
    worker.join(timeout=120)
    assert len(outcome) == 1 and isinstance(outcome[0], ClassifierUnavailable), outcome
    assert "cancelled" in str(outcome[0])
    fresh = cls.classify(texts[:2]).results  # the session is not poisoned by the terminated run
    again = BundleClassifier(serving_bundle, threads=1).classify(texts[:2]).results
    assert [(r.tier, r.task) for r in fresh] == [(r.tier, r.task) for r in again]
    assert max(abs(a.confidence - b.confidence) for a, b in zip(fresh, again, strict=True)) < 1e-6


@pytest.mark.slow
def test_router_bench_times_before_and_after_with_the_fallback_share(serving_bundle: Path) -> None:
    from serving.router.bench import format_classifier_table, run_classifier_bench

    policy = Path(__file__).resolve().parents[3] / "serving" / "policies" / "default.yaml"
    results = run_classifier_bench(
        policy, serving_bundle, n=10, threads=3, deadline_ms=60_000, variants=("before", "after"), min_s=0
    )
    assert len(results) == 8  # 2 variants x 2 lengths x (idle, loaded)
    for key, row in results.items():
        assert row["n"] >= 10 and 0.0 <= row["fallback"] <= 1.0
        assert row["timeouts"] == 0.0  # a one-minute deadline: nothing times out
        assert ("texts_per_call" in row) == key.startswith("after")
    loaded = results["after (60000 ms): 64 tokens, 3 concurrent"]
    assert loaded["shed"] == 0.0 and loaded["texts_per_call"] >= 1.0
    assert "classified/s" in format_classifier_table(results)
