"""The policy's models as the router sees them: eligibility, substitutes, fallbacks and the budget.

Job: answer "can this model serve this request, and if not, which one does" (steps 2 and 3 of the
decision, see `serving.router.engine`). Everything is precomputed from the policy at construction:
per-tier candidate orders (the tier's preferred model, then by price), prices, failover chains.

Trade-offs: the candidate lists are plain lists walked in order; a policy has a handful of models,
so a walk is cheaper than any index.
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.router.budget import BudgetLedger, budget_state
from serving.router.decision import (
    BudgetApplied,
    BudgetExceeded,
    CascadeSpec,
    ModelFiltered,
    NoEligibleModel,
    Step,
)
from serving.router.litellm_config import server_error_chain
from serving.router.policy import TIERS, Budget, Policy

TIER_INDEX = {t: i for i, t in enumerate(TIERS)}


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    litellm_model: str
    tier: int
    caps: frozenset[str]
    context_window: int
    latency_ms: int
    critical_only: bool
    price: float  # input + output USD per token, for ordering only


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request needs from the model that answers it."""

    caps: frozenset[str]
    context_tokens: int
    ceiling: int | None
    critical: bool


class Catalog:
    """The policy's models, their per-tier candidate orders and failover chains."""

    def __init__(self, p: Policy) -> None:
        self.models: dict[str, Model] = {
            name: Model(
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
        self.by_price = sorted(self.models.values(), key=lambda m: (m.price, m.tier, m.name))
        preferred: dict[str, str] = (
            {str(k): v for k, v in p.classifier.tier_models.items()} if p.classifier else {}
        )
        self.tier_cascade = {t: name for t, name in preferred.items() if name in p.cascades}
        self.tier_up: list[list[Model]] = []
        self.tier_down: list[list[Model]] = []
        for t, tier in enumerate(TIERS):
            own = self._tier_list(preferred.get(tier), t)
            above = [m for u in range(t + 1, len(TIERS)) for m in self._tier_list(preferred.get(TIERS[u]), u)]
            below = [m for d in range(t - 1, -1, -1) for m in self._tier_list(preferred.get(TIERS[d]), d)]
            self.tier_up.append(_dedup(own + above + below))
            self.tier_down.append(_dedup(own + below))
        self.rate_limited = {n: list(fo.rate_limited) for n, fo in p.failover.models.items()}
        self.server_chain = {n: server_error_chain(p, n) for n in p.models}

    def _tier_list(self, preferred: str | None, tier: int) -> list[Model]:
        own = sorted((m for m in self.models.values() if m.tier == tier), key=lambda m: (m.price, m.name))
        if preferred is not None and preferred in self.models:
            return [self.models[preferred], *own]
        return own

    def why_not(self, m: Model, needs: Needs) -> str | None:
        """Why `m` cannot serve a request with these needs, or None when it can."""
        if m.critical_only and not needs.critical:
            return "critical_only"
        if needs.caps and not needs.caps <= m.caps:
            return "capability: missing " + ", ".join(sorted(needs.caps - m.caps))
        if needs.context_tokens > m.context_window:
            return f"context: {needs.context_tokens} tokens > window {m.context_window}"
        if needs.ceiling is not None and m.latency_ms > needs.ceiling:
            return f"sla: {m.latency_ms} ms > ceiling {needs.ceiling} ms"
        return None

    def eligible_or_none(self, name: str, needs: Needs) -> str | None:
        return name if self.why_not(self.models[name], needs) is None else None

    def resolve_model(self, name: str, needs: Needs, trace: list[Step]) -> tuple[str, str | None]:
        """(model, the filter that replaced `name` or None)."""
        m = self.models[name]
        why = self.why_not(m, needs)
        if why is None:
            return name, None
        return self.resolve_tier(m.tier, needs, trace, name, {name: why})

    def resolve_tier(
        self, tier: int, needs: Needs, trace: list[Step], wanted: str, excluded: dict[str, str] | None = None
    ) -> tuple[str, str | None]:
        """The first eligible model of `tier`, then stronger tiers, then weaker ones."""
        excluded = dict(excluded or {})
        for m in self.tier_up[tier]:
            if m.name in excluded:
                continue
            why = self.why_not(m, needs)
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

    def server_fallbacks(self, model: str, needs: Needs) -> list[str]:
        chain = self.server_chain.get(model)
        if not chain:
            return []
        return [m for m in chain if self.why_not(self.models[m], needs) is None]

    def fallbacks(self, model: str, needs: Needs) -> list[str]:
        chain = [*self.rate_limited.get(model, ()), *self.server_chain.get(model, ())]
        return [m for m in chain if self.why_not(self.models[m], needs) is None]

    def apply_budget(
        self,
        ledger: BudgetLedger,
        budget: Budget,
        model: str,
        cascade: CascadeSpec | None,
        needs: Needs,
        trace: list[Step],
    ) -> tuple[str, CascadeSpec | None, str | None]:
        """Step 3: past `downgrade_at` non-critical requests drop one tier; past 100% only critical
        ones pass (others: `BudgetExceeded`, or the cheapest model, per policy)."""
        b = budget
        spent_raw = ledger.spent_today()
        if spent_raw < b.downgrade_at * b.daily_usd:  # the common case: no allocation at all
            return model, cascade, None
        st = budget_state(spent_raw, b.daily_usd, b.downgrade_at)
        spent, limit = round(st.spent_usd, 6), b.daily_usd
        if needs.critical:
            action = "critical_pass" if st.state == "exhausted" else "none"
            trace.append(BudgetApplied(st.state, spent, limit, action))
            return model, cascade, None
        if st.state == "degraded":
            lower = self._one_tier_down(model, needs) if cascade is None else None
            if lower is None:
                trace.append(BudgetApplied(st.state, spent, limit, "none", model, model))
                return model, cascade, None
            trace.append(BudgetApplied(st.state, spent, limit, "downgrade", model, lower))
            return lower, None, "budget"
        cheapest = next((m for m in self.by_price if self.why_not(m, needs) is None), None)
        if b.on_exhausted == "reject" or cheapest is None:
            trace.append(BudgetApplied(st.state, spent, limit, "reject", model, None))
            why = "only critical requests pass" if b.on_exhausted == "reject" else "no model fits"
            sep = "; " if b.on_exhausted == "reject" else " and "
            raise BudgetExceeded(f"daily budget exhausted (${spent:.4f} of ${limit:.2f}){sep}{why}", trace)
        trace.append(BudgetApplied(st.state, spent, limit, "cheapest", model, cheapest.name))
        return cheapest.name, None, "budget"

    def _one_tier_down(self, model: str, needs: Needs) -> str | None:
        tier = self.models[model].tier
        if tier == 0:
            return None
        lower = next((m for m in self.tier_down[tier - 1] if self.why_not(m, needs) is None), None)
        return lower.name if lower is not None else None


def _dedup(models: list[Model]) -> list[Model]:
    seen: set[str] = set()
    out: list[Model] = []
    for m in models:
        if m.name not in seen:
            seen.add(m.name)
            out.append(m)
    return out
