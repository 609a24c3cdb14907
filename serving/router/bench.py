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

import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from serving.client import ClassifierClient
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


class _Load:
    """`threads` threads classifying long texts back to back: a busy service's CPU contention."""

    def __init__(self, classify: Callable[[list[str]], Any], threads: int, text: str) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(classify, text), daemon=True) for _ in range(threads)
        ]

    def _loop(self, classify: Callable[[list[str]], Any], text: str) -> None:
        while not self._stop.is_set():
            classify([text])

    def __enter__(self) -> _Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def run_classifier_bench(
    policy_path: str | Path, bundle: str | Path, n: int = 200, threads: int = LOAD_THREADS
) -> dict[str, dict[str, float]]:
    """`decide()` p50/p99 with the bundle in process (64 and ~900 tokens, idle and under a load of
    `threads` threads), next to the baseline: the bare `BundleClassifier.classify` call of the same
    text in the same conditions. Times in microseconds; the router's deadline is lifted (10 s) so
    every decision waits for its answer and the tail is measured, not cut."""
    from serving.client import BundleClassifier

    policy = load_policy(policy_path)
    if policy.classifier is None:
        raise ValueError("the policy has no classifier section")
    policy = policy.model_copy(
        update={"classifier": policy.classifier.model_copy(update={"timeout_ms": 10_000.0})}
    )
    cls = BundleClassifier(bundle)
    tmp = Path(tempfile.mkdtemp(prefix="tierroute-bench-"))
    router = Router(policy, classifier=cls, ledger=tmp / "ledger.sqlite")
    results: dict[str, dict[str, float]] = {}
    try:
        for load in (0, threads):
            for tokens in (64, 900):
                text = text_of_tokens(tokens)
                req = RouteRequest.from_text(text)
                if router.decide(req).decided_by == "rule":
                    raise RuntimeError(f"a rule decides the {tokens}-token bench text; pick another policy")
                where = "idle" if load == 0 else f"{load} threads busy"
                with _Load(cls.classify, load, text_of_tokens(900)) if load else _nothing():
                    base, _ = _time(lambda t=text: cls.classify([t]), n, warmup=20)  # type: ignore[misc]
                    dec, _ = _time(lambda r=req: router.decide(r), n, warmup=20)  # type: ignore[misc]
                b, d = _percentiles(base), _percentiles(dec)
                d["ratio_p50"], d["ratio_p99"] = d["p50_us"] / b["p50_us"], d["p99_us"] / b["p99_us"]
                results[f"{tokens} tokens, {where}: classify() alone (baseline)"] = b
                results[f"{tokens} tokens, {where}: decide() in process"] = d
    finally:
        router.close()
    return results


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def format_classifier_table(results: dict[str, dict[str, float]]) -> str:
    width = max(len(k) for k in results) + 2
    lines = [f"{'scenario':<{width}}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'x base p50':>12}{'x base p99':>12}"]
    for name, r in results.items():
        ratio = f"{r['ratio_p50']:>12.2f}{r['ratio_p99']:>12.2f}" if "ratio_p50" in r else ""
        lines.append(
            f"{name:<{width}}{r['n']:>6.0f}{r['p50_us'] / 1e3:>9.2f}{r['p99_us'] / 1e3:>9.2f}{ratio}"
        )
    worst = max(r["p99_us"] for k, r in results.items() if "decide()" in k) / 1e3
    lines.append(f"worst decide() p99: {worst:.1f} ms")
    return "\n".join(lines)
