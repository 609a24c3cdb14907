"""`POST /v1/feedback`: a user's verdict on a routed answer, appended to the prediction log.

Job: the router gives every answer it logs an id (`x-tierroute-request-id`); a client that learns
whether the answer was good sends `{"request_id": ..., "verdict": "good" | "bad"}` and the service
appends one `tierroute.feedback` record to the same log (`serving.prediction_log`). `tierroute data
from-log` lets a "bad" verdict override a stage-1 answer the gate accepted.

Mounted only when the service routes (`--policy`) and logs (`--prediction-log`); protected by the
API key like every /v1 route. Untrusted input: a strict schema (unknown fields, a malformed id or a
verdict other than good/bad are a 422 JSON error), a 4 KiB body cap (413), never a 5xx for bad input.

Trade-off: the id is not looked up (the log is append-only and may have rotated, the service may have
restarted): feedback for an id the log does not hold is accepted and counted by `data from-log` as
unmatched. Feedback is last-write-wins per id when the log is read.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from serving.app.errors import ERRORS
from serving.app.service import ServiceDep

FEEDBACK_PATH = "/v1/feedback"
FEEDBACK_MAX_BODY_BYTES = 4096
REQUEST_ID_PATTERN = r"^[0-9a-f]{32}$"


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: Annotated[
        str,
        Field(
            min_length=32,
            max_length=32,
            pattern=REQUEST_ID_PATTERN,
            description="the x-tierroute-request-id header of the answer (32 lowercase hex digits)",
        ),
    ]
    verdict: Literal["good", "bad"] = Field(description="was the answer acceptable")


class FeedbackResponse(BaseModel):
    accepted: bool
    request_id: str


def feedback_router() -> APIRouter:
    api = APIRouter(tags=["feedback"])

    @api.post(
        FEEDBACK_PATH,
        status_code=202,
        response_model=FeedbackResponse,
        summary="Record a user's verdict (good/bad) on a routed answer",
        responses={k: v for k, v in ERRORS.items() if k in (401, 413, 422)},
    )
    def feedback(body: FeedbackRequest, service: ServiceDep) -> FeedbackResponse:
        log = service.prediction_log
        if log is None:  # lifespan not started or already stopped
            raise HTTPException(503, "the prediction log is not open")
        log.write_feedback(body.request_id, body.verdict)
        return FeedbackResponse(accepted=True, request_id=body.request_id)

    return api
