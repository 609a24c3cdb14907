"""Response shapes of the service's operational endpoints (health, readiness, models, reload).

Job: document /healthz, /readyz, /v1/models and /admin/reload in the OpenAPI schema. The
classify contract itself lives in `serving.schemas`, shared by the service, the clients and the router.
Trade-off: bundle metadata is passed through as an open object: it is whatever the bundle's
manifest says, versioned by its own `schema_version`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.schemas import ModelRef


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ServingInfo(BaseModel):
    batching: bool
    max_batch: int
    batch_wait_ms: float
    workers: int
    max_queue: int | None = Field(default=None, description="most texts waiting for inference")
    threads: int = Field(description="ONNX Runtime intra-op threads per session")


class LastReload(BaseModel):
    at: float = Field(description="unix time of the last reload attempt")
    status: Literal["loaded", "unchanged", "refused"]
    reason: str | None = None


class GateReadiness(BaseModel):
    ready: bool
    model: dict[str, Any] | None = None
    origin: str | None = None
    last_reload: dict[str, Any] | None = None


class ReadyResponse(BaseModel):
    """/readyz: public, so no local paths, tracking URIs or error texts (see /admin/status)."""

    ready: bool
    model: ModelRef | None = None
    source: str = Field(description="the configured `models:/...` URI, or 'local bundle folder'")
    origin: Literal["local", "registry", "cache"] | None = None
    stale: bool = Field(description="true when a cached bundle stands in for an unreachable registry")
    reason: str | None = Field(default=None, description="why not ready, or why the cache is served")
    last_reload: LastReload | None = None
    serving: ServingInfo | None = None
    gate: GateReadiness | None = Field(default=None, description="the gate model, when one is configured")
    policy: str | None = Field(
        default=None, description="router policy file name, when /v1/chat/completions is on"
    )


class QueueInfo(BaseModel):
    queued_texts: int = Field(description="texts waiting for inference now")
    dropped: int = Field(description="requests that left before their answer (disconnect, deadline)")
    aborted: int = Field(description="running inference calls aborted because nobody waited for them")


class AdminStatusResponse(ReadyResponse):
    """/admin/status: /readyz with the details: configured source and policy paths, the registry's
    and the last reload's error texts, queue counters."""

    source: str = Field(description="the configured model: `models:/...` URI or bundle folder")
    policy: str | None = Field(default=None, description="router policy file path")
    queue: QueueInfo | None = None


class HeadInfo(BaseModel):
    name: str
    labels: list[str]


class ModelsResponse(BaseModel):
    model: ModelRef
    origin: Literal["local", "registry", "cache"]
    source: str
    path: str = Field(description="local bundle folder being served")
    fingerprint: str = Field(
        description="sha256 of bundle.json (+ a hash of the version's routing_threshold tag, if any)"
    )
    loaded_at: float
    heads: list[HeadInfo]
    bundle: dict[str, Any] = Field(description="the bundle's manifest (bundle.json)")
    serving: ServingInfo


class GateReload(BaseModel):
    status: Literal["loaded", "unchanged", "refused"]
    reason: str | None = None
    model: dict[str, Any] | None = None


class ReloadResponse(BaseModel):
    status: Literal["loaded", "unchanged", "refused"] = Field(description="the classifier's outcome")
    reason: str | None = None
    model: ModelRef | None = None
    gate: GateReload | None = Field(default=None, description="the gate's outcome, when a gate is configured")
