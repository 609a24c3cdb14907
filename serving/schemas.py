"""The HTTP contract of the classify service, as pydantic models.

Job: the request/response shapes that other code (routers, LiteLLM hooks, the Python client)
relies on exactly. Trade-off: extra heads a user trained are open-ended, so results allow extra
fields (`<head>` and `<head>_probs`) instead of a closed schema.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ClassifyRequest(BaseModel):
    """Either `texts` (1..N strings) or `text` (one string). Strict: no coercion of other types."""

    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str] | None = Field(default=None, description="1 to max_texts texts, answered in order")
    text: str | None = Field(default=None, description="a single text; same as texts=[text]")


class RoutingThreshold(BaseModel):
    """The calibrated weak/strong cut (`tierroute calibrate`): strong model iff score >= threshold."""

    score: str = Field(default="complexity", description="result field the threshold applies to")
    strong_if_at_least: float
    objective: str | None = Field(default=None, description="target_share, quality_floor or budget")
    target: float | None = None

    def apply(self, result: Any) -> tuple[str, str] | None:
        """(tier, explanation) for a classify result: at or over the cut the predicted tier, lifted to
        at least `complex`; under it `simple`. None when the result lacks a finite score."""
        score = self.score_of(result)
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            return None
        strong = score >= self.strong_if_at_least
        predicted = str(getattr(result, "tier", ""))
        tier = ("complex" if predicted == "simple" else predicted) if strong else "simple"
        return tier, (
            f"{self.score} {score:.3f} {'>=' if strong else '<'} calibrated threshold "
            f"{self.strong_if_at_least:.3f} -> {tier}"
        )

    def score_of(self, result: Any) -> Any:
        """The score `tierroute calibrate` thresholded: `complexity`, `HEAD:LABEL` (that probability)
        or `not:HEAD:LABEL` (one minus it); None when the result does not carry it."""
        if ":" not in self.score:
            return getattr(result, self.score, None)
        negate = self.score.startswith("not:")
        head, _, label = (self.score[4:] if negate else self.score).partition(":")
        probs = getattr(result, f"{head}_probs", None)
        if not isinstance(probs, Mapping) or label not in probs:
            return None
        value = probs[label]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return 1.0 - value if negate else value

    @classmethod
    def parse(cls, raw: Any) -> RoutingThreshold | None:
        """A threshold from what `tierroute calibrate` stores (bundle `thresholds.routing` or the
        version tag's JSON), or None when it is absent or has no usable `strong_if_at_least`."""
        if not isinstance(raw, Mapping):
            return None
        try:
            threshold = float(raw["strong_if_at_least"])
        except (KeyError, TypeError, ValueError):
            return None
        target = raw.get("target")
        return cls(
            score=str(raw.get("score", "complexity")),
            strong_if_at_least=threshold,
            objective=raw.get("objective"),
            target=target if isinstance(target, int | float) else None,
        )

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> RoutingThreshold | None:
        """`thresholds.routing` of a bundle.json, or None when the bundle was never calibrated."""
        return cls.parse((manifest.get("thresholds") or {}).get("routing"))


class ModelRef(BaseModel):
    name: str
    version: str | None = None
    alias: str | None = None
    routing: RoutingThreshold | None = Field(
        default=None, description="the served bundle's calibrated routing threshold, when it has one"
    )


class ClassifyResult(BaseModel):
    """One text's classification. Extra heads appear as `<head>` and `<head>_probs`."""

    model_config = ConfigDict(extra="allow")
    tier: str
    tier_probs: dict[str, float]
    task: str | None = None
    task_probs: dict[str, float] | None = None
    complexity: float = Field(
        ge=0.0,
        le=1.0,
        description="0 = the cheapest model will do, 1 = needs the strongest: 1 - p_weak_ok when the bundle "
        "has a routing head, else the expected tier index / 2",
    )
    confidence: float = Field(ge=0.0, le=1.0, description="max tier probability")
    tokens: int = Field(ge=0, description="token count of the text before truncation")
    truncated: bool
    p_weak_ok: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="calibrated P(the cheap model's answer is as good as the strong model's); null when the "
        "bundle has no routing head",
    )
    stage: Literal["fast", "full"] | None = Field(
        default=None,
        description="two-stage bundles only: which stage answered (static fast path or MiniLM)",
    )


class ClassifyResponse(BaseModel):
    model: ModelRef
    results: list[ClassifyResult]


class ErrorResponse(BaseModel):
    detail: str
