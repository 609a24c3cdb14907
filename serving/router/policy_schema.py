"""The routing policy's schema: what a policy may say, as strict pydantic models.

Job: the shapes of models, ordered rules, classifier settings, latency SLA classes, budget,
failover and cascades, with the field-level checks pydantic can do alone. Cross-references
(a rule naming a model that does not exist) are `serving.router.policy_checks`; reading YAML and
formatting errors is `serving.router.policy` / `policy_errors`.

Trade-offs:
- Models are strict (`extra="forbid"`): a misspelt key is an error with a did-you-mean, not a
  silently ignored setting. The cost is that a policy written for a newer version fails on an
  older one; `version: 1` makes that explicit.
- Tiers are fixed to the classifier's labels (simple < complex < reasoning); a policy cannot
  invent tiers, which keeps "drop one tier" well defined.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.router import prices
from serving.router.regex import check_pattern

TIERS: tuple[str, ...] = ("simple", "complex", "reasoning")
"""Cheapest to strongest; must match the classifier's tier labels."""

CAPABILITIES: tuple[str, ...] = ("code", "vision", "json", "long_context", "tools")
ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
AUTO_ROUTE = "auto"

Tier = Literal["simple", "complex", "reasoning"]
Capability = Literal["code", "vision", "json", "long_context", "tools"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """USD per million tokens; overrides LiteLLM's cost map for this model."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class ModelSpec(_Strict):
    litellm_model: str = Field(
        min_length=1, description="LiteLLM model string, e.g. anthropic/claude-haiku-4-5"
    )
    provider: str = Field(min_length=1)
    tier: Tier
    capabilities: list[Capability] = Field(default_factory=list)
    context_window: int | None = Field(default=None, gt=0, description="input tokens; default: cost map")
    latency_ms: int = Field(
        default=2000, gt=0, description="typical p95 time to a full answer, for SLA classes"
    )
    critical_only: bool = Field(default=False, description="only requests marked critical may use this model")
    price: Price | None = None
    litellm_params: dict[str, Any] = Field(
        default_factory=dict, description="extra LiteLLM deployment params (api_base, api_key, ...)"
    )


class Match(_Strict):
    """All given conditions must hold. Token counts are estimates (characters / 4)."""

    tokens_lt: int | None = Field(default=None, gt=0, description="latest user message shorter than N tokens")
    tokens_gte: int | None = Field(default=None, ge=0)
    context_tokens_gt: int | None = Field(default=None, ge=0, description="whole conversation longer than N")
    context_tokens_lte: int | None = Field(default=None, gt=0)
    use_case: str | list[str] | None = None
    system_prompt_regex: str | None = Field(
        default=None, description="RE2 regex searched in the system prompt (head and tail, 4096 chars each)"
    )
    prompt_regex: str | None = Field(
        default=None,
        description="RE2 regex searched in the latest user message (head and tail, 4096 chars each)",
    )
    metadata: dict[str, bool | int | float | str] = Field(default_factory=dict)
    sla: str | list[str] | None = None
    critical: bool | None = None

    @field_validator("system_prompt_regex", "prompt_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return check_pattern(value) if value is not None else None


class Target(_Strict):
    """Where a rule sends a request: exactly one of model, tier, cascade, classifier."""

    model: str | None = None
    tier: Tier | None = None
    cascade: str | None = None
    classifier: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data == "classifier":
            return {"classifier": True}
        if isinstance(data, str):
            raise ValueError(
                "a route is 'classifier' or a mapping with one of model, tier, cascade "
                f"(got the string {data!r}; did you mean {{model: {data}}}?)"
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        given = [k for k in ("model", "tier", "cascade") if getattr(self, k) is not None]
        if self.classifier:
            given.append("classifier")
        if len(given) != 1:
            raise ValueError(f"give exactly one of model, tier, cascade, classifier (got {given or 'none'})")
        return self

    @property
    def kind(self) -> str:
        if self.classifier:
            return "classifier"
        if self.model is not None:
            return "model"
        if self.tier is not None:
            return "tier"
        return "cascade"

    def describe(self) -> str:
        if self.classifier:
            return "classifier"
        return f"{self.kind} {self.model or self.tier or self.cascade}"


class Rule(_Strict):
    id: str = Field(min_length=1)
    description: str = ""
    when: Match = Field(default_factory=Match)
    any: list[Match] = Field(
        default_factory=list, description="at least one must hold (OR), on top of `when`"
    )
    route: Target
    require: list[Capability] = Field(default_factory=list, description="capabilities the model must have")


def _default_task_capabilities() -> dict[str, list[Capability]]:
    return {"code": ["code"]}


DEFAULT_INPROCESS_TIMEOUT_MS = 25.0
"""In-process classifier deadline: leaves ~5 ms of a 30 ms decision budget to the rest of `decide()`."""


class ClassifierSettings(_Strict):
    url: str | None = Field(default=None, description="classify service base URL")
    bundle: str | None = Field(default=None, description="local bundle folder, run in process")
    timeout_ms: float = Field(
        default=450.0,
        gt=0,
        description="deadline for a remote classifier's answer (`url`; in-process backends use "
        "`inprocess_timeout_ms`); the default is the p99 of an in-process decision at ~900 tokens "
        "measured on a busy 2-core box before batching (`tierroute bench router --bundle`)",
    )
    inprocess_timeout_ms: float = Field(
        default=DEFAULT_INPROCESS_TIMEOUT_MS,
        gt=0,
        description="deadline for an in-process classifier (`bundle`, or the served model inside "
        "`tierroute serve`): concurrent decisions are batched into one ONNX call, and a text that cannot "
        "be answered in time is dropped or aborted, so the rules decide within it; the default keeps a "
        "decision inside 30 ms (evals/RESULTS.md 'Router inside its deadline', "
        "`tierroute bench router --bundle`)",
    )
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    use_calibrated_threshold: bool = Field(
        default=True,
        description="when the served bundle carries a calibrated routing threshold (tierroute calibrate), "
        "complexity >= threshold goes to a strong tier (the predicted one, at least complex) and the rest "
        "to simple; otherwise the predicted tier is used as is",
    )
    api_key_env: str | None = Field(default=None, description="env var holding the service API key")
    tier_models: dict[Tier, str] = Field(
        default_factory=dict, description="preferred model (or cascade) per tier"
    )
    task_capabilities: dict[str, list[Capability]] = Field(default_factory=_default_task_capabilities)

    @model_validator(mode="after")
    def _one_source(self) -> ClassifierSettings:
        if (self.url is None) == (self.bundle is None):
            raise ValueError("give exactly one of url, bundle")
        return self


class SlaClass(_Strict):
    max_latency_ms: int | None = Field(default=None, gt=0, description="exclude models slower than this")


def _default_sla_classes() -> dict[str, SlaClass]:
    return {"interactive": SlaClass(max_latency_ms=5000), "batch": SlaClass()}


class LatencySla(_Strict):
    default: str = "interactive"
    classes: dict[str, SlaClass] = Field(default_factory=_default_sla_classes)


class Budget(_Strict):
    daily_usd: float = Field(gt=0)
    downgrade_at: float = Field(default=0.8, gt=0, le=1, description="share of the ceiling: drop one tier")
    on_exhausted: Literal["reject", "cheapest"] = "reject"
    ledger: str = Field(default=".cache/tierroute/ledger.sqlite", description="SQLite file shared by workers")
    refresh_seconds: float = Field(default=1.0, ge=0, description="how stale another worker's spend may be")


class ModelFailover(_Strict):
    rate_limited: list[str] = Field(
        default_factory=list, description="429: the same model on another provider"
    )
    server_error: list[str] = Field(
        default_factory=list, description="5xx/timeout: equivalent models elsewhere"
    )


class Failover(_Strict):
    retries: int = Field(default=2, ge=0, description="retries on 429 inside a model group")
    server_error_retries: int = Field(default=0, ge=0, description="retries on 5xx before the equivalents")
    allowed_fails: int = Field(default=0, ge=0, description="failures per minute before a cooldown")
    cooldown_seconds: float = Field(default=30.0, ge=0)
    timeout_seconds: float = Field(default=60.0, gt=0)
    models: dict[str, ModelFailover] = Field(default_factory=dict)


class LearnedGate(_Strict):
    url: str
    threshold: float = Field(default=0.5, ge=0, le=1)
    timeout_ms: float = Field(default=50.0, gt=0)
    api_key_env: str | None = None


class GateSettings(_Strict):
    min_chars: int | None = Field(default=None, ge=0)
    expect_json: bool = False
    json_schema: dict[str, Any] | None = None
    learned: LearnedGate | None = None


class CascadeAlarm(_Strict):
    window: int = Field(default=50, ge=1, description="rolling window of stage-1 outcomes")
    min_samples: int = Field(default=20, ge=1)
    threshold: float = Field(default=0.4, gt=0, le=1, description="fallback rate that raises the alarm")
    auto_skip_stage1: bool = Field(
        default=False, description="while alarmed, send traffic straight to stage 2"
    )
    probe_every: int = Field(
        default=10, ge=1, description="while skipping, every Nth request still tries stage 1"
    )


class Cascade(_Strict):
    stage1: str
    stage2: str
    gate: GateSettings = Field(default_factory=GateSettings)
    alarm: CascadeAlarm = Field(default_factory=CascadeAlarm)


class Policy(_Strict):
    version: Literal[1] = 1
    name: str = "policy"
    description: str = ""
    models: dict[str, ModelSpec] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    default: Target
    classifier: ClassifierSettings | None = None
    latency_sla: LatencySla = Field(default_factory=LatencySla)
    budget: Budget | None = None
    failover: Failover = Field(default_factory=Failover)
    cascades: dict[str, Cascade] = Field(default_factory=dict)

    def model_price(self, name: str) -> tuple[float, float]:
        """(input, output) USD per token: the override, else the cost map."""
        spec = self.models[name]
        if spec.price is not None:
            return spec.price.input_per_mtok / 1e6, spec.price.output_per_mtok / 1e6
        entry = prices.lookup(spec.litellm_model) or {}
        return float(entry.get("input_cost_per_token") or 0.0), float(
            entry.get("output_cost_per_token") or 0.0
        )

    def model_context_window(self, name: str) -> int:
        spec = self.models[name]
        if spec.context_window is not None:
            return spec.context_window
        entry = prices.lookup(spec.litellm_model) or {}
        return int(entry.get("max_input_tokens") or entry.get("max_tokens") or 0)

    def route_names(self) -> dict[str, str]:
        """Every name a caller may ask for instead of `auto`, with what it is."""
        names = {AUTO_ROUTE: "decide"}
        names.update({t: "tier" for t in TIERS})
        names.update({m: "model" for m in self.models})
        names.update({c: "cascade" for c in self.cascades})
        names.update({r.id: "rule" for r in self.rules})
        return names


# ---------------------------------------------------------------------------------------------
# cross-reference checks (after the shapes are valid)
