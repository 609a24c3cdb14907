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

Trade-offs: `decide()` is pure (reads the ledger cache and LiteLLM's cooldowns, writes nothing
but the probe counter of an alarmed cascade)
and precomputes everything it can at construction (compiled rules, per-tier candidate orders,
prices), so rules-only decisions take microseconds. With a classifier the decision waits for it
up to `classifier.timeout_ms`, never longer: the HTTP client's timeout bounds a remote service,
a worker thread bounds an in-process bundle.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.client import (
    AsyncClassifierClient,
    BundleClassifier,
    ClassifierBackend,
    ClassifierBadResponse,
    ClassifierClient,
    ClassifierError,
    ClassifierTimeout,
    ClassifierUnavailable,
)
from serving.router import metrics
from serving.router.budget import BudgetLedger, budget_state
from serving.router.cascade import FallbackTracker, HttpLearnedGate, LearnedGateFn, run_gate
from serving.router.decision import (
    BudgetApplied,
    BudgetExceeded,
    CascadePlanned,
    CascadeSpec,
    ClassifierConsulted,
    CooldownApplied,
    Decision,
    DefaultUsed,
    Executed,
    ExecutionFailed,
    ExplicitRoute,
    GateChecked,
    InvalidRequest,
    ModelFiltered,
    NoEligibleModel,
    RouterError,
    RuleMatched,
    Step,
    UnknownRoute,
)
from serving.router.litellm_config import server_error_chain
from serving.router.policy import AUTO_ROUTE, TIERS, Policy, Target, load_policy
from serving.router.request import TRANSPORT_FIELDS, Features, RouteRequest, extract
from serving.router.rules import CompiledRule, compile_rules

log = logging.getLogger("tierroute.router")

TIER_INDEX = {t: i for i, t in enumerate(TIERS)}
DECISION_KEY = "tierroute_decision"


@dataclass(frozen=True, slots=True)
class _Model:
    name: str
    litellm_model: str
    tier: int
    caps: frozenset[str]
    context_window: int
    latency_ms: int
    critical_only: bool
    price: float  # input + output USD per token, for ordering only


@dataclass(slots=True)
class _Plan:
    kind: str  # model | tier | cascade
    value: str
    decided_by: str
    reason: str
    rule_id: str | None = None
    caps: frozenset[str] = frozenset()
    classifier_latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class _Needs:
    caps: frozenset[str]
    context_tokens: int
    ceiling: int | None
    critical: bool


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
    ) -> None:
        """`log_texts`: allow request text in logs (LiteLLM's debug output); None reads the service's
        opt-in, `TIERROUTE_LOG_TEXTS`. Off, no log level shows message content."""
        self._log_texts = log_texts
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        p = self.policy
        self._rules: tuple[CompiledRule, ...] = compile_rules(p.rules)
        self._rule_by_id = {r.id: r for r in self._rules}
        self._models: dict[str, _Model] = {
            name: _Model(
                name=name,
                litellm_model=spec.litellm_model,
                tier=TIER_INDEX[spec.tier],
                caps=frozenset(spec.capabilities),
                context_window=p.model_context_window(name),
                latency_ms=spec.latency_ms,
                critical_only=spec.critical_only,
                price=sum(p.model_price(name)),
            )
            for name, spec in p.models.items()
        }
        self._by_price = sorted(self._models.values(), key=lambda m: (m.price, m.tier, m.name))
        preferred: dict[str, str] = (
            {str(k): v for k, v in p.classifier.tier_models.items()} if p.classifier else {}
        )
        self._tier_cascade = {t: name for t, name in preferred.items() if name in p.cascades}
        self._tier_up: list[list[_Model]] = []
        self._tier_down: list[list[_Model]] = []
        for t, tier in enumerate(TIERS):
            own = self._tier_list(preferred.get(tier), t)
            above = [m for u in range(t + 1, len(TIERS)) for m in self._tier_list(preferred.get(TIERS[u]), u)]
            below = [m for d in range(t - 1, -1, -1) for m in self._tier_list(preferred.get(TIERS[d]), d)]
            self._tier_up.append(_dedup(own + above + below))
            self._tier_down.append(_dedup(own + below))
        self._rate_limited = {n: list(fo.rate_limited) for n, fo in p.failover.models.items()}
        self._server_chain = {n: server_error_chain(p, n) for n in p.models}
        self._sla_ceiling = {name: c.max_latency_ms for name, c in p.latency_sla.classes.items()}
        self._default_sla = p.latency_sla.default
        self._routes = p.route_names()
        self.tracker = FallbackTracker(p.cascades)

        # classifier
        cs = p.classifier
        self._cls_timeout = cs.timeout_ms / 1000 if cs else 0.03
        self._min_conf = cs.min_confidence if cs else 0.5
        self._use_calibrated = cs.use_calibrated_threshold if cs else True
        self._task_caps = {k: frozenset(v) for k, v in (cs.task_capabilities.items() if cs else ())}
        self._classifier: ClassifierBackend | None
        self._cls_url: str | None = None
        self._cls_key: str | None = None
        if isinstance(classifier, str):
            if classifier != "policy":
                raise ValueError("classifier must be a backend, None, or 'policy'")
            self._classifier = self._classifier_from_policy()
        else:
            self._classifier = classifier
        self._cls_direct = bool(getattr(self._classifier, "enforces_timeout", False))
        self._pool: ThreadPoolExecutor | None = None
        if self._classifier is not None and not self._cls_direct:  # in-process backends: a deadline thread
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tierroute-classify")
        self._async_cls: dict[int, AsyncClassifierClient] = {}

        # budget
        self._budget = p.budget
        self.ledger: BudgetLedger | None = None
        if p.budget is not None:
            if isinstance(ledger, BudgetLedger):
                self.ledger = ledger
            else:
                self.ledger = BudgetLedger(
                    ledger or p.budget.ledger, refresh_seconds=p.budget.refresh_seconds
                )

        # cascades' learned gates
        self._learned: dict[str, tuple[LearnedGateFn | None, float]] = {}
        for name, c in p.cascades.items():
            if learned_gate is not None:
                self._learned[name] = (learned_gate, c.gate.learned.threshold if c.gate.learned else 0.5)
            elif c.gate.learned is not None:
                key = os.environ.get(c.gate.learned.api_key_env) if c.gate.learned.api_key_env else None
                self._learned[name] = (HttpLearnedGate(c.gate.learned, key), c.gate.learned.threshold)
            else:
                self._learned[name] = (None, 0.5)

        self._executor: Any | None = None
        self._litellm_router = litellm_router
        self._exec_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------
    # construction helpers

    def _tier_list(self, preferred: str | None, tier: int) -> list[_Model]:
        own = sorted((m for m in self._models.values() if m.tier == tier), key=lambda m: (m.price, m.name))
        if preferred is not None and preferred in self._models:
            return [self._models[preferred], *own]
        return own

    def _classifier_from_policy(self) -> ClassifierBackend | None:
        cs = self.policy.classifier
        if cs is None:
            return None
        key = os.environ.get(cs.api_key_env) if cs.api_key_env else None
        if cs.url is not None:
            self._cls_url, self._cls_key = cs.url, key
            return ClassifierClient(cs.url, timeout=cs.timeout_ms / 1000, api_key=key)
        return BundleClassifier(Path(cs.bundle or ""))

    @property
    def executor(self) -> Any:
        """The LiteLLM-backed executor, built on first use (importing LiteLLM takes seconds)."""
        if self._executor is None:
            with self._exec_lock:
                if self._executor is None:
                    from serving.router.execute import Executor

                    self._executor = Executor(self.policy, self._litellm_router, log_texts=self._log_texts)
        return self._executor

    def warm(self) -> Router:
        """Build the executor now (call at service start so the first request does not pay for it)."""
        _ = self.executor
        return self

    def close(self) -> None:
        if isinstance(self._classifier, ClassifierClient):
            self._classifier.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.ledger is not None:
            self.ledger.close()

    # ------------------------------------------------------------------------------------------
    # decide

    def decide(self, request: RouteRequest | str | Sequence[Mapping[str, Any]]) -> Decision:
        t0 = time.perf_counter()
        req = _as_request(request)
        f = self._features(req)
        trace: list[Step] = []
        plan = self._explicit(req.route, trace)
        if plan is None:
            plan, rule = self._walk(f, trace)
            if rule is not None:
                plan = self._classify_sync(f, rule, trace) or self._walk(f, trace, rule.index + 1)[0]
        assert plan is not None
        return self._finish(f, plan, trace, t0)

    async def adecide(self, request: RouteRequest | str | Sequence[Mapping[str, Any]]) -> Decision:
        """`decide()` for an event loop: the classifier call does not block the loop."""
        t0 = time.perf_counter()
        req = _as_request(request)
        f = self._features(req)
        trace: list[Step] = []
        plan = self._explicit(req.route, trace)
        if plan is None:
            plan, rule = self._walk(f, trace)
            if rule is not None:
                plan = await self._classify_async(f, rule, trace) or self._walk(f, trace, rule.index + 1)[0]
        assert plan is not None
        return self._finish(f, plan, trace, t0)

    def _walk(
        self, f: Features, trace: list[Step], start: int | None = None
    ) -> tuple[_Plan | None, CompiledRule | None]:
        """Policy rules in order: (plan, None) once a rule or the default decides, or (None, rule) at the
        first classifier rule. With `start` (after that classifier failed) later classifier rules are
        skipped, so the walk always ends in a plan; the classifier is consulted at most once."""
        i = start or 0
        while True:
            rule = self._first_match(f, i)
            if rule is None:
                return self._default_plan(trace), None
            if not rule.target.classifier:
                return self._rule_plan(rule, trace), None
            if start is None:
                return None, rule
            i = rule.index + 1

    def _features(self, req: RouteRequest) -> Features:
        f = extract(req, self._default_sla)
        if f.sla not in self._sla_ceiling:
            raise InvalidRequest(
                f"unknown SLA class {f.sla!r}; the policy defines {sorted(self._sla_ceiling)}"
            )
        return f

    def _first_match(self, f: Features, start: int) -> CompiledRule | None:
        rules = self._rules
        for i in range(start, len(rules)):
            if rules[i].matches(f):
                return rules[i]
        return None

    def _explicit(self, route: str | None, trace: list[Step]) -> _Plan | None:
        if route is None or route == AUTO_ROUTE:
            return None
        kind = self._routes.get(route)
        if kind is None:
            raise UnknownRoute(f"unknown route {route!r}; use 'auto' or one of {sorted(self._routes)}")
        trace.append(ExplicitRoute(route, kind))
        if kind == "rule":
            rule = self._rule_by_id[route]
            if rule.target.classifier:
                return None  # "the classifier rule" = decide normally
            plan = self._rule_plan(rule, trace)
            plan.decided_by = "explicit"
            return plan
        return _Plan(kind, route, "explicit", f"route {route}")

    def _rule_plan(self, rule: CompiledRule, trace: list[Step]) -> _Plan:
        trace.append(RuleMatched(rule.id, rule.target_desc))
        return _Plan(rule.target_kind, rule.target_value, "rule", "rule " + rule.id, rule.id, rule.require)

    def _default_plan(self, trace: list[Step]) -> _Plan:
        target = self.policy.default
        trace.append(DefaultUsed(target.describe()))
        kind, value = _target_value(target)
        return _Plan(kind, value, "default", "default")

    # -- classifier ----------------------------------------------------------------------------

    def _classify_sync(self, f: Features, rule: CompiledRule, trace: list[Step]) -> _Plan | None:
        backend = self._classifier
        if backend is None:
            trace.append(ClassifierConsulted(rule.id, "not_configured", detail="no classifier; rules decide"))
            return None
        t0 = time.perf_counter()
        try:
            if self._cls_direct:
                response = backend.classify([f.prompt])
            else:
                assert self._pool is not None
                response = self._pool.submit(backend.classify, [f.prompt]).result(timeout=self._cls_timeout)
        except (FutureTimeout, ClassifierTimeout):
            return self._classifier_failed(
                rule, trace, "timeout", t0, f"no answer within {self._cls_timeout * 1e3:g} ms"
            )
        except Exception as exc:
            return self._classifier_failed(rule, trace, _failure_status(exc), t0, _short(exc))
        return self._interpret(response, rule, trace, (time.perf_counter() - t0) * 1e3)

    async def _classify_async(self, f: Features, rule: CompiledRule, trace: list[Step]) -> _Plan | None:
        backend = self._classifier
        if backend is None:
            trace.append(ClassifierConsulted(rule.id, "not_configured", detail="no classifier; rules decide"))
            return None
        t0 = time.perf_counter()
        try:
            if self._cls_url is not None:
                client = self._async_client()
                response = await asyncio.wait_for(
                    client.classify([f.prompt]), timeout=self._cls_timeout + 0.005
                )
            else:
                call = asyncio.to_thread(backend.classify, [f.prompt])
                response = await asyncio.wait_for(call, timeout=self._cls_timeout)
        except (TimeoutError, ClassifierTimeout):
            return self._classifier_failed(
                rule, trace, "timeout", t0, f"no answer within {self._cls_timeout * 1e3:g} ms"
            )
        except Exception as exc:
            return self._classifier_failed(rule, trace, _failure_status(exc), t0, _short(exc))
        return self._interpret(response, rule, trace, (time.perf_counter() - t0) * 1e3)

    def _async_client(self) -> AsyncClassifierClient:
        """One async client per event loop (an httpx AsyncClient is bound to the loop it first ran on)."""
        loop_id = id(asyncio.get_running_loop())
        client = self._async_cls.get(loop_id)
        if client is None:
            client = AsyncClassifierClient(
                self._cls_url or "", timeout=self._cls_timeout, api_key=self._cls_key
            )
            self._async_cls = {loop_id: client}
        return client

    def _classifier_failed(
        self, rule: CompiledRule, trace: list[Step], status: str, t0: float, detail: str
    ) -> _Plan | None:
        latency = (time.perf_counter() - t0) * 1e3
        trace.append(
            ClassifierConsulted(
                rule.id, status, latency_ms=round(latency, 3), detail=f"{detail}; rules decide"
            )
        )
        return None

    def _interpret(
        self, response: Any, rule: CompiledRule, trace: list[Step], latency: float
    ) -> _Plan | None:
        latency = round(latency, 3)
        result = response.results[0]
        tier, task, conf = result.tier, result.task, result.confidence
        probs_sum = sum(result.tier_probs.values()) if result.tier_probs else 1.0
        status, detail = "ok", ""
        if tier not in TIER_INDEX:
            status, detail = "garbage", f"unknown tier {tier!r}"
        elif not math.isfinite(conf) or not math.isfinite(probs_sum) or abs(probs_sum - 1.0) > 0.05:
            status, detail = "garbage", f"tier probabilities do not sum to 1 ({probs_sum:.3g})"
        elif conf < self._min_conf:
            status, detail = "low_confidence", f"confidence {conf:.2f} below {self._min_conf:.2f}"
        if status != "ok":
            trace.append(
                ClassifierConsulted(
                    rule.id, status, str(tier), task, conf, latency, result.tokens, f"{detail}; rules decide"
                )
            )
            return None
        reason = f"classifier: {tier} ({conf:.2f})"
        routing = response.model.routing if self._use_calibrated else None
        calibrated = routing.apply(result) if routing is not None else None
        if calibrated is not None:
            chosen, detail = calibrated
            reason = f"classifier: {tier} ({conf:.2f}), {detail}"
            trace.append(ClassifierConsulted(rule.id, "ok", tier, task, conf, latency, result.tokens, detail))
            tier = chosen
        else:
            trace.append(ClassifierConsulted(rule.id, "ok", tier, task, conf, latency, result.tokens))
        caps = self._task_caps.get(task or "", frozenset()) | rule.require
        cascade = self._tier_cascade.get(tier)
        if cascade is not None:
            return _Plan("cascade", cascade, "classifier", reason, rule.id, caps, latency)
        return _Plan("tier", tier, "classifier", reason, rule.id, caps, latency)

    # -- constraints, budget, cooldown, cascade ------------------------------------------------

    def _finish(self, f: Features, plan: _Plan, trace: list[Step], t0: float) -> Decision:
        caps = plan.caps | {"vision"} if f.has_image else plan.caps
        needs = _Needs(caps, f.context_tokens, self._sla_ceiling[f.sla], f.critical)
        decided_by, reason = plan.decided_by, plan.reason
        cascade: CascadeSpec | None = None

        if plan.kind == "cascade":
            c = self.policy.cascades[plan.value]
            skip, probe = self.tracker.plan_skip(plan.value)
            stage1 = self._eligible_or_none(c.stage1, needs)
            stage2, by2 = self._resolve_model(c.stage2, needs, trace)
            alarm = self.tracker.alarmed(plan.value)
            trace.append(
                CascadePlanned(
                    plan.value,
                    c.stage1,
                    stage2,
                    skip or stage1 is None,
                    self.tracker.rate(plan.value),
                    alarm,
                    probe,
                )
            )
            if stage1 is None or skip:
                model = stage2
                if skip:
                    decided_by, reason = (
                        "cascade_alarm",
                        f"{reason}; cascade {plan.value} alarmed: straight to stage 2",
                    )
                else:
                    decided_by = by2 or "capability"
                    reason = f"{reason}; stage 1 {c.stage1} cannot serve this request: stage 2 only"
            else:
                model = stage1
                stage2_fb = tuple(self._server_fallbacks(stage2, needs))
                cascade = CascadeSpec(plan.value, stage1, stage2, stage2_fb)
                reason = f"{reason} -> cascade {plan.value}"
        elif plan.kind == "model":
            model, by = self._resolve_model(plan.value, needs, trace)
            if by:
                decided_by, reason = by, f"{reason}; {by} filter excluded {plan.value}"
        else:
            model, by = self._resolve_tier(TIER_INDEX[plan.value], needs, trace, plan.value)
            if by:
                decided_by, reason = by, f"{reason}; {by} filter moved tier {plan.value}"

        if self._budget is not None and self.ledger is not None:
            before = model
            model, cascade, by = self._apply_budget(model, cascade, needs, trace)
            if by:
                decided_by, reason = by, f"{reason}; budget moved {before}"

        executor = self._executor
        if executor is not None and executor.group_cooling(model):
            alternative = next(
                (m for m in self._fallbacks(model, needs) if not executor.group_cooling(m)), None
            )
            trace.append(CooldownApplied(model, alternative or model, executor.cooling(model)))
            if alternative is not None:
                reason = f"{reason}; {model} cooling down"
                model, decided_by, cascade = alternative, "cooldown", None

        server_fallbacks = self._server_fallbacks(model, needs)
        fallbacks = [*self._rate_limited.get(model, ()), *server_fallbacks]
        chosen = self._models[model]
        return Decision(
            model=model,
            litellm_model=chosen.litellm_model,
            fallbacks=fallbacks,
            decided_by=decided_by,
            reason=f"{reason} -> {model}"
            if cascade is None
            else f"{reason} (stage 1 {model}, stage 2 {cascade.stage2})",
            tier=TIERS[chosen.tier],
            trace=trace,
            rule_id=plan.rule_id,
            cascade=cascade,
            classifier_latency_ms=plan.classifier_latency_ms,
            server_error_fallbacks=server_fallbacks,
            required_capabilities=tuple(sorted(needs.caps)) if needs.caps else (),
            decide_us=(time.perf_counter() - t0) * 1e6,
        )

    def _why_not(self, m: _Model, needs: _Needs) -> str | None:
        if m.critical_only and not needs.critical:
            return "critical_only"
        if needs.caps and not needs.caps <= m.caps:
            return "capability: missing " + ", ".join(sorted(needs.caps - m.caps))
        if needs.context_tokens > m.context_window:
            return f"context: {needs.context_tokens} tokens > window {m.context_window}"
        if needs.ceiling is not None and m.latency_ms > needs.ceiling:
            return f"sla: {m.latency_ms} ms > ceiling {needs.ceiling} ms"
        return None

    def _eligible_or_none(self, name: str, needs: _Needs) -> str | None:
        return name if self._why_not(self._models[name], needs) is None else None

    def _resolve_model(self, name: str, needs: _Needs, trace: list[Step]) -> tuple[str, str | None]:
        m = self._models[name]
        why = self._why_not(m, needs)
        if why is None:
            return name, None
        return self._resolve_tier(m.tier, needs, trace, name, {name: why})

    def _resolve_tier(
        self, tier: int, needs: _Needs, trace: list[Step], wanted: str, excluded: dict[str, str] | None = None
    ) -> tuple[str, str | None]:
        excluded = dict(excluded or {})
        for m in self._tier_up[tier]:
            if m.name in excluded:
                continue
            why = self._why_not(m, needs)
            if why is None:
                if not excluded:
                    return m.name, None
                first = next(iter(excluded.values())).split(":")[0]
                trace.append(ModelFiltered(first, wanted, m.name, excluded))
                return m.name, first
            excluded[m.name] = why
        trace.append(ModelFiltered("none_eligible", wanted, "", excluded))
        raise NoEligibleModel(
            f"no model can serve this request (needs {sorted(needs.caps) or 'no capabilities'}, "
            f"{needs.context_tokens} context tokens, SLA ceiling {needs.ceiling} ms): {excluded}",
            trace,
        )

    def _apply_budget(
        self, model: str, cascade: CascadeSpec | None, needs: _Needs, trace: list[Step]
    ) -> tuple[str, CascadeSpec | None, str | None]:
        assert self._budget is not None and self.ledger is not None
        b = self._budget
        spent_raw = self.ledger.spent_today()
        if spent_raw < b.downgrade_at * b.daily_usd:  # the common case: no allocation at all
            return model, cascade, None
        st = budget_state(spent_raw, b.daily_usd, b.downgrade_at)
        spent, limit = round(st.spent_usd, 6), b.daily_usd
        if needs.critical:
            action = "critical_pass" if st.state == "exhausted" else "none"
            trace.append(BudgetApplied(st.state, spent, limit, action))
            return model, cascade, None
        if st.state == "degraded":
            if cascade is not None:
                trace.append(BudgetApplied(st.state, spent, limit, "none", model, model))
                return model, cascade, None
            tier = self._models[model].tier
            if tier == 0:
                trace.append(BudgetApplied(st.state, spent, limit, "none", model, model))
                return model, cascade, None
            lower = next((m for m in self._tier_down[tier - 1] if self._why_not(m, needs) is None), None)
            if lower is None:
                trace.append(BudgetApplied(st.state, spent, limit, "none", model, model))
                return model, cascade, None
            trace.append(BudgetApplied(st.state, spent, limit, "downgrade", model, lower.name))
            return lower.name, None, "budget"
        if b.on_exhausted == "reject":
            trace.append(BudgetApplied(st.state, spent, limit, "reject", model, None))
            raise BudgetExceeded(
                f"daily budget exhausted (${spent:.4f} of ${limit:.2f}); only critical requests pass", trace
            )
        cheapest = next((m for m in self._by_price if self._why_not(m, needs) is None), None)
        if cheapest is None:
            trace.append(BudgetApplied(st.state, spent, limit, "reject", model, None))
            raise BudgetExceeded(
                f"daily budget exhausted (${spent:.4f} of ${limit:.2f}) and no model fits", trace
            )
        trace.append(BudgetApplied(st.state, spent, limit, "cheapest", model, cheapest.name))
        return cheapest.name, None, "budget"

    def _server_fallbacks(self, model: str, needs: _Needs) -> list[str]:
        chain = self._server_chain.get(model)
        if not chain:
            return []
        return [m for m in chain if self._why_not(self._models[m], needs) is None]

    def _fallbacks(self, model: str, needs: _Needs) -> list[str]:
        chain = [*self._rate_limited.get(model, ()), *self._server_chain.get(model, ())]
        return [m for m in chain if self._why_not(self._models[m], needs) is None]

    # ------------------------------------------------------------------------------------------
    # execute

    def complete(self, messages: Sequence[Mapping[str, Any]], **kw: Any) -> Any:
        """Decide, then call through LiteLLM's Router; returns the LiteLLM response, decision attached.

        Routing keywords: route, metadata, use_case, sla, critical. Everything else goes to LiteLLM,
        except the transport fields (`request.TRANSPORT_FIELDS`: api_base, api_key, headers,
        timeout, mock_response, fallbacks, ...), which raise `InvalidRequest`: only the policy
        says where a call goes and with which credentials.
        """
        req, litellm_kw = _split_kwargs(messages, kw)
        decision = self.decide(req)
        ex = self.executor
        msgs = [dict(m) for m in messages]
        if decision.cascade is None:
            result = self._run_sync(
                ex, decision, decision.model, decision.server_error_fallbacks, msgs, litellm_kw
            )
        else:
            result = self._cascade_sync(ex, decision, req, msgs, litellm_kw)
        return self._done(decision, result)

    async def acomplete(self, messages: Sequence[Mapping[str, Any]], **kw: Any) -> Any:
        req, litellm_kw = _split_kwargs(messages, kw)
        decision = await self.adecide(req)
        ex = self.executor
        msgs = [dict(m) for m in messages]
        if decision.cascade is None:
            result = await self._run_async(
                ex, decision, decision.model, decision.server_error_fallbacks, msgs, litellm_kw
            )
        else:
            result = await self._cascade_async(ex, decision, req, msgs, litellm_kw)
        return self._done(decision, result)

    def _run_sync(
        self, ex: Any, d: Decision, model: str, fb: list[str], msgs: list[dict[str, Any]], kw: Any
    ) -> Any:
        try:
            result = ex.call(model, msgs, fb, **kw)
        except RouterError as err:
            raise self._failed(d, model, err) from err
        return self._record(d, result)

    async def _run_async(
        self, ex: Any, d: Decision, model: str, fb: list[str], msgs: list[dict[str, Any]], kw: Any
    ) -> Any:
        try:
            result = await ex.acall(model, msgs, fb, **kw)
        except RouterError as err:
            raise self._failed(d, model, err) from err
        if self.ledger is None:
            return self._record(d, result)
        # the ledger fsyncs its journal (and may meet a locked SQLite file): never on the event loop
        return await asyncio.to_thread(self._record, d, result)

    def _failed(self, d: Decision, model: str, err: RouterError) -> RouterError:
        d.trace.append(ExecutionFailed(model, type(err.__cause__ or err).__name__, str(err)))
        metrics.FAILURES.labels(type(err).__name__).inc()
        err.trace = list(d.trace)
        err.decision = d
        return err

    def _record(self, d: Decision, result: Any) -> Any:
        route = d.cascade.name if d.cascade else d.rule_id
        if self.ledger is not None:
            self.ledger.record(
                result.answered_by, result.cost_usd, result.prompt_tokens, result.completion_tokens, route
            )
            metrics.BUDGET_SPENT.set(self.ledger.spent_today())
        metrics.SPEND.labels(result.answered_by).inc(result.cost_usd)
        d.trace.append(
            Executed(
                result.requested,
                result.answered_by,
                result.provider,
                round(result.cost_usd, 8),
                result.prompt_tokens,
                result.completion_tokens,
                result.answered_by != result.requested,
            )
        )
        return result

    def _gate_inputs(
        self, req: RouteRequest, kw: Mapping[str, Any]
    ) -> tuple[str, bool, dict[str, Any] | None]:
        prompt = extract(req, self._default_sla).prompt
        fmt = kw.get("response_format")
        expect_json, schema = False, None
        if isinstance(fmt, Mapping):
            if fmt.get("type") in ("json_object", "json_schema"):
                expect_json = True
            js = fmt.get("json_schema")
            if isinstance(js, Mapping) and isinstance(js.get("schema"), Mapping):
                schema = dict(js["schema"])
        return prompt, expect_json, schema

    def _judge(self, d: Decision, req: RouteRequest, kw: Mapping[str, Any], stage1: Any) -> bool:
        """Run the gate on stage 1's answer; True = acceptable. Records the outcome for the alarm."""
        assert d.cascade is not None
        name = d.cascade.name
        c = self.policy.cascades[name]
        prompt, expect_json, schema = self._gate_inputs(req, kw)
        text, finish = _answer_of(stage1.response)
        learned, threshold = self._learned.get(name, (None, 0.5))
        verdict = run_gate(
            prompt,
            text,
            c.gate,
            expect_json=expect_json,
            json_schema=schema,
            finish_reason=finish,
            learned=learned,
            threshold=threshold,
        )
        d.trace.append(
            GateChecked(
                verdict.ok,
                verdict.reasons,
                verdict.learned,
                verdict.p_acceptable,
                not verdict.ok,
                verdict.detail,
            )
        )
        self.tracker.record(name, not verdict.ok)
        metrics.CASCADE_REQUESTS.labels(name, "accepted" if verdict.ok else "escalated").inc()
        return verdict.ok

    def _stage2_fallbacks(self, d: Decision) -> list[str]:
        assert d.cascade is not None
        return list(d.cascade.stage2_fallbacks)

    def _cascade_sync(
        self, ex: Any, d: Decision, req: RouteRequest, msgs: list[dict[str, Any]], kw: Any
    ) -> Any:
        assert d.cascade is not None
        try:
            first = self._run_sync(ex, d, d.cascade.stage1, d.server_error_fallbacks, msgs, kw)
        except RouterError:
            self.tracker.record(d.cascade.name, True)
            metrics.CASCADE_REQUESTS.labels(d.cascade.name, "escalated").inc()
            return self._run_sync(ex, d, d.cascade.stage2, self._stage2_fallbacks(d), msgs, kw)
        if self._judge(d, req, kw, first):
            return first
        return self._run_sync(ex, d, d.cascade.stage2, self._stage2_fallbacks(d), msgs, kw)

    async def _cascade_async(
        self, ex: Any, d: Decision, req: RouteRequest, msgs: list[dict[str, Any]], kw: Any
    ) -> Any:
        assert d.cascade is not None
        try:
            first = await self._run_async(ex, d, d.cascade.stage1, d.server_error_fallbacks, msgs, kw)
        except RouterError:
            self.tracker.record(d.cascade.name, True)
            metrics.CASCADE_REQUESTS.labels(d.cascade.name, "escalated").inc()
            return await self._run_async(ex, d, d.cascade.stage2, self._stage2_fallbacks(d), msgs, kw)
        learned, _ = self._learned.get(d.cascade.name, (None, 0.5))
        ok = (
            await asyncio.to_thread(self._judge, d, req, kw, first)
            if learned
            else self._judge(d, req, kw, first)
        )
        if ok:
            return first
        return await self._run_async(ex, d, d.cascade.stage2, self._stage2_fallbacks(d), msgs, kw)

    def _done(self, d: Decision, result: Any) -> Any:
        response = result.response
        hidden = getattr(response, "_hidden_params", None)
        if isinstance(hidden, dict):
            hidden[DECISION_KEY] = d
        metrics.DECISIONS.labels(result.answered_by, d.decided_by).inc()
        for step in d.trace:
            if isinstance(step, ClassifierConsulted) and step.status != "ok":
                metrics.CLASSIFIER_FALLBACKS.labels(step.status).inc()
        return response


# ----------------------------------------------------------------------------------------------
# helpers


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


def _target_value(target: Target) -> tuple[str, str]:
    if target.model is not None:
        return "model", target.model
    if target.tier is not None:
        return "tier", target.tier
    if target.cascade is not None:
        return "cascade", target.cascade
    raise ValueError("a classifier target has no value")  # callers handle classifier targets first


_ROUTING_KW = ("route", "use_case", "sla", "critical")


def _split_kwargs(
    messages: Sequence[Mapping[str, Any]], kw: dict[str, Any]
) -> tuple[RouteRequest, dict[str, Any]]:
    kw = dict(kw)
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


def _answer_of(response: Any) -> tuple[str, str | None]:
    try:
        choice = response.choices[0]
        return str(choice.message.content or ""), getattr(choice, "finish_reason", None)
    except (AttributeError, IndexError, TypeError):
        return "", None


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


def _dedup(models: list[_Model]) -> list[_Model]:
    seen: set[str] = set()
    out: list[_Model] = []
    for m in models:
        if m.name not in seen:
            seen.add(m.name)
            out.append(m)
    return out
