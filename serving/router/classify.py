"""Step 1's classifier consultation: call the classifier under a deadline and read its answer.

Job: `ClassifierStage.consult()` is a core step (`serving.router.core`): it yields one `Call` for
the classifier and turns the outcome into a plan (tier or cascade, with the task's capabilities)
or None, in which case the rules after the classifier rule decide. Every outcome is traced
(`ClassifierConsulted`): ok, not_configured, timeout, unavailable, bad_response, garbage,
low_confidence.

Trade-offs:
- The deadline is never exceeded: `classifier.timeout_ms` for a remote service (the HTTP client's
  own total deadline), `classifier.inprocess_timeout_ms` for an in-process backend. A bundle or
  the served model inside `tierroute serve` (anything with `predict_results`, see
  `serving.client.deadline`) goes through a `CoalescingClassifier`: concurrent decisions share
  one batched ONNX call at a time, a caller whose deadline passes leaves the queue, a call nobody
  waits for is aborted (`RunOptions.terminate`), and a text that could not be answered in time is
  refused at once ("timeout", detail "shed: ..."). Any other in-process backend runs in a worker
  thread that bounds the wait (its work cannot be stopped).
- Over HTTP only what the model reads is sent: the head and the tail of the text, cut like the
  service itself cuts a huge text (`serving.model.textprep.TruncationSpec.char_cap` characters from
  each end), so a long document costs no more bytes or tokenising than a short one.
- Confidences are printed with three digits: 0.545 against a 0.55 floor reads as such.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.client import (
    AsyncClassifierClient,
    BundleClassifier,
    CancellableBackend,
    ClassifierBackend,
    ClassifierBadResponse,
    ClassifierClient,
    ClassifierError,
    ClassifierTimeout,
    ClassifierUnavailable,
    CoalescingClassifier,
)
from serving.router.catalog import TIER_INDEX
from serving.router.core import Call, Op
from serving.router.decision import ClassifierConsulted, Step
from serving.router.policy import ClassifierSettings
from serving.router.policy_schema import DEFAULT_INPROCESS_TIMEOUT_MS
from serving.router.rules import CompiledRule

INPROCESS_THREADS = 2
"""ONNX Runtime threads of a policy's `classifier.bundle`: one batched call at a time uses both cores."""

HTTP_TEXT_CAP_CHARS = 3072
"""Characters kept from each end of a text sent to a remote classifier: `TruncationSpec().char_cap`
for the default 128-token spec, the same cut the service applies before tokenising."""


@dataclass(slots=True)
class Plan:
    """Who picks the target (step 1 of a decision), before eligibility, budget and cooldowns."""

    kind: str  # model | tier | cascade
    value: str
    decided_by: str
    reason: str
    rule_id: str | None = None
    caps: frozenset[str] = frozenset()
    classifier_latency_ms: float | None = None
    classified: Any = None
    """(model ref, result) of the classifier's answer, for the outcome log; None without one."""


def cap_text(text: str, per_end: int = HTTP_TEXT_CAP_CHARS) -> str:
    """The head and tail of `text` (what a head_tail encoder reads), joined by a space."""
    if len(text) <= 2 * per_end:
        return text
    return text[:per_end] + " " + text[-per_end:]


class ClassifierStage:
    """The router's classifier: backend, deadline, confidence floor, task -> capabilities."""

    def __init__(self, cs: ClassifierSettings | None, classifier: ClassifierBackend | str | None) -> None:
        self.min_conf = cs.min_confidence if cs else 0.5
        self.use_calibrated = cs.use_calibrated_threshold if cs else True
        self.task_caps = {k: frozenset(v) for k, v in (cs.task_capabilities.items() if cs else ())}
        self.url: str | None = None
        self.key: str | None = None
        self.backend: ClassifierBackend | None
        if isinstance(classifier, str):
            if classifier != "policy":
                raise ValueError("classifier must be a backend, None, or 'policy'")
            self.backend = self._from_policy(cs)
        else:
            self.backend = classifier
        self.direct = bool(getattr(self.backend, "enforces_timeout", False))
        remote = self.direct or self.url is not None
        if cs is None:
            self.timeout = 0.03 if remote else DEFAULT_INPROCESS_TIMEOUT_MS / 1000
        else:
            self.timeout = (cs.timeout_ms if remote else cs.inprocess_timeout_ms) / 1000
        self.pool: ThreadPoolExecutor | None = None
        self.coalescer: CoalescingClassifier | None = None
        if self.backend is not None and not self.direct:  # in process: the router bounds the wait
            if isinstance(self.backend, CancellableBackend):
                self.coalescer = CoalescingClassifier(self.backend)
            else:
                self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tierroute-classify")
        self._async: dict[int, AsyncClassifierClient] = {}

    def _from_policy(self, cs: ClassifierSettings | None) -> ClassifierBackend | None:
        if cs is None:
            return None
        key = os.environ.get(cs.api_key_env) if cs.api_key_env else None
        if cs.url is not None:
            self.url, self.key = cs.url, key
            return ClassifierClient(cs.url, timeout=cs.timeout_ms / 1000, api_key=key)
        return BundleClassifier(Path(cs.bundle or ""), threads=INPROCESS_THREADS)

    def close(self) -> None:
        if isinstance(self.backend, ClassifierClient):
            self.backend.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.coalescer is not None:
            self.coalescer.close()

    # -- the two ways to call it ---------------------------------------------------------------

    def _text(self, prompt: str) -> str:
        return cap_text(prompt) if self.direct or self.url is not None else prompt

    def call(self, prompt: str) -> Any:
        assert self.backend is not None
        texts = [self._text(prompt)]
        if self.direct:
            return self.backend.classify(texts)
        if self.coalescer is not None:
            return self.coalescer.classify(texts, timeout=self.timeout)
        assert self.pool is not None
        return self.pool.submit(self.backend.classify, texts).result(timeout=self.timeout)

    async def acall(self, prompt: str) -> Any:
        assert self.backend is not None
        texts = [self._text(prompt)]
        if self.url is not None:
            return await asyncio.wait_for(self._async_client().classify(texts), timeout=self.timeout + 0.005)
        if self.coalescer is not None:
            return await self.coalescer.aclassify(texts, timeout=self.timeout)
        return await asyncio.wait_for(asyncio.to_thread(self.backend.classify, texts), timeout=self.timeout)

    def _async_client(self) -> AsyncClassifierClient:
        """One async client per event loop (an httpx AsyncClient is bound to the loop it first ran on)."""
        loop_id = id(asyncio.get_running_loop())
        client = self._async.get(loop_id)
        if client is None:
            client = AsyncClassifierClient(self.url or "", timeout=self.timeout, api_key=self.key)
            self._async = {loop_id: client}
        return client

    # -- the core step -------------------------------------------------------------------------

    def consult(
        self, prompt: str, rule: CompiledRule, trace: list[Step], tier_cascade: dict[str, str]
    ) -> Generator[Op, Any, Plan | None]:
        """Ask the classifier; a plan, or None (traced) when the rules after `rule` must decide."""
        if self.backend is None:
            trace.append(ClassifierConsulted(rule.id, "not_configured", detail="no classifier; rules decide"))
            return None
        t0 = time.perf_counter()
        try:
            response = yield Call(self.call, self.acall, prompt)
        except (TimeoutError, ClassifierTimeout) as exc:
            detail = str(exc)
            if not detail.startswith("shed:"):
                detail = f"no answer within {self.timeout * 1e3:g} ms"
            self._failed(rule, trace, "timeout", t0, detail)
            return None
        except Exception as exc:
            self._failed(rule, trace, _failure_status(exc), t0, _short(exc))
            return None
        return self._interpret(response, rule, trace, (time.perf_counter() - t0) * 1e3, tier_cascade)

    def _failed(self, rule: CompiledRule, trace: list[Step], status: str, t0: float, detail: str) -> None:
        latency = (time.perf_counter() - t0) * 1e3
        trace.append(
            ClassifierConsulted(
                rule.id, status, latency_ms=round(latency, 3), detail=f"{detail}; rules decide"
            )
        )

    def _problem(self, result: Any) -> tuple[str, str]:
        """("ok", "") or (status, why the answer cannot be used)."""
        conf = result.confidence
        probs_sum = sum(result.tier_probs.values()) if result.tier_probs else 1.0
        if result.tier not in TIER_INDEX:
            return "garbage", f"unknown tier {result.tier!r}"
        if not math.isfinite(conf) or not math.isfinite(probs_sum) or abs(probs_sum - 1.0) > 0.05:
            return "garbage", f"tier probabilities do not sum to 1 ({probs_sum:.3g})"
        if conf < self.min_conf:
            return "low_confidence", f"confidence {conf:.4g} below {self.min_conf:g}"
        return "ok", ""

    def _interpret(
        self,
        response: Any,
        rule: CompiledRule,
        trace: list[Step],
        latency: float,
        tier_cascade: dict[str, str],
    ) -> Plan | None:
        latency = round(latency, 3)
        result = response.results[0]
        tier, task, conf = result.tier, result.task, result.confidence
        status, detail = self._problem(result)
        if status != "ok":
            trace.append(
                ClassifierConsulted(
                    rule.id, status, str(tier), task, conf, latency, result.tokens, f"{detail}; rules decide"
                )
            )
            return None
        reason = f"classifier: {tier} ({conf:.3f})"
        routing = response.model.routing if self.use_calibrated else None
        calibrated = routing.apply(result) if routing is not None else None
        if calibrated is not None:
            chosen, detail = calibrated
            reason = f"classifier: {tier} ({conf:.3f}), {detail}"
            trace.append(ClassifierConsulted(rule.id, "ok", tier, task, conf, latency, result.tokens, detail))
            tier = chosen
        else:
            trace.append(ClassifierConsulted(rule.id, "ok", tier, task, conf, latency, result.tokens))
        caps = self.task_caps.get(task or "", frozenset()) | rule.require
        cascade = tier_cascade.get(tier)
        classified = (response.model, result)
        if cascade is not None:
            return Plan("cascade", cascade, "classifier", reason, rule.id, caps, latency, classified)
        return Plan("tier", tier, "classifier", reason, rule.id, caps, latency, classified)


def _failure_status(exc: Exception) -> str:
    if isinstance(exc, ClassifierTimeout):
        return "timeout"
    if isinstance(exc, ClassifierBadResponse):
        return "bad_response"
    if isinstance(exc, ClassifierUnavailable | ClassifierError):
        return "unavailable"
    return "unavailable"


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
