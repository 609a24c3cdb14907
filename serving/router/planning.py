"""The decision as a core step: rules and classifier (who picks), then eligibility, budget, cooldown.

Job: `Planner.decide()` is the generator behind `Router.decide()` and `Router.adecide()` (driven by
`serving.router.core`); the only I/O it yields is the classifier call. Steps, in order:
`_pick` (explicit route, first matching rule, classifier, later rules, default), `_target`
(cascade / model / tier made eligible: capabilities, context, SLA, critical-only), `_budget`,
`_cooldown`, then the `Decision` with its fallbacks.

Trade-offs: pure apart from reading the ledger cache and LiteLLM's cooldowns (and the probe
counter of an alarmed cascade); everything else is precomputed at construction.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from serving.router.budget import BudgetLedger
from serving.router.cascade import FallbackTracker
from serving.router.catalog import TIER_INDEX, Catalog, Needs
from serving.router.classify import ClassifierStage, Plan
from serving.router.core import Op
from serving.router.decision import (
    CascadePlanned,
    CascadeSpec,
    CooldownApplied,
    Decision,
    DefaultUsed,
    ExplicitRoute,
    InvalidRequest,
    RuleMatched,
    Step,
    UnknownRoute,
)
from serving.router.policy import AUTO_ROUTE, TIERS, Policy, Target
from serving.router.request import Features, RouteRequest, extract
from serving.router.rules import CompiledRule, compile_rules


class Planner:
    """Turns a request into a `Decision` under one policy."""

    def __init__(
        self,
        policy: Policy,
        catalog: Catalog,
        classifier: ClassifierStage,
        tracker: FallbackTracker,
        ledger: BudgetLedger | None,
    ) -> None:
        p = policy
        self.policy = p
        self.catalog = catalog
        self.classifier = classifier
        self.tracker = tracker
        self.ledger = ledger
        self.rules: tuple[CompiledRule, ...] = compile_rules(p.rules)
        self.rule_by_id = {r.id: r for r in self.rules}
        self.sla_ceiling = {name: c.max_latency_ms for name, c in p.latency_sla.classes.items()}
        self.default_sla = p.latency_sla.default
        self.routes = p.route_names()
        self.executor: Any | None = None  # set once LiteLLM's Router exists: decisions read its cooldowns

    def features(self, req: RouteRequest) -> Features:
        f = extract(req, self.default_sla)
        if f.sla not in self.sla_ceiling:
            raise InvalidRequest(
                f"unknown SLA class {f.sla!r}; the policy defines {sorted(self.sla_ceiling)}"
            )
        return f

    def decide(self, req: RouteRequest) -> Generator[Op, Any, Decision]:
        t0 = time.perf_counter()
        f = self.features(req)
        trace: list[Step] = []
        plan = yield from self._pick(req, f, trace)
        return self._finish(f, plan, trace, t0)

    # -- step 1: who picks the target ----------------------------------------------------------

    def _pick(self, req: RouteRequest, f: Features, trace: list[Step]) -> Generator[Op, Any, Plan]:
        plan = self._explicit(req.route, trace)
        if plan is not None:
            return plan
        plan, rule = self._walk(f, trace)
        if rule is None:
            assert plan is not None
            return plan
        asked = yield from self.classifier.consult(f.prompt, rule, trace, self.catalog.tier_cascade)
        return asked or self._walk(f, trace, rule.index + 1)[0] or self._default_plan(trace)

    def _walk(
        self, f: Features, trace: list[Step], start: int | None = None
    ) -> tuple[Plan | None, CompiledRule | None]:
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

    def _first_match(self, f: Features, start: int) -> CompiledRule | None:
        rules = self.rules
        for i in range(start, len(rules)):
            if rules[i].matches(f):
                return rules[i]
        return None

    def _explicit(self, route: str | None, trace: list[Step]) -> Plan | None:
        if route is None or route == AUTO_ROUTE:
            return None
        kind = self.routes.get(route)
        if kind is None:
            raise UnknownRoute(f"unknown route {route!r}; use 'auto' or one of {sorted(self.routes)}")
        trace.append(ExplicitRoute(route, kind))
        if kind == "rule":
            rule = self.rule_by_id[route]
            if rule.target.classifier:
                return None  # "the classifier rule" = decide normally
            plan = self._rule_plan(rule, trace)
            plan.decided_by = "explicit"
            return plan
        return Plan(kind, route, "explicit", f"route {route}")

    def _rule_plan(self, rule: CompiledRule, trace: list[Step]) -> Plan:
        trace.append(RuleMatched(rule.id, rule.target_desc))
        return Plan(rule.target_kind, rule.target_value, "rule", "rule " + rule.id, rule.id, rule.require)

    def _default_plan(self, trace: list[Step]) -> Plan:
        target = self.policy.default
        trace.append(DefaultUsed(target.describe()))
        kind, value = _target_value(target)
        return Plan(kind, value, "default", "default")

    # -- steps 2-4: eligibility, budget, cooldown ----------------------------------------------

    def _finish(self, f: Features, plan: Plan, trace: list[Step], t0: float) -> Decision:
        caps = plan.caps | {"vision"} if f.has_image else plan.caps
        needs = Needs(caps, f.context_tokens, self.sla_ceiling[f.sla], f.critical)
        model, cascade, decided_by, reason = self._target(plan, needs, trace)
        if self.policy.budget is not None and self.ledger is not None:
            before = model
            model, cascade, by = self.catalog.apply_budget(
                self.ledger, self.policy.budget, model, cascade, needs, trace
            )
            if by:
                decided_by, reason = by, f"{reason}; budget moved {before}"
        alternative = self._cooldown(model, needs, trace)
        if alternative is not None:
            reason = f"{reason}; {model} cooling down"
            model, decided_by, cascade = alternative, "cooldown", None
        return self._decision(model, cascade, decided_by, reason, plan, needs, trace, t0)

    def _target(
        self, plan: Plan, needs: Needs, trace: list[Step]
    ) -> tuple[str, CascadeSpec | None, str, str]:
        """(model, cascade, decided_by, reason) once the plan's target is made eligible."""
        cat = self.catalog
        if plan.kind == "cascade":
            return self._cascade(plan, needs, trace)
        if plan.kind == "model":
            model, by = cat.resolve_model(plan.value, needs, trace)
            if by:
                return model, None, by, f"{plan.reason}; {by} filter excluded {plan.value}"
            return model, None, plan.decided_by, plan.reason
        model, by = cat.resolve_tier(TIER_INDEX[plan.value], needs, trace, plan.value)
        if by:
            return model, None, by, f"{plan.reason}; {by} filter moved tier {plan.value}"
        return model, None, plan.decided_by, plan.reason

    def _cascade(
        self, plan: Plan, needs: Needs, trace: list[Step]
    ) -> tuple[str, CascadeSpec | None, str, str]:
        cat, name = self.catalog, plan.value
        c = self.policy.cascades[name]
        skip, probe = self.tracker.plan_skip(name)
        stage1 = cat.eligible_or_none(c.stage1, needs)
        stage2, by2 = cat.resolve_model(c.stage2, needs, trace)
        alarm = self.tracker.alarmed(name)
        trace.append(
            CascadePlanned(
                name, c.stage1, stage2, skip or stage1 is None, self.tracker.rate(name), alarm, probe
            )
        )
        if skip:
            return (
                stage2,
                None,
                "cascade_alarm",
                f"{plan.reason}; cascade {name} alarmed: straight to stage 2",
            )
        if stage1 is None:
            why = f"{plan.reason}; stage 1 {c.stage1} cannot serve this request: stage 2 only"
            return stage2, None, by2 or "capability", why
        spec = CascadeSpec(name, stage1, stage2, tuple(cat.server_fallbacks(stage2, needs)))
        return stage1, spec, plan.decided_by, f"{plan.reason} -> cascade {name}"

    def _cooldown(self, model: str, needs: Needs, trace: list[Step]) -> str | None:
        """Step 4: the first fallback not cooling down when LiteLLM has the whole group cooling."""
        executor = self.executor
        if executor is None or not executor.group_cooling(model):
            return None
        alternative = next(
            (m for m in self.catalog.fallbacks(model, needs) if not executor.group_cooling(m)), None
        )
        trace.append(CooldownApplied(model, alternative or model, executor.cooling(model)))
        return alternative

    def _decision(
        self,
        model: str,
        cascade: CascadeSpec | None,
        decided_by: str,
        reason: str,
        plan: Plan,
        needs: Needs,
        trace: list[Step],
        t0: float,
    ) -> Decision:
        server_fallbacks = self.catalog.server_fallbacks(model, needs)
        chosen = self.catalog.models[model]
        return Decision(
            model=model,
            litellm_model=chosen.litellm_model,
            fallbacks=[*self.catalog.rate_limited.get(model, ()), *server_fallbacks],
            decided_by=decided_by,
            reason=f"{reason} -> {model}"
            if cascade is None
            else f"{reason} (stage 1 {model}, stage 2 {cascade.stage2})",
            tier=TIERS[chosen.tier],
            trace=trace,
            rule_id=plan.rule_id,
            cascade=cascade,
            classifier_latency_ms=plan.classifier_latency_ms,
            classified=plan.classified,
            server_error_fallbacks=server_fallbacks,
            required_capabilities=tuple(sorted(needs.caps)) if needs.caps else (),
            decide_us=(time.perf_counter() - t0) * 1e6,
        )


def _target_value(target: Target) -> tuple[str, str]:
    if target.model is not None:
        return "model", target.model
    if target.tier is not None:
        return "tier", target.tier
    if target.cascade is not None:
        return "cascade", target.cascade
    raise ValueError("a classifier target has no value")  # callers handle classifier targets first
