"""`POST /v1/classify`: validate the texts, run them through the inference pool, answer in input order.

Trade-offs:
- Validation and limits live in small functions (`request_texts`, `classify_body_schema`);
  inference in `serving.model.batcher`, the model in `serving.model.holder`.
- What the OpenAPI schema forbids is a 422 (types are strict: `true` is not a number); 413 is only
  for what the schema cannot say (`max_chars` over all texts together). Messages name the field
  and index but never echo the submitted text.
- Overload: a full inference queue or a passed deadline is a 503 with `Retry-After`; a request
  whose client disconnects is cancelled, so its queued or running work is dropped.
- The response is built as a dict and serialised once (no second pydantic pass); the declared
  `response_model` documents it and the fuzz tests check every response against it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from serving.app.errors import ERRORS, ClientGone
from serving.app.service import InferenceDep, Result, ServiceDep, protection
from serving.model.batcher import CancelToken, Inference, QueueFull
from serving.model.holder import LoadedModel, ModelHolder
from serving.schemas import ClassifyRequest, ClassifyResponse
from serving.settings import ServeSettings

log = logging.getLogger("tierroute.serving")


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


def classify_router(settings: ServeSettings) -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/v1/classify",
        classify,
        methods=["POST"],
        response_model=ClassifyResponse,
        responses=ERRORS,
        dependencies=protection(settings),
        openapi_extra={
            "requestBody": {"content": {"application/json": {"schema": classify_body_schema(settings)}}}
        },
        summary="Classify texts: tier, task, complexity and confidence per text, in input order",
        tags=["classify"],
    )
    return router
