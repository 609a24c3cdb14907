"""Execution through LiteLLM's Router: one call with LiteLLM's retries, fallbacks and cooldowns.

Job: build a `litellm.Router` from the policy (see `litellm_config`), call a model group with the
decision's fallbacks, work out which policy model actually answered (from the deployment id) and
what it cost, and read LiteLLM's cooldown state for the decision path. Nothing here retries or
falls back by itself: that is LiteLLM's job, configured from the policy.

Errors that survive LiteLLM's fallbacks become one of four typed errors whose message is written
here, complete and free of secrets, paths and tracebacks (LiteLLM's own text goes to the log once,
its first line only):
- `ProviderRejected` (HTTP 400 / 413 / 422 upstream): the request's content or parameters; the
  client's to fix, another provider would refuse it too;
- `ProviderMisconfigured` (credentials missing or refused: 401 / 403, LiteLLM's "missing API key";
  a model the provider does not know: 404): the operator's to fix, never blamed on the client;
- `ProvidersRateLimited` (429 after every fallback) and `AllProvidersFailed` (5xx, timeouts,
  connection errors): an outage.

Logging: LiteLLM's loggers are detached from LiteLLM's own stream handler (records reach the
service's handlers once instead of twice) and, unless request text logging is opted in
(`TIERROUTE_LOG_TEXTS`), kept from printing request bodies (see `configure_litellm_logging`).

Trade-offs: `import litellm` takes ~3 s, so the executor is built on first use (or by
`Router.warm()` at service start), never for `decide()` alone.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from serving.router import prices
from serving.router.budget import cost_of_response, usage_of
from serving.router.decision import AllProvidersFailed, RouterError
from serving.router.litellm_config import model_of_deployment, router_kwargs
from serving.router.policy import Policy
from serving.router.request import log_texts_enabled

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

log = logging.getLogger("tierroute.router.execute")

CLIENT_ERRORS = (400, 413, 422)
CONFIG_ERRORS = (401, 403, 404)
COOLDOWN_VIEW_TTL_S = 0.25
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
QUIET_LEVELS = {
    "LiteLLM": logging.WARNING,
    "LiteLLM Proxy": logging.WARNING,
    "LiteLLM Router": logging.CRITICAL,
    "openai": logging.INFO,
    "anthropic": logging.INFO,
}
_MISSING_KEY = re.compile(
    r"missing (credentials|[\w ]*api[ _-]?key)|no api[ _-]?key"
    r"|api[ _-]?key[\w ]* (is )?(not set|missing|required)",
    re.IGNORECASE,
)


class ProviderRejected(RouterError):
    """The provider refused the request's content as invalid (HTTP 400/413/422): the client's to fix."""


class ProviderMisconfigured(RouterError):
    """The server's provider set-up is wrong (credentials missing or refused, unknown model).

    The operator's to fix, never the client's."""


class ProvidersRateLimited(AllProvidersFailed):
    """Every provider tried answered 429: retry later."""


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
    def __init__(
        self, policy: Policy, litellm_router: Any | None = None, *, log_texts: bool | None = None
    ) -> None:
        import litellm

        litellm.suppress_debug_info = True
        self.log_texts = log_texts_enabled() if log_texts is None else log_texts
        configure_litellm_logging(self.log_texts)
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
            raise self._wrap(model, fallbacks, exc) from exc
        finally:
            self._cool_cache.clear()
        return self._result(model, response)

    def call(self, model: str, messages: list[dict[str, Any]], fallbacks: list[str], **kw: Any) -> CallResult:
        try:
            response = self.router.completion(model=model, messages=messages, fallbacks=fallbacks, **kw)
        except Exception as exc:
            raise self._wrap(model, fallbacks, exc) from exc
        finally:
            self._cool_cache.clear()
        return self._result(model, response)

    async def astream(
        self, model: str, messages: list[dict[str, Any]], fallbacks: list[str], **kw: Any
    ) -> Any:
        """Open a streamed completion (LiteLLM's stream wrapper, an async iterator of chunks). Failover
        happens before the first chunk, as for `acall`; usage is requested in the last chunk."""
        kw = {
            **kw,
            "stream": True,
            "stream_options": {**(kw.get("stream_options") or {}), "include_usage": True},
        }
        try:
            return await self.router.acompletion(model=model, messages=messages, fallbacks=fallbacks, **kw)
        except Exception as exc:
            raise self._wrap(model, fallbacks, exc) from exc
        finally:
            self._cool_cache.clear()

    def stream_result(
        self, requested: str, stream: Any, chunks: list[Any], messages: list[dict[str, Any]]
    ) -> CallResult:
        """What a (possibly interrupted) stream cost: its chunks rebuilt into one response with usage
        (the provider's, else counted); no chunk at all still costs the prompt."""
        import litellm

        response: Any = None
        if chunks:
            try:
                response = litellm.stream_chunk_builder(chunks, messages=messages)
            except Exception as exc:  # pricing must never fail the request
                log.warning("cannot rebuild the streamed response for pricing: %s", _first_line(exc))
        if response is None:
            prompt = litellm.token_counter(messages=messages)
            response = litellm.ModelResponse()
            response.usage = litellm.Usage(prompt_tokens=prompt, completion_tokens=0, total_tokens=prompt)
        hidden = getattr(stream, "_hidden_params", None)
        if isinstance(hidden, dict):
            response._hidden_params = {**(getattr(response, "_hidden_params", None) or {}), **hidden}
        return self._result(requested, response)

    def _wrap(self, model: str, fallbacks: list[str], exc: Exception) -> RouterError:
        """A typed error with a complete, client-safe message; LiteLLM's detail is logged here, once."""
        spec = self.policy.models.get(model)
        provider = getattr(exc, "llm_provider", None) or (spec.provider if spec else None) or "unknown"
        return classify_failure(model, fallbacks, exc, str(provider), log_texts=self.log_texts)


def classify_failure(
    model: str, fallbacks: list[str], exc: BaseException, provider: str, *, log_texts: bool = False
) -> RouterError:
    """Map what LiteLLM raised after its fallbacks to one of the router's errors (see the module doc)."""
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    chain = " -> ".join([model, *fallbacks])
    kind = type(exc).__name__
    detail = _first_line(exc)
    refused = "Authentication" in kind or "PermissionDenied" in kind or status in (401, 403)
    if refused or (status not in CLIENT_ERRORS and _MISSING_KEY.search(detail)):
        log.error(
            "provider %s refused or lacks credentials for %s (%s, HTTP %s): %s",
            provider,
            chain,
            kind,
            status,
            detail,
        )
        return ProviderMisconfigured(
            f"the server has no valid credentials for provider {provider!r} (model {model!r}): "
            "its API key is missing or was refused. This is a server configuration problem, "
            "not a problem with the request; the operator must set that provider's API key."
        )
    if status == 404:
        log.error(
            "provider %s does not know the model of %s (%s, HTTP 404): %s", provider, chain, kind, detail
        )
        return ProviderMisconfigured(
            f"provider {provider!r} does not know the model configured for {model!r} (HTTP 404). This is a "
            "server configuration problem; the operator must fix the routing policy."
        )
    if status in CLIENT_ERRORS:
        # a provider may quote the request back: its text is logged only with the text opt-in
        log.warning(
            "provider %s rejected the request to %s (%s, HTTP %s)%s",
            provider,
            model,
            kind,
            status,
            f": {detail}" if log_texts else "",
        )
        return ProviderRejected(
            f"provider {provider!r} rejected the request as invalid (HTTP {status}, model {model!r}); "
            "check the request's parameters and message content."
        )
    log.warning(
        "every provider failed for %s: %s (HTTP %s, provider %s): %s", chain, kind, status, provider, detail
    )
    if status == 429:
        return ProvidersRateLimited(f"every provider is rate-limiting {chain} (HTTP 429); retry later.")
    low = kind.lower()
    if "timeout" in low:
        what = "timed out"
    elif "connection" in low:
        what = "could not connect"
    else:
        what = f"HTTP {status}" if status is not None else "upstream error"
    return AllProvidersFailed(f"every provider failed for {chain} (last error: {what}); retry later.")


def configure_litellm_logging(log_texts: bool) -> None:
    """One copy of each LiteLLM log record, and no request text in any log unless `log_texts`.

    Without the opt-in: LiteLLM's main logger at WARNING (its DEBUG/INFO records print whole request
    bodies), its Router logger at CRITICAL (it logs every failed call as a multi-line ERROR block,
    once per fallback, with the provider's message, which may quote the request: `classify_failure`
    logs each failure once instead), and the provider SDKs' request dumps at INFO.
    """
    try:
        from litellm import _logging as litellm_logging

        handler = getattr(litellm_logging, "handler", None)
    except ImportError:  # pragma: no cover - LiteLLM moved it; the levels below still apply
        handler = None
    for name in LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        if handler is not None:
            logger.removeHandler(handler)  # records reach the service's handlers only: printed once
    if log_texts:
        return
    for name, level in QUIET_LEVELS.items():
        logging.getLogger(name).setLevel(level)


def _first_line(exc: BaseException, limit: int = 600) -> str:
    """LiteLLM's message, first line only (never its traceback), without the class-name prefixes."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    text = re.sub(r"^(litellm\.\w+:\s*)?(\w+Error:\s*)?", "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def router_kwargs_model_list(router: Any) -> list[dict[str, Any]]:
    try:
        return list(router.get_model_list() or [])
    except Exception:
        return list(getattr(router, "model_list", []) or [])


def _override(policy: Policy, name: str) -> tuple[float, float] | None:
    price = policy.models[name].price
    return (price.input_per_mtok / 1e6, price.output_per_mtok / 1e6) if price is not None else None
