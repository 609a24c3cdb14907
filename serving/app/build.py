"""`create_app(settings)`: build the classify service's FastAPI app.

Every route is registered here, when the app is built (the lifespan only starts and stops what the
routes use): `/v1/classify` (`classify`), health/readiness/metadata/metrics/admin (`ops`), and the
optional areas `serving.extensions` wires in: `/v1/gate` when the gate area is installed, and
`/v1/chat/completions` when a policy is configured (its router is built in the lifespan and reached
through `LiveRouter`), plus `/v1/feedback` (`feedback`) when routed outcomes are logged too
(`--prediction-log`). Middleware, outermost first: metrics (sees every status), the body-size cap,
the JSON 500 (`errors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI

from serving import extensions
from serving.app import lifecycle
from serving.app.classify import classify_router
from serving.app.errors import (
    CHAT_PATH,
    BodyLimitMiddleware,
    InternalErrorMiddleware,
    install_error_handlers,
    install_openapi,
)
from serving.app.feedback import FEEDBACK_MAX_BODY_BYTES, FEEDBACK_PATH, feedback_router
from serving.app.metrics import MetricsMiddleware, ServiceMetrics
from serving.app.ops import ops_router
from serving.app.service import Service, protection
from serving.model.holder import ModelHolder
from serving.settings import ServeSettings


def _routers(service: Service) -> tuple[list[tuple[APIRouter, list[Any]]], dict[str, int]]:
    """Every router the app serves (with the dependencies it is mounted with), in OpenAPI order,
    and the body caps their paths need."""
    settings = service.settings
    protected = protection(settings)
    routers: list[tuple[APIRouter, list[Any]]] = [(classify_router(settings), []), (ops_router(settings), [])]
    gate = extensions.gate_router(service.current_gate, settings, protected, service.metrics.registry)
    if gate is not None:
        routers.append((gate, []))
    if settings.policy is None:
        return routers, {}
    routers.append((extensions.chat_router(lifecycle.LiveRouter(service)), protected))
    from serving.router.chat_schema import LIMITS  # only with a policy: the router area is in use

    limits = {CHAT_PATH: max(settings.max_body_bytes, LIMITS.max_body_bytes)}
    if settings.prediction_log is not None:  # routed outcomes are logged: users may judge them
        routers.append((feedback_router(), protected))
        limits[FEEDBACK_PATH] = FEEDBACK_MAX_BODY_BYTES
    return routers, limits


def route_paths(routers: Iterable[APIRouter]) -> set[str]:
    """The path templates the routers serve (what the metrics may label a request answered before
    routing with, e.g. a 413 by Content-Length)."""
    return {str(getattr(route, "path", "")) for router in routers for route in router.routes} - {""}


def create_app(settings: ServeSettings | None = None, *, holder: ModelHolder | None = None) -> FastAPI:
    """Build the app; the model loads in the lifespan unless a loaded `holder` is given."""
    settings = settings or ServeSettings()
    service = Service(settings=settings, metrics=ServiceMetrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await lifecycle.start(service, holder)
        try:
            yield
        finally:
            await lifecycle.stop(service)

    app = FastAPI(
        title="tierroute classify service",
        version="1",
        summary="Classify requests into tiers and tasks so a router can pick the model that answers them.",
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    install_openapi(app)
    routers, path_limits = _routers(service)
    for router, dependencies in routers:
        app.include_router(router, dependencies=dependencies)
    paths = route_paths(router for router, _ in routers)
    app.add_middleware(InternalErrorMiddleware)  # innermost of ours: the metrics still see its 500s
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, path_limits=path_limits)
    app.add_middleware(  # outermost: sees every status
        MetricsMiddleware,
        metrics=service.metrics,
        known_paths=lambda: paths,
    )
    return app
