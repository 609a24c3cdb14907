"""`POST /v1/gate`: judge (prompt, response) pairs over HTTP.

Job: the gate's HTTP contract as a FastAPI router the service mounts:
`{"items": [{"prompt", "response", "expect_json"?, "json_schema"?, "finish_reason"?,
"mean_logprob"?, "min_chars"?}], "threshold"?}` ->
`{"model": {...}, "results": [{"acceptable", "p_acceptable", "reasons", "decided_by"}]}`, results in
input order. Deterministic check failures short-circuit the model for that item. Errors follow
`/v1/classify`: 422 for whatever the OpenAPI schema forbids (wrong types, bool for a number, no
items or more than `max_texts`, a prompt or response longer than `max_chars`, an invalid, unsafe or
over-large JSON Schema, named by index), 413 for more than `max_chars` characters in all (no JSON
Schema keyword says that), always `{"detail"}`. `json_schema` is untrusted input: see
`serving.gate.checks` (no remote references, RE2 patterns, size/depth caps).

Trade-offs:
- The router gets the gate through `get_gate()` on every request, so a hot reload (see
  `serving.gate.holder.GateHolder`) is picked up without re-mounting; the reference is read once
  per request, so one request never mixes two gates.
- With no gate loaded (`get_gate()` returns None) the endpoint still answers from the
  deterministic checks (`decided_by: "checks_only"` / "checks", `model.loaded: false`): a router
  would rather have the checks than a 503.
- Work runs in the threadpool, off the event loop. Empty responses are valid input (they are
  what the "empty" check is for); raw texts are never logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol

import annotated_types
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from serving.gate.checks import MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, InvalidSchemaError, validate_schema
from serving.gate.model import GateDecision, GateItem, GateModel, decide_without_model


def _json_integer(value: Any) -> Any:
    """JSON Schema's `integer`: 3 and 3.0, never `true` (strict mode then rejects anything else)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


NonNegativeJsonInt = Annotated[int, annotated_types.Ge(0), BeforeValidator(_json_integer)]


class GateItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str = Field(description="the request the response answers")
    response: str = Field(description="the model's answer (may be empty: that is the 'empty' check)")
    expect_json: bool = Field(default=False, description="the caller asked for JSON")
    json_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema the answer must satisfy"
    )
    finish_reason: str | None = Field(default=None, description="provider finish reason, e.g. stop, length")
    mean_logprob: float | None = Field(default=None, description="mean token log-probability, if available")
    min_chars: NonNegativeJsonInt | None = Field(
        default=None, description="override the request-dependent minimum length"
    )


class GateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    items: list[GateItemIn] = Field(min_length=1, description="1 to max_texts items, answered in order")
    threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="override the bundle's P(acceptable) threshold"
    )


class GateResult(BaseModel):
    acceptable: bool
    p_acceptable: float | None = Field(description="model probability; null when the model did not run")
    reasons: list[str] = Field(
        description="check reason codes, or the learned reason when the model rejected"
    )
    decided_by: str = Field(description="checks | model | checks_only (no gate model loaded)")


class GateResponse(BaseModel):
    model: dict[str, Any]
    results: list[GateResult]


class _Limits(Protocol):
    """The service settings the gate reads (`gate_schema_max_bytes` / `gate_schema_max_depth` are
    optional: `serving.gate.checks` defaults when absent)."""

    max_texts: int
    max_chars: int


class GateMetrics:
    """Gate decisions by outcome and reason (registered on the service's Prometheus registry)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.decisions = Counter(
            "tierroute_gate_decisions",
            "Gate decisions by who decided and the outcome",
            ["decided_by", "acceptable"],
            registry=registry,
        )
        self.reasons = Counter(
            "tierroute_gate_reasons", "Gate rejections by reason code", ["reason"], registry=registry
        )

    def observe(self, decisions: Sequence[GateDecision]) -> None:
        for d in decisions:
            self.decisions.labels(d.decided_by, "true" if d.acceptable else "false").inc()
            for r in d.reasons:
                self.reasons.labels(r).inc()


def to_items(body: GateRequest, settings: _Limits) -> list[GateItem]:
    """Validated GateItems, or HTTPException 422/413 naming the problem (never echoing the text)."""
    n = len(body.items)
    if n == 0:
        raise HTTPException(status_code=422, detail=f"'items' is empty: send 1 to {settings.max_texts} items")
    if n > settings.max_texts:
        raise HTTPException(status_code=422, detail=f"too many items: {n} > {settings.max_texts} per request")
    for k, i in enumerate(body.items):
        for side in ("prompt", "response"):
            if len(getattr(i, side)) > settings.max_chars:
                raise HTTPException(
                    status_code=422,
                    detail=f"items[{k}].{side} is longer than {settings.max_chars} characters",
                )
    total = sum(len(i.prompt) + len(i.response) for i in body.items)
    if total > settings.max_chars:
        raise HTTPException(
            status_code=413, detail=f"too many characters: {total} > {settings.max_chars} per request"
        )
    items = []
    for k, i in enumerate(body.items):
        if i.mean_logprob is not None and not math.isfinite(i.mean_logprob):
            raise HTTPException(status_code=422, detail=f"items[{k}].mean_logprob must be a finite number")
        if i.json_schema is not None:
            try:
                validate_schema(
                    i.json_schema,
                    max_bytes=getattr(settings, "gate_schema_max_bytes", MAX_SCHEMA_BYTES),
                    max_depth=getattr(settings, "gate_schema_max_depth", MAX_SCHEMA_DEPTH),
                )
            except InvalidSchemaError as exc:
                raise HTTPException(status_code=422, detail=f"items[{k}].json_schema: {exc}") from None
        items.append(
            GateItem(
                prompt=i.prompt,
                response=i.response,
                expect_json=i.expect_json,
                json_schema=i.json_schema,
                finish_reason=i.finish_reason,
                mean_logprob=i.mean_logprob,
                min_chars=i.min_chars,
            )
        )
    return items


def build_gate_router(
    get_gate: Callable[[], GateModel | None],
    settings: _Limits,
    *,
    dependencies: Sequence[Any] = (),
    registry: CollectorRegistry | None = None,
) -> APIRouter:
    """The `/v1/gate` router. `dependencies`: e.g. `[Depends(require_api_key)]`; `registry`: the
    service's Prometheus registry for the gate counters (None: counters are not exported)."""
    router = APIRouter()
    metrics = GateMetrics(registry if registry is not None else CollectorRegistry())
    errors: dict[int | str, dict[str, Any]] = {
        401: {"description": "API key configured and missing or wrong"},
        413: {"description": "more than max_chars characters in all, or a body over the size cap"},
        422: {"description": "malformed body, limits in the schema, invalid or unsafe json_schema"},
    }
    text = {"type": "string", "maxLength": settings.max_chars}
    body_schema = {
        "$ref": "#/components/schemas/GateRequest",
        "description": f"1 to {settings.max_texts} items, {settings.max_chars} characters in all",
        "properties": {
            "items": {
                "maxItems": settings.max_texts,
                "items": {"properties": {"prompt": text, "response": text}},
            }
        },
    }

    def judge(items: list[GateItem], threshold: float | None) -> tuple[dict[str, Any], list[GateDecision]]:
        gate = get_gate()  # read once: one request, one gate, even across a reload
        if gate is None:
            return {"name": None, "version": None, "alias": None, "loaded": False}, decide_without_model(
                items
            )
        return {**gate.describe(), "loaded": True}, gate.decide(items, threshold=threshold)

    @router.post(
        "/v1/gate",
        response_model=GateResponse,
        responses=errors,
        dependencies=list(dependencies),
        summary="Judge responses: deterministic checks, then the learned gate; results in input order",
        tags=["gate"],
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": body_schema}}}},
    )
    async def gate(body: GateRequest) -> JSONResponse:
        items = to_items(body, settings)
        try:
            model, decisions = await run_in_threadpool(judge, items, body.threshold)
        except InvalidSchemaError as exc:  # validated above; kept for checks that refuse at run time
            raise HTTPException(status_code=422, detail=f"json_schema: {exc}") from None
        metrics.observe(decisions)
        return JSONResponse({"model": model, "results": [d.to_result() for d in decisions]})

    return router
