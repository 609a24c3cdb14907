"""Policy -> LiteLLM Router configuration (`model_list`, `router_settings`, `fallbacks`).

Job: express the policy's failover in LiteLLM's own terms, so LiteLLM's Router does the retries,
fallbacks and cooldowns and we do not rewrite them. The mapping, checked against LiteLLM 1.110
with a fake provider (tests/router/test_execute.py):

- Every policy model is a LiteLLM model group of the same name, whose first deployment is the
  model itself (weight 1).
- `failover.models.M.rate_limited` (the same model on another provider) become extra
  deployments of group M with weight 0: simple-shuffle never picks them while the primary is
  healthy; a 429 cools the primary down (`allowed_fails`, `cooldown_time`) and LiteLLM's retry
  (`RateLimitErrorRetries`) lands on the alternate.
- `failover.models.M.server_error` (equivalent models elsewhere) become LiteLLM `fallbacks` for
  group M, flattened transitively. `InternalServerErrorRetries` / `ServiceUnavailableErrorRetries`
  / `TimeoutErrorRetries` default to 0, so a 5xx or timeout goes straight to the equivalent.
  (We do not use deployment `order`: LiteLLM then moves to the next order on a 5xx too, which
  would send a 5xx to the same model on Bedrock instead of the other provider's equivalent.)
- Per-model price overrides are written as `input_cost_per_token` / `output_cost_per_token` on
  the deployments, so LiteLLM's own cost tracking agrees with the ledger.

`to_litellm_yaml` adds an `auto_router/complexity_router` deployment whose custom classifier is
our plug-in (`serving.router.litellm_hook.classifier_plugin`), for LiteLLM proxy users.
"""

from __future__ import annotations

from typing import Any

import yaml

from serving.router.policy import TIERS, ModelFailover, Policy

DEPLOYMENT_SEP = "::"
AUTO_GROUP = "tierroute-auto"
PLUGIN_PATH = "serving.router.litellm_hook.classifier_plugin"
LITELLM_TIERS = {"simple": "SIMPLE", "complex": "COMPLEX", "reasoning": "REASONING"}


def deployment_id(group: str, model: str) -> str:
    return f"{group}{DEPLOYMENT_SEP}{model}"


def model_of_deployment(deployment: str | None) -> str | None:
    """'sonnet::sonnet-bedrock' -> 'sonnet-bedrock' (the policy model that actually answered)."""
    if not deployment or DEPLOYMENT_SEP not in deployment:
        return None
    return deployment.split(DEPLOYMENT_SEP, 1)[1]


def server_error_chain(policy: Policy, model: str, limit: int = 5) -> list[str]:
    """Equivalents for a 5xx, flattened breadth-first over the equivalents' own equivalents."""
    out: list[str] = []
    queue = list(policy.failover.models.get(model, _EMPTY).server_error)
    while queue and len(out) < limit:
        nxt = queue.pop(0)
        if nxt == model or nxt in out:
            continue
        out.append(nxt)
        queue.extend(policy.failover.models.get(nxt, _EMPTY).server_error)
    return out


_EMPTY = ModelFailover()


def _deployment(policy: Policy, group: str, model: str, weight: float | None) -> dict[str, Any]:
    spec = policy.models[model]
    params: dict[str, Any] = {"model": spec.litellm_model, **spec.litellm_params}
    if spec.price is not None:
        params["input_cost_per_token"] = spec.price.input_per_mtok / 1e6
        params["output_cost_per_token"] = spec.price.output_per_mtok / 1e6
    if weight is not None:
        params["weight"] = weight
    return {
        "model_name": group,
        "litellm_params": params,
        "model_info": {
            "id": deployment_id(group, model),
            "tierroute_model": model,
            "provider": spec.provider,
        },
    }


def model_list(policy: Policy) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in policy.models:
        alternates = list(policy.failover.models.get(name, _EMPTY).rate_limited)
        out.append(_deployment(policy, name, name, 1 if alternates else None))
        out.extend(_deployment(policy, name, alt, 0) for alt in alternates)
    return out


def fallbacks(policy: Policy) -> list[dict[str, list[str]]]:
    return [{name: chain} for name in policy.models if (chain := server_error_chain(policy, name))]


def router_settings(policy: Policy) -> dict[str, Any]:
    fo = policy.failover
    return {
        "routing_strategy": "simple-shuffle",
        "num_retries": fo.retries,
        "retry_policy": {
            "RateLimitErrorRetries": fo.retries,
            "InternalServerErrorRetries": fo.server_error_retries,
            "ServiceUnavailableErrorRetries": fo.server_error_retries,
            "TimeoutErrorRetries": fo.server_error_retries,
            "DefaultRetries": fo.server_error_retries,
        },
        "allowed_fails": fo.allowed_fails,
        "cooldown_time": fo.cooldown_seconds,
        "timeout": fo.timeout_seconds,
        "fallbacks": fallbacks(policy),
    }


def router_kwargs(policy: Policy) -> dict[str, Any]:
    """Keyword arguments for `litellm.Router(...)`."""
    from litellm.types.router import RetryPolicy

    settings = router_settings(policy)
    settings["retry_policy"] = RetryPolicy(**settings["retry_policy"])
    return {"model_list": model_list(policy), **settings}


def auto_router_deployment(policy: Policy) -> dict[str, Any] | None:
    """A LiteLLM complexity-router deployment that asks our classifier for the tier."""
    if policy.classifier is None:
        return None
    tier_models: dict[str, str] = {str(k): v for k, v in policy.classifier.tier_models.items()}
    for tier, name in list(tier_models.items()):
        if name in policy.cascades:  # LiteLLM has no cascade: its stage-1 model is the closest group
            tier_models[tier] = policy.cascades[name].stage1
    for tier in TIERS:  # a tier without a preferred model -> its cheapest model
        if tier not in tier_models:
            candidates = sorted(
                (n for n, m in policy.models.items() if m.tier == tier),
                key=lambda n: sum(policy.model_price(n)),
            )
            if candidates:
                tier_models[tier] = candidates[0]
    default_model = policy.default.model or tier_models.get(policy.default.tier or "complex")
    if policy.default.cascade is not None:
        default_model = policy.cascades[policy.default.cascade].stage1
    tiers = {LITELLM_TIERS[t]: m for t, m in tier_models.items()}
    if "COMPLEX" in tiers:
        tiers.setdefault(
            "MEDIUM", tiers["COMPLEX"]
        )  # our classifier never says MEDIUM; LiteLLM's fallback might
    config: dict[str, Any] = {
        "classifier_type": "custom",
        "classifier_plugin": PLUGIN_PATH,
        "classifier_plugin_timeout_ms": max(1, round(policy.classifier.timeout_ms)),
        "classifier_fallback": "default_model",
        "tiers": tiers,
    }
    if default_model:
        config["default_model"] = default_model
    return {
        "model_name": AUTO_GROUP,
        "litellm_params": {
            "model": "auto_router/complexity_router",
            "complexity_router_config": config,
            **({"complexity_router_default_model": default_model} if default_model else {}),
        },
    }


def to_litellm_config(policy: Policy, *, include_auto_router: bool = True) -> dict[str, Any]:
    models = model_list(policy)
    auto = auto_router_deployment(policy) if include_auto_router else None
    if auto is not None:
        models.append(auto)
    return {"model_list": models, "router_settings": router_settings(policy)}


def to_litellm_yaml(policy: Policy, source: str = "") -> str:
    header = [
        f"# LiteLLM config generated by `tierroute policy to-litellm {source}`".rstrip(),
        "# Failover: same-model alternates are weight-0 deployments of a group (used on 429 once the",
        "# primary cools down); equivalents on other providers are `fallbacks` (used on 5xx/timeout).",
    ]
    if policy.classifier is not None:
        header += [
            f"# `{AUTO_GROUP}` asks the tierroute classifier for the tier (LiteLLM's complexity router,",
            "# classifier_type: custom). Set TIERROUTE_CLASSIFIER_URL (or TIERROUTE_CLASSIFIER_BUNDLE),",
            "# TIERROUTE_CLASSIFIER_TIMEOUT_MS and TIERROUTE_MIN_CONFIDENCE where the proxy runs, and make",
            "# the `serving` package importable. Rules, SLA classes, budget and cascades stay in tierroute.",
        ]
    body = yaml.safe_dump(to_litellm_config(policy), sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body
