"""Prometheus metrics of the router, on the default registry (what the serving app's /metrics exposes).

Job: one place that declares every router metric, created once per process, so several `Router`
instances (tests, workers) share them instead of colliding on registration. The decision path
itself records nothing (it stays pure); `complete()` and the HTTP endpoint do.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DECISIONS = Counter(
    "tierroute_router_decisions_total",
    "Routing decisions executed, by chosen model and deciding dimension",
    ["model", "decided_by"],
)
CLASSIFIER_FALLBACKS = Counter(
    "tierroute_router_classifier_fallbacks_total",
    "Decisions where the classifier did not decide (timeout, unavailable, garbage, low confidence)",
    ["status"],
)
SPEND = Counter("tierroute_router_spend_usd_total", "USD spent, from real token usage", ["model"])
BUDGET_SPENT = Gauge("tierroute_router_budget_spent_usd", "USD spent today (this process's latest view)")
FAILURES = Counter("tierroute_router_failures_total", "Requests that failed after every fallback", ["error"])
CASCADE_REQUESTS = Counter(
    "tierroute_cascade_requests_total",
    "Cascade requests by outcome (accepted, escalated, skipped)",
    ["route", "outcome"],
)
CASCADE_FALLBACK_RATE = Gauge(
    "tierroute_cascade_fallback_rate", "Rolling share of stage-1 answers the gate rejected", ["route"]
)
CASCADE_ALARM = Gauge(
    "tierroute_cascade_alarm", "1 while the rolling fallback rate is above the threshold", ["route"]
)
CASCADE_ALARMS = Counter("tierroute_cascade_alarms_total", "Times the fallback-rate alarm went up", ["route"])
