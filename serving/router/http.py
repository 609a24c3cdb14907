"""OpenAI-compatible `POST /v1/chat/completions` in front of the router.

Job: let any OpenAI client use the router by changing its base URL. `model: "auto"` lets the
policy decide; any other value must be a route name (a policy model, tier, cascade or rule id).
Routing hints travel in the request's `metadata` (use_case, sla, critical, route, and flags such
as requires_code_execution) or in `x-tierroute-*` headers. The response is the provider's
chat.completion JSON; headers say who answered and why:
`x-tierroute-model` (the model that produced the answer), `x-tierroute-decided-by`,
`x-tierroute-reason`, `x-tierroute-rule`, `x-tierroute-cascade`, `x-tierroute-decide-us`, and
`x-tierroute-request-id` (the id of the request's outcome record when the service logs outcomes,
the one `POST /v1/feedback` takes).

What a request may set is an allow-list (`chat_schema`): the OpenAI chat parameters the router
supports, each bounded (n <= 4, max_tokens <= 32768, ...). Anything else is a 400 naming the
field, and transport fields (api_base, api_key, headers, mock_response, timeout, fallbacks, ...)
always are: where a call goes and with which credentials comes from the policy only.

Errors use OpenAI's `{"error": {"message", "type", "code", "param"}}` shape plus the router's
trace, with statuses a client can act on and messages that never carry provider text, secrets,
server paths or tracebacks (the detail is logged once, server side):
400 invalid request or provider_rejected (the provider refused the request's content), 402 budget
exhausted, 404 unknown route, 413 body too large, 422 no model fits, 502 all_providers_failed or
provider_misconfigured (the server's credentials or model set-up, not the request), 503 every
provider rate-limiting, 500 anything unexpected (a stable code, details in the log).

Streaming (`stream: true`): server-sent events in OpenAI's chunk format, ending with
`data: [DONE]`; `stream_options: {include_usage: true}` adds the final usage chunk. The decision
headers come with the first byte. Errors before the first chunk are the JSON errors above; an
error mid-stream ends the stream with one `data: {"error": ...}` event. A cascade buffers stage 1
and gates it first: an accepted answer arrives as one content chunk, a rejected one is replaced
by stage 2's live stream (time to first token = stage 1's whole answer + the gate). Spend is
recorded in the ledger when a stream ends, fails or is abandoned.

Trade-offs: failover happens before the first chunk only (LiteLLM's); a provider failing
mid-stream is not retried, since the client already has part of an answer. A client that
disconnects cancels its provider call (spend already incurred is still recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from serving.router.chat_schema import LIMITS, ChatBodyError, openapi_schema, parse_chat_body
from serving.router.decision import (
    AllProvidersFailed,
    BudgetExceeded,
    ClassifierConsulted,
    Decision,
    Executed,
    InvalidRequest,
    NoEligibleModel,
    RouterError,
    Step,
    UnknownRoute,
)
from serving.router.engine import Router, Streamed, decision_of
from serving.router.execute import ProviderMisconfigured, ProviderRejected, ProvidersRateLimited

log = logging.getLogger("tierroute.router.http")

HEADER_PREFIX = "x-tierroute-"
_STATUS: list[tuple[type[RouterError], int, str]] = [
    (UnknownRoute, 404, "model_not_found"),
    (InvalidRequest, 400, "invalid_request_error"),
    (BudgetExceeded, 402, "budget_exhausted"),
    (NoEligibleModel, 422, "no_eligible_model"),
    (ProviderRejected, 400, "provider_rejected"),
    (ProviderMisconfigured, 502, "provider_misconfigured"),
    (ProvidersRateLimited, 503, "providers_rate_limited"),
    (AllProvidersFailed, 502, "all_providers_failed"),
]
_CLASSIFIER_FAILURES = ("timeout", "unavailable", "bad_response")

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "trace": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["message", "type", "code"],
        }
    },
    "required": ["error"],
}


def _error(
    status: int,
    code: str,
    message: str,
    trace: list[dict[str, Any]] | None = None,
    param: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"message": message, "type": code, "code": code, "param": param}}
    if trace is not None:
        body["error"]["trace"] = trace
    return JSONResponse(body, status_code=status)


def public_trace(trace: list[Step]) -> list[dict[str, Any]]:
    """The trace as a client sees it: a classifier failure's detail (which may name an internal
    address or carry an exception's text) is reduced to its status."""
    out = []
    for step in trace:
        d = step.to_dict()
        if isinstance(step, ClassifierConsulted) and step.status in _CLASSIFIER_FAILURES:
            d["detail"] = f"classifier {step.status}; rules decide"
        out.append(d)
    return out


def decision_headers(decision: Decision) -> dict[str, str]:
    executed = [s for s in decision.trace if isinstance(s, Executed)]
    answered = executed[-1].answered_by if executed and executed[-1].answered_by else decision.model
    headers = {
        "x-tierroute-model": answered,
        "x-tierroute-decided-by": decision.decided_by,
        "x-tierroute-reason": _header_safe(decision.reason),
        "x-tierroute-decide-us": f"{decision.decide_us:.0f}",
    }
    if decision.request_id:
        headers["x-tierroute-request-id"] = decision.request_id
    if decision.rule_id:
        headers["x-tierroute-rule"] = decision.rule_id
    if decision.cascade is not None:
        escalated = answered != decision.cascade.stage1
        headers["x-tierroute-cascade"] = f"{decision.cascade.name}:{'escalated' if escalated else 'accepted'}"
    return headers


def _header_safe(text: str, limit: int = 300) -> str:
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return clean[:limit]


def _router_error(err: RouterError) -> JSONResponse:
    for cls, status, code in _STATUS:
        if isinstance(err, cls):
            return _error(status, code, str(err), public_trace(err.trace))
    log.error("unmapped router error %s: %s", type(err).__name__, err)
    return _error(500, "router_error", "the router failed; see the server log", public_trace(err.trace))


def _sse_response(streamed: Streamed) -> StreamingResponse:
    headers = decision_headers(streamed.decision)
    headers["x-tierroute-model"] = streamed.model
    headers["cache-control"] = "no-cache"
    return StreamingResponse(_sse(streamed.chunks), media_type="text/event-stream", headers=headers)


async def _sse(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Server-sent events: one `data:` line per chunk, then `data: [DONE]`. Cancellation (the client
    went away) closes the chunk iterator, which closes the provider call and records the spend."""
    async with contextlib.aclosing(chunks) as it:  # type: ignore[type-var]
        try:
            async for chunk in it:
                yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
        except RouterError as err:
            body = {"error": {"message": str(err), "type": type(err).__name__, "code": "stream_failed"}}
            yield b"data: " + json.dumps(body).encode() + b"\n\n"
            return
        except Exception as exc:  # mid-stream: the status is sent already; say it in the stream
            log.error("chat completion stream failed: %s", type(exc).__name__, exc_info=exc)
            body = {"error": {"message": "stream failed; see the server log", "code": "internal_error"}}
            yield b"data: " + json.dumps(body).encode() + b"\n\n"
            return
    yield b"data: [DONE]\n\n"


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes rather than after reading it all."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ChatBodyError(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ChatBodyError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the next message is that)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class ClientGone(Exception):
    """The client disconnected before the answer was ready; its provider call was cancelled."""


async def _unless_disconnected(request: Request, work: Any) -> Any:
    """Run `work`, cancelling it if the client goes away first (raises `ClientGone` then)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ClientGone
        return task.result()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


def build_chat_router(router: Router) -> APIRouter:
    """An APIRouter with `POST /v1/chat/completions` backed by `router.acomplete`."""
    api = APIRouter(tags=["router"])
    responses: dict[int | str, dict[str, Any]] = {
        status: {"description": desc, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        for status, desc in (
            (400, "invalid request (unknown or forbidden field, out-of-bounds value) or provider_rejected"),
            (402, "daily budget exhausted"),
            (404, "unknown route (model)"),
            (413, f"body larger than {LIMITS.max_body_bytes} bytes"),
            (422, "no model can serve the request"),
            (500, "unexpected server error (details in the server log)"),
            (502, "all_providers_failed, or provider_misconfigured (server credentials/model set-up)"),
            (503, "every provider is rate-limiting"),
        )
    }

    @api.post(
        "/v1/chat/completions",
        summary="OpenAI-compatible chat completion, routed by policy",
        responses=responses,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": openapi_schema()}}}
        },
    )
    async def chat_completions(request: Request) -> Response:
        try:
            body = parse_chat_body(await _read_body(request, LIMITS.max_body_bytes))
        except ChatBodyError as err:
            return _error(err.status, "invalid_request_error", err.message, param=err.param)
        metadata: dict[str, Any] = dict(body.metadata or {})
        for key in ("use_case", "sla", "critical"):
            value = request.headers.get(HEADER_PREFIX + key.replace("_", "-"))
            if value is not None:
                metadata.setdefault(key, value)
        call = dict(route=body.model or "auto", metadata=metadata, **body.llm_params())
        try:
            if body.stream:
                opts = body.stream_options.model_dump(exclude_none=True) if body.stream_options else None
                streamed = await _unless_disconnected(
                    request, router.astream(body.message_dicts(), stream_options=opts, **call)
                )
                return _sse_response(streamed)
            response = await _unless_disconnected(request, router.acomplete(body.message_dicts(), **call))
        except RouterError as err:
            return _router_error(err)
        except ClientGone:
            log.info("client disconnected; its chat completion was cancelled")
            return _error(499, "client_closed_request", "client closed the request")
        except Exception as exc:  # a bug: a stable answer for the client, the traceback in the log once
            log.error("chat completion failed: %s", type(exc).__name__, exc_info=exc)
            return _error(500, "internal_error", "internal error; see the server log")
        decision = decision_of(response)
        payload = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        headers = decision_headers(decision) if decision is not None else {}
        return JSONResponse(payload, headers=headers)

    return api
