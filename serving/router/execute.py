"""Execution through LiteLLM's Router: one call with LiteLLM's retries, fallbacks and cooldowns.

Job: build a `litellm.Router` from the policy (see `litellm_config`), call a model group with the
decision's fallbacks, work out which policy model actually answered (from the deployment id) and
what it cost, and read LiteLLM's cooldown state for the decision path. Nothing here retries or
falls back by itself: that is LiteLLM's job, configured from the policy.

Trade-offs: `import litellm` takes ~3 s, so the executor is built on first use (or by
`Router.warm()` at service start), never for `decide()` alone. Provider errors a different
provider would not fix (400 / 401 / 403 / 404 / 422) become `ProviderRejected`; everything else
that survives LiteLLM's fallbacks becomes `AllProvidersFailed`. Both carry the decision's trace.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from serving.router import prices
from serving.router.budget import cost_of_response, usage_of
from serving.router.decision import AllProvidersFailed, RouterError
from serving.router.litellm_config import model_of_deployment, router_kwargs
from serving.router.policy import Policy

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CLIENT_ERRORS = (400, 401, 403, 404, 422)
COOLDOWN_VIEW_TTL_S = 0.25


class ProviderRejected(RouterError):
    """The provider refused the request itself (bad parameters, auth): another provider would too."""


@dataclass(frozen=True, slots=True)
class CallResult:
    response: Any
    requested: str
    answered_by: str
    provider: str | None
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int


class Executor:
    def __init__(self, policy: Policy, litellm_router: Any | None = None) -> None:
        import litellm

        litellm.suppress_debug_info = True
        self.policy = policy
        if litellm_router is None:
            litellm_router = litellm.Router(**router_kwargs(policy))
        self.router = litellm_router
        self._group_ids: dict[str, list[str]] = {}
        for dep in router_kwargs_model_list(litellm_router):
            info = dep.get("model_info") or {}
            if "id" in info:
                self._group_ids.setdefault(str(dep.get("model_name")), []).append(str(info["id"]))
        self._cool_cache: dict[str, tuple[float, bool]] = {}
        self._price = {name: _override(policy, name) for name in policy.models}
        self._cost_key = {
            name: prices.cost_map_key(spec.litellm_model) for name, spec in policy.models.items()
        }

    # -- cooldowns (read-only view of LiteLLM's state) -----------------------------------------
    def cooling(self, group: str) -> tuple[str, ...]:
        """Deployment ids of `group` that LiteLLM has in cooldown right now."""
        ids = self._group_ids.get(group)
        if not ids:
            return ()
        try:
            active = self.router.health().cooldowns.get_active_cooldowns(ids, None)
        except Exception:  # a view must never break a decision
            return ()
        return tuple(str(dep_id) for dep_id, _ in active)

    def group_cooling(self, group: str) -> bool:
        """Every deployment of `group` is cooling down. Cached for COOLDOWN_VIEW_TTL_S (reading
        LiteLLM's cooldown store costs ~10-25 us); our own calls clear the cache, so a failure
        seen here shows in the very next decision."""
        now = time.monotonic()
        cached = self._cool_cache.get(group)
        if cached is not None and cached[0] > now:
            return cached[1]
        ids = self._group_ids.get(group, [])
        cooling = bool(ids) and len(self.cooling(group)) >= len(ids)
        self._cool_cache[group] = (now + COOLDOWN_VIEW_TTL_S, cooling)
        return cooling

    # -- calls ---------------------------------------------------------------------------------
    def _result(self, requested: str, response: Any) -> CallResult:
        hidden = getattr(response, "_hidden_params", None) or {}
        answered = model_of_deployment(hidden.get("model_id")) or requested
        spec = self.policy.models.get(answered)
        cost = 0.0
        if spec is not None:
            cost = cost_of_response(
                response,
                litellm_model=spec.litellm_model,
                cost_map_key=self._cost_key.get(answered),
                price_override=self._price.get(answered),
            )
        prompt_tokens, completion_tokens = usage_of(response)
        return CallResult(
            response,
            requested,
            answered,
            spec.provider if spec else None,
            cost,
            prompt_tokens,
            completion_tokens,
        )

    async def acall(
        self, model: str, messages: list[dict[str, Any]], fallbacks: list[str], **kw: Any
    ) -> CallResult:
        try:
            response = await self.router.acompletion(
                model=model, messages=messages, fallbacks=fallbacks, **kw
            )
        except Exception as exc:
            raise _wrap(model, fallbacks, exc) from exc
        finally:
            self._cool_cache.clear()
        return self._result(model, response)

    def call(self, model: str, messages: list[dict[str, Any]], fallbacks: list[str], **kw: Any) -> CallResult:
        try:
            response = self.router.completion(model=model, messages=messages, fallbacks=fallbacks, **kw)
        except Exception as exc:
            raise _wrap(model, fallbacks, exc) from exc
        finally:
            self._cool_cache.clear()
        return self._result(model, response)


def router_kwargs_model_list(router: Any) -> list[dict[str, Any]]:
    try:
        return list(router.get_model_list() or [])
    except Exception:
        return list(getattr(router, "model_list", []) or [])


def _override(policy: Policy, name: str) -> tuple[float, float] | None:
    price = policy.models[name].price
    return (price.input_per_mtok / 1e6, price.output_per_mtok / 1e6) if price is not None else None


def _wrap(model: str, fallbacks: list[str], exc: Exception) -> RouterError:
    status = getattr(exc, "status_code", None)
    chain = " -> ".join([model, *fallbacks])
    if isinstance(status, int) and status in CLIENT_ERRORS:
        return ProviderRejected(f"{model} rejected the request (HTTP {status}): {_short(exc)}")
    return AllProvidersFailed(f"every provider failed for {chain}: {type(exc).__name__}: {_short(exc)}")


def _short(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
