"""Cross-reference checks of a policy whose shapes are valid: names that must exist, clashes, loops.

Job: `check_references(policy)` returns every problem as (location, message), one per line of
the eventual `PolicyError`: unknown models/cascades/tiers/SLA classes (with a did-you-mean),
duplicate or clashing names, unpriced models, self-failover, bad cascade gates. One function
per policy section.
"""

from __future__ import annotations

import difflib
import typing

from serving.router import prices
from serving.router.policy_schema import AUTO_ROUTE, ROUTE_NAME, TIERS, Policy, Target

Problems = list[tuple[tuple[str | int, ...], str]]


def check_references(p: Policy) -> Problems:
    """Every cross-reference problem of `p`, section by section."""
    return [
        *_check_models(p),
        *_check_rules(p),
        *_check_classifier(p),
        *_check_failover(p),
        *_check_cascades(p),
    ]


def _need_model(p: Policy, errs: Problems, loc: tuple[str | int, ...], name: str | None) -> None:
    if name is not None and name not in p.models:
        errs.append((loc, f"unknown model {name!r}{suggest(name, p.models)}"))


def _check_models(p: Policy) -> Problems:
    errs: Problems = []
    models = p.models
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
    return errs


def _check_rules(p: Policy) -> Problems:
    errs: Problems = []
    models = p.models
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
                        ((*loc, "sla"), f"unknown SLA class {sla!r}{suggest(sla, p.latency_sla.classes)}")
                    )
    if p.default.classifier:
        errs.append(
            (("default",), "the default cannot be 'classifier': it is what decides when the classifier can't")
        )
    errs.extend(_check_target(p, ("default",), p.default))
    return errs


def _check_classifier(p: Policy) -> Problems:
    errs: Problems = []

    if p.classifier is not None:
        for tier, name in p.classifier.tier_models.items():
            if name not in p.models and name not in p.cascades:
                options = [*p.models, *p.cascades]
                errs.append(
                    (
                        ("classifier", "tier_models", tier),
                        f"unknown model or cascade {name!r}{suggest(name, options)}",
                    )
                )
    if p.latency_sla.default not in p.latency_sla.classes:
        errs.append((("latency_sla", "default"), f"unknown SLA class {p.latency_sla.default!r}"))
    return errs


def _check_failover(p: Policy) -> Problems:
    errs: Problems = []

    for name, fo in p.failover.models.items():
        _need_model(p, errs, ("failover", "models", name), name)
        for kind in ("rate_limited", "server_error"):
            for k, other in enumerate(getattr(fo, kind)):
                _need_model(p, errs, ("failover", "models", name, kind, k), other)
                if other == name:
                    errs.append((("failover", "models", name, kind, k), "a model cannot fail over to itself"))
    return errs


def _check_cascades(p: Policy) -> Problems:
    errs: Problems = []

    for cname, cascade in p.cascades.items():
        if not ROUTE_NAME.match(cname):
            errs.append((("cascades", cname), "cascade names may use letters, digits and . _ : @ - only"))
        _need_model(p, errs, ("cascades", cname, "stage1"), cascade.stage1)
        _need_model(p, errs, ("cascades", cname, "stage2"), cascade.stage2)
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


def _check_target(p: Policy, loc: tuple[str | int, ...], t: Target) -> Problems:
    errs: Problems = []
    if t.model is not None and t.model not in p.models:
        errs.append(((*loc, "model"), f"unknown model {t.model!r}{suggest(t.model, p.models)}"))
    if t.cascade is not None and t.cascade not in p.cascades:
        errs.append(((*loc, "cascade"), f"unknown cascade {t.cascade!r}{suggest(t.cascade, p.cascades)}"))
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


def suggest(name: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
