"""Prometheus metrics of the router, registered into the registry that is actually served.

Job: one place that declares every router metric. `RouterMetrics(registry)` creates the series in
the given registry; `RouterMetrics.for_registry()` returns one shared instance per registry, so
several `Router`s (tests, workers, reloads) feeding the same registry do not collide on
registration. The service passes the registry its `/metrics` renders (`serving.extensions`);
a router used as a library, without one, registers into prometheus_client's default registry.
The decision path itself records nothing (it stays pure); `complete()` and the HTTP endpoint do.
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


class RouterMetrics:
    """Every router series, in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.registry = registry
        self.decisions = Counter(
            "tierroute_router_decisions_total",
            "Routing decisions executed, by chosen model and deciding dimension",
            ["model", "decided_by"],
            registry=r,
        )
        self.classifier_fallbacks = Counter(
            "tierroute_router_classifier_fallbacks_total",
            "Decisions where the classifier did not decide (timeout, unavailable, garbage, low confidence)",
            ["status"],
            registry=r,
        )
        self.spend = Counter(
            "tierroute_router_spend_usd_total", "USD spent, from real token usage", ["model"], registry=r
        )
        self.budget_spent = Gauge(
            "tierroute_router_budget_spent_usd", "USD spent today (this process's latest view)", registry=r
        )
        self.failures = Counter(
            "tierroute_router_failures_total",
            "Requests that failed after every fallback",
            ["error"],
            registry=r,
        )
        self.cascade_requests = Counter(
            "tierroute_cascade_requests_total",
            "Cascade requests by outcome (accepted, escalated, skipped)",
            ["route", "outcome"],
            registry=r,
        )
        self.cascade_fallback_rate = Gauge(
            "tierroute_cascade_fallback_rate",
            "Rolling share of stage-1 answers the gate rejected",
            ["route"],
            registry=r,
        )
        self.cascade_alarm = Gauge(
            "tierroute_cascade_alarm",
            "1 while the rolling fallback rate is above the threshold",
            ["route"],
            registry=r,
        )
        self.cascade_alarms = Counter(
            "tierroute_cascade_alarms_total", "Times the fallback-rate alarm went up", ["route"], registry=r
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> RouterMetrics:
        """The one `RouterMetrics` of `registry` (default: prometheus_client's global registry)."""
        reg = REGISTRY if registry is None else registry
        with _LOCK:
            found = _SHARED.get(reg)
            if found is None:
                found = _SHARED[reg] = cls(reg)
            return found


_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, RouterMetrics] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
