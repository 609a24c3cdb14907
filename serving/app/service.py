"""What every route shares: the per-app `Service` state and the FastAPI dependencies that read it
(the served model, the inference pool, the API key check).

The API-key dependency (and its OpenAPI security scheme) is attached only when a key is set
(`protection`): the schema tells the truth either way and the keyless hot path pays nothing.

Every dependency here is `async def` although none awaits anything: FastAPI runs a plain `def`
dependency in its thread pool, so each one cost a round trip to an AnyIO worker thread per
request (two per classify call). On 2 cores those hand-offs queue behind the busy inference
threads; measured (evals/RESULTS.md "HTTP on 2 cores") they were part of the c=1 tail.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.app.metrics import ServiceMetrics
from serving.model.batcher import Inference
from serving.model.holder import LoadedModel, ModelHolder
from serving.settings import ServeSettings

Result = dict[str, Any]


@dataclass
class Service:
    """Everything the routes need, created once per app; the lifespan fills in the runtime parts."""

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


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]

_bearer = HTTPBearer(auto_error=False, description="API key as a Bearer token (when one is configured)")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (when one is configured)")


async def require_api_key(
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


def protection(settings: ServeSettings) -> list[Any]:
    """The dependencies of a protected route: the API-key check, only when a key is configured."""
    return [Depends(require_api_key)] if settings.api_key is not None else []


async def loaded_model(service: ServiceDep) -> LoadedModel:
    model = service.holder.current if service.holder is not None else None
    if model is None:
        raise HTTPException(status_code=503, detail="no model loaded")
    return model


async def inference(service: ServiceDep) -> Inference[LoadedModel, Result]:
    if service.inference is None:
        raise HTTPException(status_code=503, detail="service is starting or shutting down")
    return service.inference


ModelDep = Annotated[LoadedModel, Depends(loaded_model)]
InferenceDep = Annotated[Inference[LoadedModel, Result], Depends(inference)]
