"""Prometheus metrics of the service, in a registry owned by one app instance.

Job: request counts and latency histograms per endpoint, method and status (recorded by a pure
ASGI middleware, so every response is counted, 404s and errors included), predictions per head and
label, texts and truncations, batch sizes, reload outcomes and the served model version.

Trade-offs: a registry per app (not the global default) lets tests run several apps in one
process; the `endpoint` label is the route template (never the raw path), so scanners probing
random URLs cannot blow up label cardinality. Label children are cached to keep the per-text
cost to one dictionary lookup and an increment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """All metric families of one app, plus the helpers that update them."""

    def __init__(self) -> None:
        disable_created_metrics()  # `_created` series double the exposition for no use here
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total etc.: `bench http` reads CPU per request
        self.requests = Counter(
            "tierroute_http_requests",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tierroute_http_request_duration_seconds",
            "HTTP request latency by endpoint, method and status",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "tierroute_predictions", "Predicted labels per head", ["head", "label"], registry=r
        )
        self.texts = Counter("tierroute_texts_classified", "Texts classified", registry=r)
        self.truncations = Counter(
            "tierroute_texts_truncated", "Texts longer than the encoder window (truncated)", registry=r
        )
        self.batch_size = Histogram(
            "tierroute_inference_batch_texts", "Texts per ONNX call", buckets=BATCH_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "tierroute_inference_seconds",
            "Time of one ONNX call incl. tokenising",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "tierroute_model_info",
            "The served model (value 1)",
            ["name", "version", "alias", "origin"],
            registry=r,
        )
        self.model_loaded_at = Gauge(
            "tierroute_model_loaded_timestamp_seconds", "When the served model was loaded", registry=r
        )
        self.reloads = Counter(
            "tierroute_model_reloads", "Reload attempts by outcome", ["outcome"], registry=r
        )
        self._children: dict[tuple[str, str], Any] = {}

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(endpoint, method, code).inc()
        self.latency.labels(endpoint, method, code).observe(seconds)

    def observe_results(self, results: Iterable[dict[str, Any]], heads: Iterable[str]) -> None:
        head_list = list(heads)
        n = 0
        truncated = 0
        for result in results:
            n += 1
            truncated += bool(result.get("truncated"))
            for head in head_list:
                label = result.get(head)
                if label is None:
                    continue
                key = (head, str(label))
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = self.predictions.labels(head, str(label))
                child.inc()
        self.texts.inc(n)
        if truncated:
            self.truncations.inc(truncated)

    def observe_batch(self, texts: int, seconds: float) -> None:
        self.batch_size.observe(texts)
        self.inference.observe(seconds)

    def set_model(
        self, name: str, version: str | None, alias: str | None, origin: str, loaded_at: float
    ) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version or "", alias or "", origin).set(1)
        self.model_loaded_at.set(loaded_at)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: times every HTTP request and labels it by route template."""

    def __init__(
        self, app: ASGIApp, metrics: ServiceMetrics, known_paths: Callable[[], set[str]] | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self._known_paths = known_paths
        self._paths: set[str] | None = None

    def _endpoint(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if path:
            return str(path)
        # answered before routing (e.g. a 413 by Content-Length): label it only if it is a real route
        if self._paths is None and self._known_paths is not None:
            self._paths = self._known_paths()
        raw = scope.get("path", "")
        return raw if self._paths and raw in self._paths else "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(
                self._endpoint(scope), scope.get("method", ""), status, time.perf_counter() - start
            )
