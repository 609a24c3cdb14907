"""OpenAI-compatible `POST /v1/chat/completions` in front of the router.

Job: let any OpenAI client use the router by changing its base URL. `model: "auto"` lets the
policy decide; any other value must be a route name (a policy model, tier, cascade or rule id).
Routing hints travel in the request's `metadata` (use_case, sla, critical, and flags such as
requires_code_execution) or in `x-tierroute-*` headers. The response is the provider's
chat.completion JSON; headers say who answered and why:
`x-tierroute-model` (the model that produced the answer), `x-tierroute-decided-by`,
`x-tierroute-reason`, `x-tierroute-rule`, `x-tierroute-cascade`, `x-tierroute-decide-us`.

Trade-offs: streaming is refused (400): a cascade must see the whole stage-1 answer before it
can decide, and failover mid-stream is LiteLLM's business we did not wire up. Errors use
OpenAI's `{"error": {...}}` shape plus the router's trace, with statuses a client can act on:
404 unknown route, 400 bad request, 402 budget exhausted, 422 no model fits, 502 every
provider failed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serving.router.decision import (
    AllProvidersFailed,
    BudgetExceeded,
    Decision,
    Executed,
    NoEligibleModel,
    RouterError,
    UnknownRoute,
)
from serving.router.engine import InvalidRequest, Router, decision_of
from serving.router.execute import ProviderRejected

HEADER_PREFIX = "x-tierroute-"
_STATUS: list[tuple[type[RouterError], int, str]] = [
    (UnknownRoute, 404, "model_not_found"),
    (InvalidRequest, 400, "invalid_request_error"),
    (BudgetExceeded, 402, "budget_exhausted"),
    (NoEligibleModel, 422, "no_eligible_model"),
    (ProviderRejected, 400, "provider_rejected"),
    (AllProvidersFailed, 502, "all_providers_failed"),
]


def _error(status: int, code: str, message: str, trace: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"message": message, "type": code, "code": code}}
    if trace is not None:
        body["error"]["trace"] = trace
    return JSONResponse(body, status_code=status)


def decision_headers(decision: Decision) -> dict[str, str]:
    executed = [s for s in decision.trace if isinstance(s, Executed)]
    answered = executed[-1].answered_by if executed and executed[-1].answered_by else decision.model
    headers = {
        "x-tierroute-model": answered,
        "x-tierroute-decided-by": decision.decided_by,
        "x-tierroute-reason": _header_safe(decision.reason),
        "x-tierroute-decide-us": f"{decision.decide_us:.0f}",
    }
    if decision.rule_id:
        headers["x-tierroute-rule"] = decision.rule_id
    if decision.cascade is not None:
        escalated = answered != decision.cascade.stage1
        headers["x-tierroute-cascade"] = f"{decision.cascade.name}:{'escalated' if escalated else 'accepted'}"
    return headers


def _header_safe(text: str, limit: int = 300) -> str:
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return clean[:limit]


def build_chat_router(router: Router) -> APIRouter:
    """An APIRouter with `POST /v1/chat/completions` backed by `router.acomplete`."""
    api = APIRouter(tags=["router"])

    @api.post("/v1/chat/completions", summary="OpenAI-compatible chat completion, routed by policy")
    async def chat_completions(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "body must be a JSON object")
        messages = body.pop("messages", None)
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return _error(
                400, "invalid_request_error", "messages must be a non-empty list of message objects"
            )
        if body.pop("stream", False):
            return _error(
                400, "invalid_request_error", "stream=true is not supported by the tierroute router"
            )
        model = body.pop("model", "auto") or "auto"
        metadata = body.pop("metadata", None) or {}
        if not isinstance(metadata, dict):
            return _error(400, "invalid_request_error", "metadata must be an object")
        for key in ("use_case", "sla", "critical"):
            value = request.headers.get(HEADER_PREFIX + key.replace("_", "-"))
            if value is not None:
                metadata.setdefault(key, value)
        body.pop("fallbacks", None)
        try:
            response = await router.acomplete(messages, route=str(model), metadata=metadata, **body)
        except RouterError as err:
            for cls, status, code in _STATUS:
                if isinstance(err, cls):
                    return _error(status, code, str(err), [s.to_dict() for s in err.trace])
            return _error(500, "router_error", str(err), [s.to_dict() for s in err.trace])
        decision = decision_of(response)
        payload = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        headers = decision_headers(decision) if decision is not None else {}
        return JSONResponse(payload, headers=headers)

    return api
