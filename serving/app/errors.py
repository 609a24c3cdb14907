"""How the service answers errors: one JSON shape, a 413 body-size cap, a JSON 500, documented as sent.

Trade-offs:
- Every error is `{"detail": "<message>"}` (`ErrorResponse`), validation errors and 413s included:
  FastAPI's list-of-errors shape and Starlette's plain-text 413 would make clients parse three
  formats. The one exception is `/v1/chat/completions`, which speaks OpenAI's
  `{"error": {"message", "type", "code", "param"}}` (`serving.router.http`); a body refused there
  by the size cap gets that shape too (`error_body`).
- An unexpected exception becomes a JSON 500 in `InternalErrorMiddleware` and is logged once; the
  keep-alive connection stays usable (Starlette's server-error handler re-raises after answering,
  which makes uvicorn drop the connection under the client's next request).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.schemas import ErrorResponse

log = logging.getLogger("tierroute.serving")

CHAT_PATH = "/v1/chat/completions"
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "API key configured and missing or wrong"},
    413: {
        "model": ErrorResponse,
        "description": "more than max_chars characters in all, or body over the cap",
    },
    422: {
        "model": ErrorResponse,
        "description": "malformed body: wrong types, empty, too many or too long texts",
    },
    503: {
        "model": ErrorResponse,
        "description": "no model loaded, shutting down, queue full or deadline passed (see Retry-After)",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
    },
}


class ClientGone(Exception):
    """The client disconnected before its answer was ready (its work was dropped)."""


class BodyTooLarge(StarletteHTTPException):
    """A body that passed the size cap while it was read (no or a lying Content-Length)."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=413, detail=message)


def error_body(path: str, message: str) -> dict[str, Any]:
    """A request error as the endpoint at `path` words its errors: OpenAI's shape on the chat
    endpoint (an invalid request, like its own 413), `{"detail"}` everywhere else."""
    if path.startswith(CHAT_PATH):
        kind = "invalid_request_error"
        return {"error": {"message": message, "type": kind, "code": kind, "param": None}}
    return {"detail": message}


class BodyLimitMiddleware:
    """413 as JSON for bodies over the cap: by Content-Length before reading, or while streaming.

    FastAPI's own `max_body_size` answers in plain text from outside the exception handlers, so
    it would break the JSON-errors contract and hide the 413 from the metrics middleware.
    `path_limits` raises (or lowers) the cap under a path prefix: the chat endpoint takes bodies up
    to its own cap (`serving.router.chat_schema.LIMITS.max_body_bytes`), larger than classify's.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    def limit_for(self, path: str) -> int:
        return next(
            (cap for prefix, cap in self.path_limits.items() if path.startswith(prefix)), self.max_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        cap = self.limit_for(path)
        message = f"request body larger than {cap} bytes"
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    too_big = int(value) > cap
                except ValueError:
                    too_big = False
                if too_big:
                    await JSONResponse(error_body(path, message), status_code=413)(scope, receive, send)
                    return
                break
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            received = await receive()
            if received["type"] == "http.request":
                seen += len(received.get("body", b""))
                if seen > cap:
                    raise BodyTooLarge(message)
            return received

        await self.app(scope, limited, send)


def install_error_handlers(app: FastAPI) -> None:
    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        parts = []
        for err in errors[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        return JSONResponse({"detail": "invalid request: " + "; ".join(parts) + more}, status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, BodyTooLarge):
            return JSONResponse(error_body(request.url.path, str(exc.detail)), status_code=413)
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. not UTF-8): a malformed body
            return JSONResponse(
                {"detail": f"invalid request: malformed body ({exc.detail})"}, status_code=422
            )
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def client_gone(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # nobody reads it; the metrics count it (nginx's code)

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientGone, client_gone)


class InternalErrorMiddleware:
    """Any exception the app did not handle -> a JSON 500, logged once, connection kept usable.

    Installed inside the metrics middleware (which then counts the 500). Starlette's own handler
    for `Exception` answers and then re-raises, and uvicorn closes a connection whose app raised:
    a pooled client's next request on it would fail with a reset. If the response had already
    started, the exception is re-raised: the connection must close, the response is incomplete.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            log.error(
                "unhandled %s on %s %s",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
            )
            await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)


def install_openapi(app: FastAPI) -> None:
    """Document the errors as they are sent: every 422 is an `ErrorResponse`, not FastAPI's list shape."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = default_openapi()
        error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
                if "422" in responses:
                    responses["422"] = {"description": ERRORS[422]["description"], "content": error_ref}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ErrorResponse", ErrorResponse.model_json_schema())
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
