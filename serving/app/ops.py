"""Operations endpoints: `/healthz`, `/readyz`, `/v1/models`, `/metrics`, `/admin/status`, `/admin/reload`.

Public endpoints (`/healthz`, `/readyz`, `/metrics`) carry no paths, URIs or error texts: those go
to the log and to `GET /admin/status` (behind the API key when one is set). A reload (admin call or
the poller, `serving.app.lifecycle`) re-resolves the classifier and, when configured, the gate; each
holder swaps in only a changed bundle that passes its self-check (409 when the candidate is refused).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, Response

from serving.app.errors import ERRORS
from serving.app.metrics import CONTENT_TYPE
from serving.app.schemas import (
    AdminStatusResponse,
    HealthResponse,
    ModelsResponse,
    ReadyResponse,
    ReloadResponse,
)
from serving.app.service import ModelDep, Service, ServiceDep, protection
from serving.settings import ServeSettings


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
            "model": gate.model.ref() if gate.model else None,
        }
    return body


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(service: ServiceDep) -> JSONResponse:
    body = readiness(service, detail=False)
    return JSONResponse(body, status_code=200 if body["ready"] and service.inference else 503)


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


async def metrics(service: ServiceDep) -> Response:
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)


async def admin_status(service: ServiceDep) -> dict[str, Any]:
    return readiness(service, detail=True)


async def reload(
    service: ServiceDep,
    force: Annotated[bool, Query(description="reload even if the bundle is unchanged")] = False,
) -> JSONResponse:
    if service.holder is None:
        raise HTTPException(status_code=503, detail="service is starting")
    body = await asyncio.get_running_loop().run_in_executor(None, lambda: reload_all(service, force=force))
    return JSONResponse(body, status_code=409 if body["status"] == "refused" else 200)


def ops_router(settings: ServeSettings) -> APIRouter:
    """The routes above, in the order the OpenAPI document lists them."""
    router = APIRouter()
    protected = protection(settings)
    router.add_api_route(
        "/healthz", healthz, response_model=HealthResponse, summary="The process is alive", tags=["ops"]
    )
    router.add_api_route(
        "/readyz",
        readyz,
        response_model=ReadyResponse,
        responses={503: {"model": ReadyResponse, "description": "no model loaded"}},
        summary="Whether a model is loaded, which one, and the last reload (no paths or error texts)",
        tags=["ops"],
    )
    router.add_api_route(
        "/v1/models",
        models,
        response_model=ModelsResponse,
        responses={k: v for k, v in ERRORS.items() if k in (401, 503)},
        dependencies=protected,
        summary="Metadata of the loaded bundle",
        tags=["classify"],
    )
    router.add_api_route(
        "/metrics",
        metrics,
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
        summary="Prometheus metrics",
        tags=["ops"],
    )
    router.add_api_route(
        "/admin/status",
        admin_status,
        response_model=AdminStatusResponse,
        responses={401: ERRORS[401]},
        dependencies=protected,
        summary="Readiness with details: sources, paths, registry and reload error texts, queue counters",
        tags=["admin"],
    )
    router.add_api_route(
        "/admin/reload",
        reload,
        methods=["POST"],
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
    return router
