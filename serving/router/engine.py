"""The router: `decide()` a model for a request, and `complete()` it through LiteLLM.

Job: combine the policy's dimensions in a fixed order and record each one's say in the trace:
1. who picks the target: an explicit route, else the first matching rule; a rule may hand the
   choice to the classifier (tier + task), and if the classifier times out, fails, answers
   garbage or is unsure, the rules after it decide (then the default);
2. what the request needs: capabilities (rule `require`, task -> capability, image -> vision),
   context length, SLA latency ceiling, critical-only models; an ineligible target is replaced by
   the cheapest eligible model of its tier, then a stronger tier, then a weaker one;
3. budget: past `downgrade_at` non-critical requests drop one tier; past 100% only critical ones
   pass (others: a clear error, or the cheapest model, per policy);
4. availability: when LiteLLM has every deployment of the chosen group cooling down, the first
   fallback that is not takes over (LiteLLM's cooldown store, read through a 250 ms cache that
   our own calls invalidate);
5. cascades: stage 1 unless the fallback-rate alarm says skip to stage 2.
`complete()` / `acomplete()` then call LiteLLM's Router, run the cascade's gate, record spend in
the ledger and attach the decision to the response.

Layout: the steps live by job in `planning` (1-4: rules, classifier, eligibility, budget,
cooldown, cascade plan), `classify` (the classifier call), `catalog` (eligibility and budget),
`running` (execution, gate, ledger); each is written once as a generator and run by the sync or
the async driver of `core`, so `decide`/`adecide` and `complete`/`acomplete` share one path.

Trade-offs: `decide()` is pure (reads the ledger cache and LiteLLM's cooldowns, writes nothing
but the probe counter of an alarmed cascade)
and precomputes everything it can at construction (compiled rules, per-tier candidate orders,
prices), so rules-only decisions take microseconds. With a classifier the decision waits for it
up to `classifier.timeout_ms` (remote) or `classifier.inprocess_timeout_ms` (a bundle, the served
model), never longer: the HTTP client's timeout bounds a remote service, a batching, cancelling
queue bounds an in-process one (`serving.client.deadline`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from serving.client import ClassifierBackend
from serving.router.budget import BudgetLedger
from serving.router.cascade import FallbackTracker, HttpLearnedGate, LearnedGateFn
from serving.router.catalog import Catalog
from serving.router.classify import ClassifierStage
from serving.router.core import adrive, drive
from serving.router.decision import Decision, Executed, InvalidRequest
from serving.router.metrics import RouterMetrics
from serving.router.planning import Planner
from serving.router.policy import AUTO_ROUTE, Policy, load_policy
from serving.router.request import TRANSPORT_FIELDS, RouteRequest
from serving.router.running import DECISION_KEY, Runner

__all__ = ["DECISION_KEY", "Router", "Streamed", "answered_by", "decision_of"]


class Router:
    """Policy-driven router. `decide()` is pure and fast; `complete()` executes via LiteLLM."""

    def __init__(
        self,
        policy: Policy | str | Path,
        *,
        classifier: ClassifierBackend | str | None = "policy",
        ledger: BudgetLedger | str | Path | None = None,
        learned_gate: LearnedGateFn | None = None,
        litellm_router: Any | None = None,
        log_texts: bool | None = None,
        registry: CollectorRegistry | None = None,
        outcome_log: Any | None = None,
    ) -> None:
        """`log_texts`: allow request text in logs (LiteLLM's debug output); None reads the service's
        opt-in, `TIERROUTE_LOG_TEXTS`. Off, no log level shows message content. `registry`: the
        Prometheus registry the router's series go to (the one the service's /metrics renders);
        None = prometheus_client's default registry. `outcome_log`: a `serving.prediction_log.
        PredictionLog` that gets one record per executed request (classifier outputs, cascade gate
        verdict, final model; text under its own opt-in), for `tierroute data from-log`."""
        self._log_texts = log_texts
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        p = self.policy
        self.metrics = RouterMetrics.for_registry(registry)
        self.tracker = FallbackTracker(p.cascades, self.metrics)
        self.ledger: BudgetLedger | None = None
        if p.budget is not None:
            self.ledger = (
                ledger
                if isinstance(ledger, BudgetLedger)
                else BudgetLedger(ledger or p.budget.ledger, refresh_seconds=p.budget.refresh_seconds)
            )
        self._cls = ClassifierStage(p.classifier, classifier)
        self._planner = Planner(p, Catalog(p), self._cls, self.tracker, self.ledger)
        self._runner = Runner(
            p, self.tracker, self.ledger, _learned_gates(p, learned_gate), self.metrics, outcome_log
        )
        self._executor: Any | None = None
        self._litellm_router = litellm_router
        self._exec_lock = threading.Lock()

    @property
    def _classifier(self) -> ClassifierBackend | None:
        return self._cls.backend

    @property
    def classifier_timeout_s(self) -> float:
        return self._cls.timeout

    @property
    def executor(self) -> Any:
        """The LiteLLM-backed executor, built on first use (importing LiteLLM takes seconds)."""
        if self._executor is None:
            with self._exec_lock:
                if self._executor is None:
                    from serving.router.execute import Executor

                    self._executor = Executor(self.policy, self._litellm_router, log_texts=self._log_texts)
                    self._planner.executor = self._executor
        return self._executor

    def warm(self) -> Router:
        """Build the executor now (call at service start so the first request does not pay for it)."""
        _ = self.executor
        return self

    def close(self) -> None:
        self._cls.close()
        if self.ledger is not None:
            self.ledger.close()

    # -- decide --------------------------------------------------------------------------------

    def decide(self, request: RouteRequest | str | Sequence[Mapping[str, Any]]) -> Decision:
        return drive(self._planner.decide(_as_request(request)))

    async def adecide(self, request: RouteRequest | str | Sequence[Mapping[str, Any]]) -> Decision:
        """`decide()` for an event loop: the classifier call does not block the loop."""
        return await adrive(self._planner.decide(_as_request(request)))

    # -- execute -------------------------------------------------------------------------------

    def complete(self, messages: Sequence[Mapping[str, Any]], **kw: Any) -> Any:
        """Decide, then call through LiteLLM's Router; returns the LiteLLM response, decision attached.

        Routing keywords: route, metadata, use_case, sla, critical. Everything else goes to LiteLLM,
        except the transport fields (`request.TRANSPORT_FIELDS`: api_base, api_key, headers,
        timeout, mock_response, fallbacks, ...), which raise `InvalidRequest`: only the policy
        says where a call goes and with which credentials.
        """
        req, litellm_kw = _split_kwargs(messages, kw)
        decision = self.decide(req)
        msgs = [dict(m) for m in messages]
        return drive(self._runner.complete(self.executor, decision, req, msgs, litellm_kw))

    async def acomplete(self, messages: Sequence[Mapping[str, Any]], **kw: Any) -> Any:
        req, litellm_kw = _split_kwargs(messages, kw)
        decision = await self.adecide(req)
        msgs = [dict(m) for m in messages]
        return await adrive(self._runner.complete(self.executor, decision, req, msgs, litellm_kw))

    async def astream(self, messages: Sequence[Mapping[str, Any]], **kw: Any) -> Streamed:
        """`acomplete()` with `stream=True`: the decision, and an async iterator of OpenAI chunk dicts.

        Errors before the first chunk (every provider down, budget, no eligible model) raise here;
        spend is recorded when the stream ends, fails or is abandoned (`aclose()` or cancellation
        closes the provider call too). A cascade buffers and gates stage 1 before anything streams."""
        kw.pop("stream", None)  # streaming is what this method does
        req, litellm_kw = _split_kwargs(messages, kw)
        decision = await self.adecide(req)
        msgs = [dict(m) for m in messages]
        model, chunks = await self._runner.astream(self.executor, decision, req, msgs, litellm_kw)
        return Streamed(decision, model, chunks)


@dataclass(frozen=True, slots=True)
class Streamed:
    """A streamed completion: the decision, the model asked to answer, the chunks."""

    decision: Decision
    model: str  # the cascade's stage 2 when stage 1 was rejected; provider failover may still move it
    chunks: AsyncIterator[dict[str, Any]]


# ----------------------------------------------------------------------------------------------
# helpers


def _learned_gates(
    p: Policy, learned_gate: LearnedGateFn | None
) -> dict[str, tuple[LearnedGateFn | None, float]]:
    """Each cascade's learned gate and threshold: the one passed in, the policy's HTTP gate, or none."""
    out: dict[str, tuple[LearnedGateFn | None, float]] = {}
    for name, c in p.cascades.items():
        if learned_gate is not None:
            out[name] = (learned_gate, c.gate.learned.threshold if c.gate.learned else 0.5)
        elif c.gate.learned is not None:
            key = os.environ.get(c.gate.learned.api_key_env) if c.gate.learned.api_key_env else None
            out[name] = (HttpLearnedGate(c.gate.learned, key), c.gate.learned.threshold)
        else:
            out[name] = (None, 0.5)
    return out


def decision_of(response: Any) -> Decision | None:
    """The decision `Router.complete()` attached to a LiteLLM response."""
    hidden = getattr(response, "_hidden_params", None)
    value = hidden.get(DECISION_KEY) if isinstance(hidden, dict) else None
    return value if isinstance(value, Decision) else None


def answered_by(response: Any) -> str | None:
    """The policy model that produced the final answer (after failover and cascade)."""
    d = decision_of(response)
    if d is None:
        return None
    executed = [s for s in d.trace if isinstance(s, Executed)]
    return executed[-1].answered_by if executed else None


def _as_request(request: RouteRequest | str | Sequence[Mapping[str, Any]]) -> RouteRequest:
    if isinstance(request, RouteRequest):
        return request
    if isinstance(request, str):
        return RouteRequest.from_text(request)
    return RouteRequest.from_messages(request)


_ROUTING_KW = ("route", "use_case", "sla", "critical")


def _split_kwargs(
    messages: Sequence[Mapping[str, Any]], kw: dict[str, Any]
) -> tuple[RouteRequest, dict[str, Any]]:
    kw = dict(kw)
    if kw.pop("stream", False):
        raise InvalidRequest("stream=True: use Router.astream(), which returns the chunks")
    refused = sorted(TRANSPORT_FIELDS.intersection(kw))
    if refused:
        raise InvalidRequest(
            f"{', '.join(refused)}: not accepted per call; endpoints, credentials, headers, timeouts, "
            "retries and fallbacks come from the policy"
        )
    metadata = kw.pop("metadata", None) or {}
    routing = {k: kw.pop(k) for k in _ROUTING_KW if kw.get(k) is not None}
    for k in _ROUTING_KW:
        kw.pop(k, None)
    if routing.get("route") == AUTO_ROUTE:
        routing.pop("route")
    kw.pop("model", None)
    return RouteRequest.from_messages(messages, metadata, **routing), kw
