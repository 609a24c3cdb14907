"""The classify service: a FastAPI app built by `create_app(settings)`.

Job: the HTTP contract of `/v1/classify` (`serving.schemas`), health/readiness/model metadata,
Prometheus metrics, API-key protection, hot reload (admin call and optional polling), and the
optional routers of other areas (`/v1/gate`, `/v1/chat/completions`, see `serving.extensions`).

Trade-offs:
- Nothing heavy happens at import or build time: the model, the inference pool, the gate, the
  policy router and the poller are created in the lifespan (`tierroute serve` hands in a model
  holder it already loaded, so a missing model is a one-line error instead of a lifespan traceback).
- Routes are thin: validation and limits in small functions, inference in `serving.batcher`,
  models in `serving.model_holder`. Dependencies are `Annotated` aliases.
- Every error is `{"detail": "<message>"}` (`ErrorResponse`), validation errors and 413s included:
  FastAPI's list-of-errors shape and Starlette's plain-text 413 would make clients parse three
  formats. Messages name the field and index but never echo the submitted text. What the OpenAPI
  schema forbids is a 422 (types are strict: `true` is not a number); 413 is only for what the
  schema cannot say (the body-size cap, `max_chars` over all texts together).
- An unexpected exception becomes a JSON 500 in `InternalErrorMiddleware` and is logged once; the
  keep-alive connection stays usable (Starlette's server-error handler re-raises after answering,
  which makes uvicorn drop the connection under the client's next request).
- Overload: a full inference queue or a passed deadline is a 503 with `Retry-After`; a classify
  request whose client disconnects is cancelled, so its queued or running work is dropped.
- Public endpoints (`/healthz`, `/readyz`, `/metrics`) carry no paths, URIs or error texts: those go
  to the log and to `GET /admin/status` (behind the API key when one is set).
- The classify response is built as a dict and serialised once (no second pydantic pass); the
  declared `response_model` documents it and the fuzz tests check every response against it.
- The API-key dependency (and its OpenAPI security scheme) is attached only when a key is set:
  the schema tells the truth either way and the keyless hot path pays nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import extensions
from serving.batcher import CancelToken, Inference, QueueFull
from serving.metrics import CONTENT_TYPE, MetricsMiddleware, ServiceMetrics
from serving.model_holder import LoadedModel, ModelHolder, ReloadStatus
from serving.model_source import create_source
from serving.schemas import ClassifyRequest, ClassifyResponse, ErrorResponse
from serving.service_schemas import (
    AdminStatusResponse,
    HealthResponse,
    ModelsResponse,
    ReadyResponse,
    ReloadResponse,
)
from serving.settings import ServeSettings

log = logging.getLogger("tierroute.serving")

Result = dict[str, Any]
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


@dataclass
class Service:
    """Everything the routes need, created once per app."""

    settings: ServeSettings
    metrics: ServiceMetrics
    holder: ModelHolder | None = None
    inference: Inference[LoadedModel, Result] | None = None
    gate: Any = None  # serving.gate.holder.GateHolder when a gate model is configured
    router: Any = None  # serving.router.Router when a policy is configured
    prediction_log: Any = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def serving_info(self) -> dict[str, Any] | None:
        if self.inference is None:
            return None
        return {**self.inference.describe(), "threads": self.settings.threads}

    def current_gate(self) -> Any:
        return self.gate.current if self.gate is not None else None


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]

_bearer = HTTPBearer(auto_error=False, description="API key as a Bearer token (when one is configured)")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (when one is configured)")


def require_api_key(
    service: ServiceDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_header)],
) -> None:
    """401 unless the configured key came as `Authorization: Bearer <key>` or `X-API-Key`."""
    expected = service.settings.api_key_value
    if expected is None:
        return
    given = bearer.credentials if bearer is not None else header_key
    if given is None or not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid API key (send 'Authorization: Bearer <key>' or 'X-API-Key')",
            headers={"WWW-Authenticate": "Bearer"},
        )


def loaded_model(service: ServiceDep) -> LoadedModel:
    model = service.holder.current if service.holder is not None else None
    if model is None:
        raise HTTPException(status_code=503, detail="no model loaded")
    return model


def inference(service: ServiceDep) -> Inference[LoadedModel, Result]:
    if service.inference is None:
        raise HTTPException(status_code=503, detail="service is starting or shutting down")
    return service.inference


ModelDep = Annotated[LoadedModel, Depends(loaded_model)]
InferenceDep = Annotated[Inference[LoadedModel, Result], Depends(inference)]


def request_texts(body: ClassifyRequest, settings: ServeSettings) -> list[str]:
    """The texts of a valid request, or HTTPException 422/413 with a message naming the problem."""
    given = body.model_fields_set & {"texts", "text"}  # `{"text": "a", "texts": null}` is two keys
    if len(given) != 1 or (body.texts is None) == (body.text is None):
        raise HTTPException(
            status_code=422, detail="give exactly one of 'texts' (a list) or 'text' (a string)"
        )
    texts = [body.text] if body.text is not None else list(body.texts or [])
    if not texts:
        raise HTTPException(status_code=422, detail=f"'texts' is empty: send 1 to {settings.max_texts} texts")
    if len(texts) > settings.max_texts:
        raise HTTPException(
            status_code=422, detail=f"too many texts: {len(texts)} > {settings.max_texts} per request"
        )
    total = 0
    for i, text in enumerate(texts):
        where = "'text'" if body.text is not None else f"texts[{i}]"
        if not text:
            raise HTTPException(status_code=422, detail=f"{where} is empty")
        if len(text) > settings.max_chars:
            raise HTTPException(
                status_code=422, detail=f"{where} is longer than {settings.max_chars} characters"
            )
        total += len(text)
    if total > settings.max_chars:
        raise HTTPException(
            status_code=413, detail=f"too many characters: {total} > {settings.max_chars} per request"
        )
    return texts


def make_predict(
    holder: ModelHolder, prediction_log: Any = None
) -> Callable[..., tuple[LoadedModel, list[Result]]]:
    """What the inference pool runs per (merged) batch: contract-shaped results, logged if asked."""

    def predict(texts: Sequence[str], cancel: CancelToken | None = None) -> tuple[LoadedModel, list[Result]]:
        model, predictions = holder.predict(texts, cancel)
        results = [p.to_result() for p in predictions]
        if prediction_log is not None:
            try:
                prediction_log.write(model.ref(), results, texts)
            except Exception:  # a failing log never fails a request
                log.exception("prediction log write failed")
        return model, results

    return predict


class ClientGone(Exception):
    """The client disconnected before its answer was ready (its work was dropped)."""


async def _until_disconnected(request: Request) -> None:
    """Return when the client goes away (the body is already read: the next message is a disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_for_client(
    request: Request, engine: Inference[LoadedModel, Result], texts: list[str], settings: ServeSettings
) -> tuple[LoadedModel, list[Result]]:
    """`engine.run(texts)` within the deadline, cancelled (work dropped) if the client disconnects.

    503 + Retry-After when the queue is full or the deadline passes; ClientGone on disconnect.
    """
    retry = {"Retry-After": str(settings.retry_after_s)}
    work = asyncio.ensure_future(engine.run(texts, timeout=settings.request_timeout_s))
    watch = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
    try:
        return await work
    except QueueFull:
        raise HTTPException(
            status_code=503, detail="server busy: queue full, retry later", headers=retry
        ) from None
    except TimeoutError:
        raise HTTPException(
            status_code=503, detail=f"deadline of {settings.request_timeout_s:g} s passed", headers=retry
        ) from None
    except asyncio.CancelledError:
        if watch.done() and not watch.cancelled():
            raise ClientGone() from None
        raise


def classify_body_schema(settings: ServeSettings) -> dict[str, Any]:
    """What `ClassifyRequest` alone cannot say: exactly one of the two forms, non-empty, within limits.

    Merged next to the model's `$ref` in the OpenAPI document (JSON Schema 2020-12 applies both),
    so generated clients and fuzzers know a valid body exactly. The total-characters limit
    (`max_chars`, all texts together) has no JSON Schema keyword; it is in the description.
    """
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_chars}
    texts = {"type": "array", "items": text, "minItems": 1, "maxItems": settings.max_texts}
    return {
        "description": f"1 to {settings.max_texts} non-empty texts, {settings.max_chars} chars in all",
        "oneOf": [
            {
                "type": "object",
                "required": ["texts"],
                "properties": {"texts": texts},
                "not": {"required": ["text"]},
            },
            {
                "type": "object",
                "required": ["text"],
                "properties": {"text": text},
                "not": {"required": ["texts"]},
            },
        ],
    }


def protection(settings: ServeSettings) -> list[Any]:
    return [Depends(require_api_key)] if settings.api_key is not None else []


def build_router(settings: ServeSettings) -> APIRouter:
    router = APIRouter()
    protected = protection(settings)

    @router.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses=ERRORS,
        dependencies=protected,
        openapi_extra={
            "requestBody": {"content": {"application/json": {"schema": classify_body_schema(settings)}}}
        },
        summary="Classify texts: tier, task, complexity and confidence per text, in input order",
        tags=["classify"],
    )
    async def classify(
        body: ClassifyRequest, request: Request, service: ServiceDep, engine: InferenceDep
    ) -> Response:
        texts = request_texts(body, service.settings)
        start = time.perf_counter()
        model, results = await run_for_client(request, engine, texts, service.settings)
        service.metrics.observe_results(results, model.bundle.head_names)
        if service.settings.log_texts:  # opt-in only: raw request text in the log
            log.info("classify version=%s texts=%r", model.resolved.version, texts)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug(
                "classify texts=%d chars=%d version=%s ms=%.2f",
                len(texts),
                sum(map(len, texts)),
                model.resolved.version,
                (time.perf_counter() - start) * 1000,
            )
        return JSONResponse({"model": model.ref(), "results": results})

    @router.get("/healthz", response_model=HealthResponse, summary="The process is alive", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=ReadyResponse,
        responses={503: {"model": ReadyResponse, "description": "no model loaded"}},
        summary="Whether a model is loaded, which one, and the last reload (no paths or error texts)",
        tags=["ops"],
    )
    async def readyz(service: ServiceDep) -> JSONResponse:
        body = readiness(service, detail=False)
        return JSONResponse(body, status_code=200 if body["ready"] and service.inference else 503)

    @router.get(
        "/v1/models",
        response_model=ModelsResponse,
        responses={k: v for k, v in ERRORS.items() if k in (401, 503)},
        dependencies=protected,
        summary="Metadata of the loaded bundle",
        tags=["classify"],
    )
    async def models(service: ServiceDep, model: ModelDep) -> dict[str, Any]:
        r = model.resolved
        return {
            "model": model.ref(),
            "origin": r.origin,
            "source": r.uri,
            "path": str(r.path),
            "fingerprint": r.fingerprint,
            "loaded_at": model.loaded_at,
            "heads": [{"name": h.name, "labels": list(h.labels)} for h in model.bundle.heads],
            "bundle": model.bundle.manifest,
            "serving": service.serving_info(),
        }

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
        summary="Prometheus metrics",
        tags=["ops"],
    )
    async def metrics(service: ServiceDep) -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @router.get(
        "/admin/status",
        response_model=AdminStatusResponse,
        responses={401: ERRORS[401]},
        dependencies=protected,
        summary="Readiness with details: sources, paths, registry and reload error texts, queue counters",
        tags=["admin"],
    )
    async def admin_status(service: ServiceDep) -> dict[str, Any]:
        return readiness(service, detail=True)

    @router.post(
        "/admin/reload",
        response_model=ReloadResponse,
        responses={
            401: ERRORS[401],
            409: {"model": ReloadResponse, "description": "candidate refused; the old model keeps serving"},
            503: ERRORS[503],
        },
        dependencies=protected,
        summary="Resolve the model source(s) again; hot-swap changed bundles that pass their self-check",
        tags=["admin"],
    )
    async def reload(
        service: ServiceDep,
        force: Annotated[bool, Query(description="reload even if the bundle is unchanged")] = False,
    ) -> JSONResponse:
        if service.holder is None:
            raise HTTPException(status_code=503, detail="service is starting")
        body = await asyncio.get_running_loop().run_in_executor(
            None, lambda: reload_all(service, force=force)
        )
        return JSONResponse(body, status_code=409 if body["status"] == "refused" else 200)

    return router


def readiness(service: Service, *, detail: bool) -> dict[str, Any]:
    """The /readyz body (`detail=False`: no paths, URIs or error texts) or /admin/status's."""
    settings = service.settings
    if service.holder is None:
        body: dict[str, Any] = {"ready": False, "source": public_source(settings.model), "stale": False}
        body["reason"] = "starting"
    else:
        body = service.holder.readiness(detail=detail)
    body["serving"] = service.serving_info()
    if service.gate is not None:
        body["gate"] = service.gate.readiness(detail=detail)
    if settings.policy is not None:
        body["policy"] = str(settings.policy) if detail else settings.policy.name
    if detail:
        engine = service.inference
        body["queue"] = (
            None
            if engine is None
            else {"queued_texts": engine.queued_texts, "dropped": engine.dropped, "aborted": engine.aborted}
        )
    return body


def public_source(model: str) -> str:
    """What /readyz says about the configured model: a `models:/` URI as is, never a local path."""
    return model if model.startswith("models:/") else "local bundle folder"


def reload_all(service: Service, *, force: bool = False) -> dict[str, Any]:
    """Reload the classifier (and the gate, when configured); the response body of /admin/reload."""
    assert service.holder is not None
    outcome = service.holder.reload(force=force)
    body: dict[str, Any] = {
        "status": outcome.status,
        "reason": outcome.reason,
        "model": outcome.model.ref() if outcome.model else None,
    }
    if service.gate is not None:
        gate = service.gate.reload(force=force)
        body["gate"] = {
            "status": gate.status,
            "reason": gate.reason,
            "model": gate.model.ref if gate.model else None,
        }
    return body


class BodyLimitMiddleware:
    """413 as JSON for bodies over the cap: by Content-Length before reading, or while streaming.

    FastAPI's own `max_body_size` answers in plain text from outside the exception handlers, so
    it would break the JSON-errors contract and hide the 413 from the metrics middleware.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body larger than {self.max_bytes} bytes"
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
                    return
                break
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(status_code=413, detail=detail)
            return message

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


def _on_change(metrics: ServiceMetrics) -> Callable[[LoadedModel], None]:
    def update(model: LoadedModel) -> None:
        r = model.resolved
        metrics.set_model(r.name, r.version, r.alias, r.origin, model.loaded_at)

    return update


def _on_reload(metrics: ServiceMetrics) -> Callable[[ReloadStatus], None]:
    def count(status: ReloadStatus) -> None:
        metrics.reloads.labels(status).inc()

    return count


async def _poll(service: Service, interval_s: float) -> None:
    """Re-resolve the sources every `interval_s`; the holders swap only changed, working bundles."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval_s)
        try:
            await loop.run_in_executor(None, reload_all, service)
        except Exception:
            log.exception("model poll failed")


async def _start(app: FastAPI, service: Service, holder: ModelHolder | None) -> None:
    """Load (or adopt) the model, start inference, the optional parts and the poller."""
    settings = service.settings
    loop = asyncio.get_running_loop()
    if holder is None:
        source = create_source(
            settings.model, tracking_uri=settings.tracking_uri, cache_dir=settings.cache_dir
        )
        holder = ModelHolder(source, threads=settings.threads)
        await loop.run_in_executor(None, holder.load_initial)
    holder.set_callbacks(_on_change(service.metrics), _on_reload(service.metrics))
    service.holder = holder
    service.prediction_log = extensions.open_prediction_log(settings)
    service.inference = Inference(
        make_predict(holder, service.prediction_log),
        workers=settings.workers,
        batching=settings.batching,
        max_batch=settings.max_batch,
        wait_ms=settings.batch_wait_ms,
        max_queue=settings.max_queue,
        cancellable=True,
        observe=service.metrics.observe_batch,
    )
    service.gate = await loop.run_in_executor(None, extensions.load_gate, settings)
    if settings.policy is not None:
        service.router = await loop.run_in_executor(
            None, extensions.build_policy_router, settings, holder, service.metrics.registry
        )
        app.include_router(extensions.chat_router(service.router), dependencies=protection(settings))
        app.openapi_schema = None
    if settings.reload_interval_s > 0:
        service.tasks.append(asyncio.create_task(_poll(service, settings.reload_interval_s)))
    r = holder.require().resolved
    log.info(
        "serving %s version %s (%s) from %s; batching=%s workers=%d threads=%d%s%s",
        r.name,
        r.version or "-",
        r.origin,
        r.path,
        settings.batching,
        settings.workers,
        settings.threads,
        f"; gate {settings.gate_model}" if settings.gate_model else "",
        f"; policy {settings.policy}" if settings.policy else "",
    )


async def _stop(service: Service) -> None:
    for task in service.tasks:
        task.cancel()
    loop = asyncio.get_running_loop()
    engine, service.inference = service.inference, None
    if engine is not None:
        await loop.run_in_executor(None, engine.close)
    if service.router is not None:
        service.router.close()
    if service.prediction_log is not None:
        service.prediction_log.close()


def create_app(settings: ServeSettings | None = None, *, holder: ModelHolder | None = None) -> FastAPI:
    """Build the app; the model loads in the lifespan unless a loaded `holder` is given."""
    settings = settings or ServeSettings()
    service = Service(settings=settings, metrics=ServiceMetrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _start(app, service, holder)
        try:
            yield
        finally:
            await _stop(service)

    app = FastAPI(
        title="tierroute classify service",
        version="1",
        summary="Classify requests into tiers and tasks so a router can pick the model that answers them.",
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(build_router(settings))
    gate = extensions.gate_router(
        service.current_gate, settings, protection(settings), service.metrics.registry
    )
    if gate is not None:
        app.include_router(gate)
    app.add_middleware(InternalErrorMiddleware)  # innermost of ours: the metrics still see its 500s
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(  # outermost: sees every status
        MetricsMiddleware,
        metrics=service.metrics,
        known_paths=lambda: {str(getattr(r, "path", "")) for r in app.routes},
    )
    return app
