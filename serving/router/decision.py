"""What the router decided and why: the `Decision`, its typed trace steps, and the router's errors.

Job: a decision is a value (model, ordered fallbacks, which dimension decided, a human reason)
plus a trace: one typed step per dimension that had a say (rule, classifier, capability /
context / SLA filter, budget, cooldown, cascade; then, when executed, gate and execution). Every
step serialises with `to_dict()` so the CLI, HTTP headers, logs and tests read the same thing.

Trade-off: steps are small frozen dataclasses with `__slots__` rather than pydantic models: the
decision path builds several per request and has a budget of tens of microseconds.
Errors carry the trace too, so "every provider down" or "budget exhausted" says what was tried.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Step:
    kind: ClassVar[str] = "step"

    def to_dict(self) -> dict[str, Any]:
        out = {"step": self.kind}
        out.update(asdict(self))
        return out


@dataclass(frozen=True, slots=True)
class ExplicitRoute(Step):
    kind: ClassVar[str] = "explicit"
    route: str
    route_kind: str


@dataclass(frozen=True, slots=True)
class RuleMatched(Step):
    kind: ClassVar[str] = "rule"
    rule_id: str
    target: str


@dataclass(frozen=True, slots=True)
class DefaultUsed(Step):
    kind: ClassVar[str] = "default"
    target: str


@dataclass(frozen=True, slots=True)
class ClassifierConsulted(Step):
    """status: ok | timeout | unavailable | bad_response | garbage | low_confidence | not_configured."""

    kind: ClassVar[str] = "classifier"
    rule_id: str
    status: str
    tier: str | None = None
    task: str | None = None
    confidence: float | None = None
    latency_ms: float | None = None
    tokens: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ModelFiltered(Step):
    """The wanted model could not serve the request; `dimension` is the first reason."""

    kind: ClassVar[str] = "filter"
    dimension: str
    wanted: str
    chosen: str
    excluded: dict[str, str]


@dataclass(frozen=True, slots=True)
class BudgetApplied(Step):
    """state: ok | degraded | exhausted; action: none | downgrade | critical_pass | cheapest | reject."""

    kind: ClassVar[str] = "budget"
    state: str
    spent_usd: float
    limit_usd: float
    action: str
    from_model: str | None = None
    to_model: str | None = None


@dataclass(frozen=True, slots=True)
class CooldownApplied(Step):
    kind: ClassVar[str] = "cooldown"
    model: str
    chosen: str
    cooling: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CascadePlanned(Step):
    kind: ClassVar[str] = "cascade"
    name: str
    stage1: str
    stage2: str
    skip_stage1: bool
    fallback_rate: float | None
    alarm: bool
    probe: bool = False


@dataclass(frozen=True, slots=True)
class GateChecked(Step):
    """learned: ok | unavailable | not_configured."""

    kind: ClassVar[str] = "gate"
    ok: bool
    reasons: tuple[str, ...]
    learned: str
    p_acceptable: float | None
    escalated: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Executed(Step):
    kind: ClassVar[str] = "executed"
    requested: str
    answered_by: str | None
    provider: str | None
    cost_usd: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    fallback_used: bool


@dataclass(frozen=True, slots=True)
class ExecutionFailed(Step):
    kind: ClassVar[str] = "failed"
    requested: str
    error: str
    message: str


@dataclass(frozen=True, slots=True)
class CascadeSpec:
    name: str
    stage1: str
    stage2: str
    stage2_fallbacks: tuple[str, ...] = ()


@dataclass(slots=True)
class Decision:
    model: str
    """Policy model name = LiteLLM model group to call (stage 1 for a cascade)."""
    litellm_model: str
    fallbacks: list[str]
    """Ordered: the same model on other providers (429), then equivalents (5xx/timeout)."""
    decided_by: str
    """rule | classifier | default | explicit, or the dimension that overrode it last:
    capability | context | sla | critical_only | budget | cooldown | cascade_alarm."""
    reason: str
    tier: str
    trace: list[Step]
    rule_id: str | None = None
    cascade: CascadeSpec | None = None
    classifier_latency_ms: float | None = None
    server_error_fallbacks: list[str] = field(default_factory=list)
    required_capabilities: tuple[str, ...] = ()
    decide_us: float = 0.0
    classified: Any = None
    """(model ref, result) of the classifier's answer when it decided; read by the outcome log."""
    request_id: str = ""
    """Set when the request is executed: the id of its outcome-log record (`x-tierroute-request-id`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "litellm_model": self.litellm_model,
            "fallbacks": list(self.fallbacks),
            "decided_by": self.decided_by,
            "reason": self.reason,
            "tier": self.tier,
            "rule_id": self.rule_id,
            "cascade": asdict(self.cascade) if self.cascade else None,
            "classifier_latency_ms": self.classifier_latency_ms,
            "required_capabilities": list(self.required_capabilities),
            "decide_us": round(self.decide_us, 1),
            "request_id": self.request_id or None,
            "trace": [s.to_dict() for s in self.trace],
        }


class RouterError(Exception):
    """Base of the router's errors; `trace` says what was decided and tried."""

    def __init__(
        self, message: str, trace: list[Step] | None = None, decision: Decision | None = None
    ) -> None:
        super().__init__(message)
        self.trace: list[Step] = list(trace or (decision.trace if decision else []))
        self.decision = decision

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": str(self),
            "trace": [s.to_dict() for s in self.trace],
        }


class UnknownRoute(RouterError):
    """The caller asked for a route name the policy does not define."""


class InvalidRequest(RouterError):
    """The request itself is wrong: a field of the wrong type, a transport field a caller may not set,
    something the policy does not have (an SLA class, ...)."""


class NoEligibleModel(RouterError):
    """No model satisfies the request's capabilities, context length and SLA."""


class BudgetExceeded(RouterError):
    """The daily budget is spent and the policy rejects non-critical requests."""


class AllProvidersFailed(RouterError):
    """The chosen model and every fallback failed (LiteLLM's retries and fallbacks exhausted)."""
