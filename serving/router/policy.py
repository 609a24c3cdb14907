"""The routing policy: one YAML file, validated on load, with errors that name the bad field.

Job: define what a policy may say (models, ordered rules, classifier settings, latency SLA
classes, budget, failover, cascades) as pydantic models, load a YAML file into them, and
cross-check references (a rule naming a model that does not exist, a tier no model serves, a
model without a price). Every problem is reported at once, one line each, as
`path (line N): message`, e.g. `models.haiku.tier (line 7): expected one of simple, complex,
reasoning`.

Trade-offs:
- Models are strict (`extra="forbid"`): a misspelt key is an error with a did-you-mean, not a
  silently ignored setting. The cost is that a policy written for a newer version fails on an
  older one; `version: 1` makes that explicit.
- Prices and context windows default to LiteLLM's bundled cost map, so a model the map does not
  know must carry `price` and `context_window` in the policy; the loader refuses it otherwise,
  because a budget that cannot price a model cannot enforce anything.
- Tiers are fixed to the classifier's labels (simple < complex < reasoning); a policy cannot
  invent tiers, which keeps "drop one tier" well defined.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serving.router import prices

TIERS: tuple[str, ...] = ("simple", "complex", "reasoning")
"""Cheapest to strongest; must match the classifier's tier labels."""

CAPABILITIES: tuple[str, ...] = ("code", "vision", "json", "long_context", "tools")
ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
AUTO_ROUTE = "auto"

Tier = Literal["simple", "complex", "reasoning"]
Capability = Literal["code", "vision", "json", "long_context", "tools"]


class PolicyError(ValueError):
    """A policy that cannot be used; `errors` holds one `path: message` line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"invalid policy {source}: {len(errors)} problem(s)\n{lines}")


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
    system_prompt_regex: str | None = None
    metadata: dict[str, bool | int | float | str] = Field(default_factory=dict)
    sla: str | list[str] | None = None
    critical: bool | None = None

    @field_validator("system_prompt_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


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


class ClassifierSettings(_Strict):
    url: str | None = Field(default=None, description="classify service base URL")
    bundle: str | None = Field(default=None, description="local bundle folder, run in process")
    timeout_ms: float = Field(default=30.0, gt=0)
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


def _check_references(p: Policy) -> list[tuple[tuple[str | int, ...], str]]:
    errs: list[tuple[tuple[str | int, ...], str]] = []
    models = p.models

    def need_model(loc: tuple[str | int, ...], name: str | None) -> None:
        if name is not None and name not in models:
            errs.append((loc, f"unknown model {name!r}{_suggest(name, models)}"))

    for name, spec in models.items():
        if not ROUTE_NAME.match(name):
            errs.append((("models", name), "model names may use letters, digits and . _ : @ - only"))
        if name in TIERS or name == AUTO_ROUTE:
            errs.append(
                (("models", name), f"{name!r} is reserved (a tier or 'auto'); pick another model name")
            )
        if spec.price is None and prices.lookup(spec.litellm_model) is None:
            errs.append(
                (
                    ("models", name, "price"),
                    f"{spec.litellm_model!r} is not in LiteLLM's bundled cost map; "
                    "set price: {input_per_mtok: ..., output_per_mtok: ...}",
                )
            )
        if (
            spec.context_window is None
            and spec.price is not None
            and prices.lookup(spec.litellm_model) is None
        ):
            errs.append(
                (("models", name, "context_window"), "not in the cost map either; set context_window")
            )

    seen_ids: dict[str, int] = {}
    taken = set(models) | set(p.cascades) | set(TIERS) | {AUTO_ROUTE}
    for i, rule in enumerate(p.rules):
        if rule.id in seen_ids:
            errs.append(
                (("rules", i, "id"), f"duplicate rule id {rule.id!r} (also rules[{seen_ids[rule.id]}])")
            )
        seen_ids.setdefault(rule.id, i)
        if rule.id in taken:
            errs.append(
                (("rules", i, "id"), f"rule id {rule.id!r} clashes with a model, cascade or tier name")
            )
        errs.extend(_check_target(p, ("rules", i, "route"), rule.route))
        for j, m in enumerate([rule.when, *rule.any]):
            loc: tuple[str | int, ...] = ("rules", i, "when") if j == 0 else ("rules", i, "any", j - 1)
            for sla in _as_list(m.sla):
                if sla not in p.latency_sla.classes:
                    errs.append(
                        ((*loc, "sla"), f"unknown SLA class {sla!r}{_suggest(sla, p.latency_sla.classes)}")
                    )
    if p.default.classifier:
        errs.append(
            (("default",), "the default cannot be 'classifier': it is what decides when the classifier can't")
        )
    errs.extend(_check_target(p, ("default",), p.default))

    if p.classifier is not None:
        for tier, name in p.classifier.tier_models.items():
            if name not in p.models and name not in p.cascades:
                options = [*p.models, *p.cascades]
                errs.append(
                    (
                        ("classifier", "tier_models", tier),
                        f"unknown model or cascade {name!r}{_suggest(name, options)}",
                    )
                )
    if p.latency_sla.default not in p.latency_sla.classes:
        errs.append((("latency_sla", "default"), f"unknown SLA class {p.latency_sla.default!r}"))

    for name, fo in p.failover.models.items():
        need_model(("failover", "models", name), name)
        for kind in ("rate_limited", "server_error"):
            for k, other in enumerate(getattr(fo, kind)):
                need_model(("failover", "models", name, kind, k), other)
                if other == name:
                    errs.append((("failover", "models", name, kind, k), "a model cannot fail over to itself"))

    for cname, cascade in p.cascades.items():
        if not ROUTE_NAME.match(cname):
            errs.append((("cascades", cname), "cascade names may use letters, digits and . _ : @ - only"))
        need_model(("cascades", cname, "stage1"), cascade.stage1)
        need_model(("cascades", cname, "stage2"), cascade.stage2)
        if cascade.stage1 == cascade.stage2:
            errs.append((("cascades", cname, "stage2"), "stage2 must differ from stage1"))
        if cascade.gate.json_schema is not None:
            from serving.gate.checks import InvalidSchemaError, validate_schema

            try:
                validate_schema(cascade.gate.json_schema)
            except InvalidSchemaError as exc:
                errs.append((("cascades", cname, "gate", "json_schema"), f"not a valid JSON Schema: {exc}"))
        if cascade.alarm.min_samples > cascade.alarm.window:
            errs.append((("cascades", cname, "alarm", "min_samples"), "cannot exceed the window"))
    return errs


def _check_target(
    p: Policy, loc: tuple[str | int, ...], t: Target
) -> list[tuple[tuple[str | int, ...], str]]:
    errs: list[tuple[tuple[str | int, ...], str]] = []
    if t.model is not None and t.model not in p.models:
        errs.append(((*loc, "model"), f"unknown model {t.model!r}{_suggest(t.model, p.models)}"))
    if t.cascade is not None and t.cascade not in p.cascades:
        errs.append(((*loc, "cascade"), f"unknown cascade {t.cascade!r}{_suggest(t.cascade, p.cascades)}"))
    if t.tier is not None:
        preferred = p.classifier.tier_models if p.classifier else {}
        if t.tier not in preferred and not any(m.tier == t.tier for m in p.models.values()):
            errs.append(((*loc, "tier"), f"no model has tier {t.tier!r}"))
    if t.classifier and p.classifier is None:
        errs.append((loc, "routes to the classifier, but the policy has no classifier section"))
    return errs


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _suggest(name: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------------------------------------
# loading + error formatting


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raise PolicyError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<string>") -> Policy:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise PolicyError(source, [f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from exc
    if not isinstance(data, dict):
        raise PolicyError(source, ["the policy must be a YAML mapping with at least models and default"])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, [_format_pydantic(err, root) for err in exc.errors()]) from exc
    problems = _check_references(policy)
    if problems:
        raise PolicyError(source, [_with_line(loc, msg, root) for loc, msg in problems])
    return policy


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def _line_of(loc: tuple[str | int, ...], root: yaml.Node | None) -> int | None:
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def _with_line(loc: tuple[str | int, ...], msg: str, root: yaml.Node | None) -> str:
    line = _line_of(loc, root)
    return f"{_dotted(loc)}{f' (line {line})' if line else ''}: {msg}"


def _format_pydantic(err: Any, root: yaml.Node | None) -> str:
    loc = tuple(p for p in err.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-")))
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", ""))) or [str(ctx.get("expected"))]
        msg = f"expected one of {', '.join(expected)} (got {err.get('input')!r})"
    elif kind == "missing":
        msg = "required field is missing"
    elif kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1])
        hint = _suggest(str(loc[-1]), allowed) if allowed else ""
        listing = " (allowed: " + ", ".join(sorted(allowed)) + ")" if allowed else ""
        msg = "unknown field" + (hint or listing)
    elif kind == "value_error":
        msg = str(ctx.get("error") or err.get("msg", "")).removeprefix("Value error, ")
    else:
        raw = str(err.get("msg", ""))
        msg = raw[:1].lower() + raw[1:] + (f" (got {err.get('input')!r})" if "input" in err else "")
    return _with_line(loc, msg, root)


def _allowed_fields(loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model at `loc`, walking Policy's annotations (dict keys / list indexes skipped)."""
    annotation: Any = Policy
    parts = list(loc)
    while True:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not parts:
                return list(annotation.model_fields)
            field = annotation.model_fields.get(str(parts.pop(0)))
            if field is None:
                return []
            annotation = field.annotation
        elif origin is dict and parts:
            parts.pop(0)
            annotation = get_args(annotation)[1]
        elif origin is list and parts:
            parts.pop(0)
            annotation = get_args(annotation)[0]
        else:
            return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / X | None -> X."""
    origin = get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
        if len(args) == 1:
            return args[0]
    return annotation
