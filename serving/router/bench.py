"""Benchmark of the routing decision itself: how much time `decide()` adds to a request.

Job: time `Router.decide()` in-process on the policy's own rules, in five situations:
- rules-only: a request the first rule decides (no classifier call);
- the same with the LiteLLM executor built, so decisions also consult LiteLLM's cooldowns;
- classifier answered: the classifier rule fires and an in-process stub answers instantly, so
  decide time minus the classifier call = the decision overhead around the classifier;
- classifier refused: the classify URL points at a closed port (connection refused);
- classifier blackholed: a socket that accepts and never answers, so the timeout fires.
Budget ledger and spend are live (a temp SQLite file); no LLM is called.

Trade-off: timings include Python's `perf_counter_ns` and GC noise on a shared 2-core machine;
p99 over 20k iterations is stable to ~20% run to run. Numbers are printed, never asserted.
"""

from __future__ import annotations

import itertools
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from serving.client import ClassifierClient
from serving.router.decision import ClassifierConsulted
from serving.router.engine import Router
from serving.router.policy import Policy, load_policy
from serving.router.request import RouteRequest
from serving.schemas import ClassifyResponse, ClassifyResult, ModelRef


class StubClassifier:
    """Answers instantly with a fixed confident result (measures everything but the call)."""

    enforces_timeout = True

    def __init__(self, tier: str = "simple", task: str = "factual_qa", confidence: float = 0.93) -> None:
        result = ClassifyResult(
            tier=tier,
            tier_probs={"simple": 0.93, "complex": 0.05, "reasoning": 0.02},
            task=task,
            task_probs={task: 1.0},
            complexity=0.05,
            confidence=confidence,
            tokens=12,
            truncated=False,
        )
        self._response = ClassifyResponse(model=ModelRef(name="stub"), results=[result])

    def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        return self._response


class Blackhole:
    """A TCP socket that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = int(self.sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self._conns.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        for c in self._conns:
            c.close()
        self.sock.close()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentiles(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    n = len(ordered)
    return {
        "n": n,
        "p50_us": ordered[n // 2],
        "p99_us": ordered[min(n - 1, int(n * 0.99))],
        "mean_us": statistics.fmean(ordered),
    }


def _time(
    fn: Callable[[], Any], n: int, warmup: int = 200, keep: Callable[[Any], float] | None = None
) -> tuple[list[float], list[float]]:
    """Per-call microseconds; `keep` extracts one number per result (results are not kept alive:
    holding thousands of decisions would make the GC, not the router, dominate the tail)."""
    for _ in range(min(warmup, n)):
        fn()
    samples: list[float] = []
    kept: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        out = fn()
        samples.append((clock() - t0) / 1000)
        if keep is not None:
            kept.append(keep(out))
    return samples, kept


def _classifier_ms(d: Any) -> float:
    return float(d.classifier_latency_ms or 0.0)


def _by_classifier(d: Any) -> float:
    return 1.0 if d.decided_by == "classifier" else 0.0


def _find_request(router: Router, want: str, candidates: list[RouteRequest]) -> RouteRequest:
    """A request whose decision comes from `want` ('rule' or 'classifier')."""
    for req in candidates:
        d = router.decide(req)
        if (want == "rule" and d.decided_by == "rule") or (
            want == "classifier" and d.decided_by == "classifier"
        ):
            return req
    raise RuntimeError(f"none of the benchmark requests is decided by {want} under this policy")


CANDIDATES = [
    RouteRequest.from_text(
        "Quarterly report text ...", system="Summarise the following document in 3 bullets."
    ),
    RouteRequest.from_text("Run this script", metadata={"requires_code_execution": True}),
    RouteRequest.from_text("where is my order?", use_case="faq"),
    RouteRequest.from_text("What is the capital of France?"),
    RouteRequest.from_text("Hello, can you help me with something?"),
]


def run_bench(policy_path: str | Path, n: int = 20000, n_slow: int = 200) -> dict[str, dict[str, float]]:
    policy: Policy = load_policy(policy_path)
    tmp = Path(tempfile.mkdtemp(prefix="tierroute-bench-"))
    results: dict[str, dict[str, float]] = {}
    timeout_ms = policy.classifier.timeout_ms if policy.classifier else 30.0

    rules_router = Router(policy, classifier=StubClassifier(), ledger=tmp / "ledger.sqlite")
    rules_req = _find_request(rules_router, "rule", CANDIDATES)
    samples, _ = _time(lambda: rules_router.decide(rules_req), n)
    results["rules-only"] = _percentiles(samples)

    rules_router.warm()  # builds LiteLLM's Router: decisions now also read its cooldown state
    samples, _ = _time(lambda: rules_router.decide(rules_req), n)
    results["rules-only + LiteLLM cooldown view"] = _percentiles(samples)

    if policy.classifier is not None:
        cls_req = _find_request(rules_router, "classifier", CANDIDATES)
        samples, call_ms = _time(lambda: rules_router.decide(cls_req), n, keep=_classifier_ms)
        overhead = [s - ms * 1000 for s, ms in zip(samples, call_ms, strict=True)]
        results["classifier answered (overhead without the call)"] = _percentiles(overhead)

        refused = ClassifierClient(f"http://127.0.0.1:{_closed_port()}", timeout=timeout_ms / 1000)
        refused_router = Router(policy, classifier=refused, ledger=tmp / "ledger.sqlite")
        samples, by_cls = _time(
            lambda: refused_router.decide(cls_req), max(n_slow * 5, 1000), 20, _by_classifier
        )
        assert not any(by_cls)
        results["classifier refused (total)"] = _percentiles(samples)

        hole = Blackhole()
        try:
            client = ClassifierClient(f"http://127.0.0.1:{hole.port}", timeout=timeout_ms / 1000)
            hole_router = Router(policy, classifier=client, ledger=tmp / "ledger.sqlite")
            samples, by_cls = _time(lambda: hole_router.decide(cls_req), n_slow, 5, _by_classifier)
            assert not any(by_cls)
            results[f"classifier blackholed (total; timeout {timeout_ms:g} ms)"] = _percentiles(samples)
        finally:
            hole.close()
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    width = max(len(k) for k in results) + 2
    lines = [f"{'scenario':<{width}}{'n':>7}{'p50 us':>11}{'p99 us':>11}{'mean us':>11}"]
    for name, r in results.items():
        lines.append(
            f"{name:<{width}}{r['n']:>7.0f}{r['p50_us']:>11.1f}{r['p99_us']:>11.1f}{r['mean_us']:>11.1f}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# in-process classification: decision latency with a real bundle, idle and under load

LOAD_THREADS = 8
SENTENCE = (
    "Our team reviewed the quarterly numbers for the northern region and found that shipping "
    "delays grew while support tickets about billing fell after the new invoice template. "
)


def text_of_tokens(tokens: int) -> str:
    """A prompt of about `tokens` tokens (the router's estimate: 4 characters a token)."""
    reps = max(1, tokens * 4 // len(SENTENCE) + 1)
    return (SENTENCE * reps)[: tokens * 4] + " What should we fix first?"


class _Opaque:
    """Hides a backend's `predict_results`: the router then takes main's pre-batching path (a pool of
    worker threads, one text per ONNX call, the wait bounded but the work never stopped)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        return cast(ClassifyResponse, self.inner.classify(texts))


VARIANTS = ("before-nodeadline", "before", "after", "after-noshed")
"""before: main's in-process path (thread pool, bundle on 1 ONNX Runtime thread); after: the
coalescing path (`serving.client.deadline`, bundle on 2 threads, one batched call at a time);
-nodeadline: the deadline lifted to 10 s (the raw tail); -noshed: coalescing without shedding."""


def _decide_samples(
    router: Router, req: RouteRequest, n: int, load: int, min_s: float = 0.0, think_s: float = 0.0
) -> tuple[list[float], list[str], float]:
    """Microseconds and classifier status of `n` decisions, and the seconds they took: one after
    another (`load` 0), or by `load` threads deciding back to back (a closed loop of `load`
    concurrent decisions) until `n` are done and at least `min_s` seconds have passed; each load
    thread sleeps `think_s` after a decision (the rest of its request: the LLM call)."""
    lock = threading.Lock()
    samples: list[float] = []
    statuses: list[str] = []

    def one() -> None:
        t0 = time.perf_counter_ns()
        d = router.decide(req)
        us = (time.perf_counter_ns() - t0) / 1000
        status = next((s.status for s in d.trace if isinstance(s, ClassifierConsulted)), "none")
        with lock:
            samples.append(us)
            statuses.append(status)

    start = time.perf_counter()
    if load == 0:
        for _ in range(n):
            one()
        return samples, statuses, time.perf_counter() - start
    done = itertools.count()

    def worker() -> None:
        while next(done) < n or time.perf_counter() - start < min_s:
            one()
            if think_s:
                time.sleep(think_s)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(load)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=600)
    return samples, statuses, time.perf_counter() - start


def run_classifier_bench(
    policy_path: str | Path,
    bundle: str | Path,
    n: int = 200,
    threads: int = LOAD_THREADS,
    deadline_ms: float | None = None,
    variants: Sequence[str] = VARIANTS,
    rounds: int = 1,
    min_s: float = 3.0,
    think_ms: float = 0.0,
) -> dict[str, dict[str, float]]:
    """`decide()` p50/p99 and the share of decisions that fell back to the rules, with the bundle in
    process, at 64 and ~900 tokens, idle (one decision at a time) and under `threads` concurrent
    decisions, for each of `variants` (see `VARIANTS`), alternated `rounds` times in one run. The
    in-process deadline is the policy's `inprocess_timeout_ms` unless `deadline_ms` is given;
    "before-nodeadline" lifts it to 10 s, so that row is main's raw tail (every decision waits).
    Under load each scenario runs for at least `min_s` seconds, and `ok_per_s` counts the decisions
    per second the classifier answered in time: with fast fallbacks a closed loop makes more
    decisions, so the fallback share alone would overstate the loss; this is the capacity measure.
    `think_ms`: each load thread pauses that long after a decision (0: decide back to back, where
    shed decisions come back at once and their own CPU competes with the classifier).
    Times in microseconds; rows of later rounds are pooled into the same keys."""
    from serving.client import BundleClassifier

    policy = load_policy(policy_path)
    if policy.classifier is None:
        raise ValueError("the policy has no classifier section")
    deadline = deadline_ms if deadline_ms is not None else policy.classifier.inprocess_timeout_ms
    one_thread, two_threads = BundleClassifier(bundle, threads=1), BundleClassifier(bundle, threads=2)
    tmp = Path(tempfile.mkdtemp(prefix="tierroute-bench-"))
    pooled: dict[str, tuple[list[float], list[str], dict[str, int]]] = {}
    for _ in range(rounds):
        for variant in variants:
            if variant not in VARIANTS:
                raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
            before = variant.startswith("before")
            ms = 10_000.0 if variant == "before-nodeadline" else deadline
            p = policy.model_copy(
                update={"classifier": policy.classifier.model_copy(update={"inprocess_timeout_ms": ms})}
            )
            backend: Any = _Opaque(one_thread) if before else two_threads
            router = Router(p, classifier=backend, ledger=tmp / "ledger.sqlite")
            coalescer = router._cls.coalescer
            if coalescer is not None and variant == "after-noshed":
                coalescer.shed_enabled = False
            try:
                for load in (0, threads):
                    for tokens in (64, 900):
                        req = RouteRequest.from_text(text_of_tokens(tokens))
                        if router.decide(req).decided_by == "rule":
                            raise RuntimeError(f"a rule decides the {tokens}-token text; pick another policy")
                        for _ in range(10):  # warm-up, not counted
                            router.decide(req)
                        calls0 = coalescer.stats() if coalescer is not None else None
                        samples, statuses, secs = _decide_samples(router, req, n, load, min_s, think_ms / 1e3)
                        where = "idle" if load == 0 else f"{load} concurrent"
                        key = f"{variant} ({ms:g} ms): {tokens} tokens, {where}"
                        row = pooled.setdefault(key, ([], [], {"calls": 0, "shed": 0, "us": 0}))
                        row[0].extend(samples)
                        row[1].extend(statuses)
                        row[2]["us"] += round(secs * 1e6)
                        if coalescer is not None and calls0 is not None:
                            after = coalescer.stats()
                            row[2]["calls"] += after["calls"] - calls0["calls"]
                            row[2]["shed"] += after["shed"] - calls0["shed"]
            finally:
                router.close()
    results: dict[str, dict[str, float]] = {}
    for key, (samples, statuses, counts) in pooled.items():
        r = _percentiles(samples)
        r["fallback"] = sum(s != "ok" for s in statuses) / len(statuses)
        r["timeouts"] = sum(s == "timeout" for s in statuses) / len(statuses)
        r["ok_per_s"] = sum(s == "ok" for s in statuses) / (counts["us"] / 1e6)
        if counts["calls"]:
            r["texts_per_call"] = (len(statuses) - counts["shed"]) / counts["calls"]
            r["shed"] = counts["shed"] / len(statuses)
        results[key] = r
    return results


def format_classifier_table(results: dict[str, dict[str, float]]) -> str:
    """p50/p99 ms, the share of decisions the rules made because the classifier did not answer in time
    (or at all), the share shed at once, and texts per ONNX call (coalescing), one row per scenario."""
    width = max(len(k) for k in results) + 2
    head = f"{'scenario':<{width}}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}"
    lines = [f"{head}{'fallback':>10}{'shed':>7}{'texts/call':>12}{'classified/s':>14}"]
    for name, r in results.items():
        shed = f"{r['shed']:>7.0%}" if "shed" in r else f"{'-':>7}"
        per_call = f"{r['texts_per_call']:>12.2f}" if "texts_per_call" in r else f"{'-':>12}"
        lines.append(
            f"{name:<{width}}{r['n']:>6.0f}{r['p50_us'] / 1e3:>9.2f}{r['p99_us'] / 1e3:>9.2f}"
            f"{r['fallback']:>10.0%}{shed}{per_call}{r['ok_per_s']:>14.1f}"
        )
    return "\n".join(lines)
