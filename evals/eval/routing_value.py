"""Routing value (APGR, strong share for 50% / 80% of the gap): lives in `pipelines.train.routing_value`.

`tierroute train` reports leave-one-source-out routing value, and pipelines cannot import evals, so the
implementation moved there; this module re-exports it for the evaluation code and its users.
"""

from pipelines.train.routing_value import (
    RoutingCurve,
    RoutingValue,
    apgr,
    evaluate_router,
    oracle_score,
    routing_curve,
    share_for_gap,
)

__all__ = [
    "RoutingCurve",
    "RoutingValue",
    "apgr",
    "evaluate_router",
    "oracle_score",
    "routing_curve",
    "share_for_gap",
]
