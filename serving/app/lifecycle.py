"""What runs between start-up and shutdown: load (or adopt) the model, start the inference pool, the
optional gate, policy router and prediction log, and the reload poller; stop them in reverse.

Nothing heavy happens at import or build time: all of this runs in the lifespan (`tierroute serve`
hands in a model holder it already loaded, so a missing model is a one-line error instead of a
lifespan traceback). Routes are registered when the app is built, never here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from serving import extensions
from serving.app.classify import make_predict
from serving.app.metrics import ServiceMetrics
from serving.app.ops import reload_all
from serving.app.service import Service
from serving.model.batcher import Inference
from serving.model.holder import LoadedModel, ModelHolder, ReloadStatus
from serving.model.source import create_source

log = logging.getLogger("tierroute.serving")


class LiveRouter:
    """The policy router the lifespan builds, for the chat route that is mounted before it exists."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def acomplete(self, *args: Any, **kwargs: Any) -> Any:
        router = self.service.router
        if router is None:
            raise RuntimeError("the policy router is not running (service starting or shutting down)")
        return router.acomplete(*args, **kwargs)


def _on_change(metrics: ServiceMetrics) -> Callable[[LoadedModel], None]:
    def update(model: LoadedModel) -> None:
        r = model.resolved
        metrics.set_model(r.name, r.version, r.alias, r.origin, model.loaded_at)

    return update


def _on_reload(metrics: ServiceMetrics) -> Callable[[ReloadStatus], None]:
    def count(status: ReloadStatus) -> None:
        metrics.reloads.labels(status).inc()

    return count


async def _poll(service: Service, interval_s: float) -> None:
    """Re-resolve the sources every `interval_s`; the holders swap only changed, working bundles."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval_s)
        try:
            await loop.run_in_executor(None, reload_all, service)
        except Exception:
            log.exception("model poll failed")


async def _load_holder(service: Service, holder: ModelHolder | None) -> ModelHolder:
    """The given holder, or a new one loaded from the configured source (off the event loop)."""
    settings = service.settings
    if holder is None:
        source = create_source(
            settings.model, tracking_uri=settings.tracking_uri, cache_dir=settings.cache_dir
        )
        holder = ModelHolder(source, threads=settings.threads)
        await asyncio.get_running_loop().run_in_executor(None, holder.load_initial)
    holder.set_callbacks(_on_change(service.metrics), _on_reload(service.metrics))
    return holder


def _start_inference(service: Service, holder: ModelHolder) -> Inference[LoadedModel, dict[str, Any]]:
    settings = service.settings
    return Inference(
        make_predict(holder, service.prediction_log),
        workers=settings.workers,
        batching=settings.batching,
        max_batch=settings.max_batch,
        wait_ms=settings.batch_wait_ms,
        max_queue=settings.max_queue,
        cancellable=True,
        observe=service.metrics.observe_batch,
    )


async def start(service: Service, holder: ModelHolder | None) -> None:
    """Load (or adopt) the model, start inference, the optional parts and the poller."""
    settings = service.settings
    loop = asyncio.get_running_loop()
    holder = service.holder = await _load_holder(service, holder)
    service.prediction_log = extensions.open_prediction_log(settings)
    service.inference = _start_inference(service, holder)
    service.gate = await loop.run_in_executor(None, extensions.load_gate, settings)
    if settings.policy is not None:
        service.router = await loop.run_in_executor(
            None,
            extensions.build_policy_router,
            settings,
            holder,
            service.metrics.registry,
            service.prediction_log,
        )
    if settings.reload_interval_s > 0:
        service.tasks.append(asyncio.create_task(_poll(service, settings.reload_interval_s)))
    r = holder.require().resolved
    log.info(
        "serving %s version %s (%s) from %s; batching=%s workers=%d threads=%d%s%s",
        r.name,
        r.version or "-",
        r.origin,
        r.path,
        settings.batching,
        settings.workers,
        settings.threads,
        f"; gate {settings.gate_model}" if settings.gate_model else "",
        f"; policy {settings.policy}" if settings.policy else "",
    )


async def stop(service: Service) -> None:
    """Stop the poller, drain the inference pool, close the router and the prediction log."""
    for task in service.tasks:
        task.cancel()
    loop = asyncio.get_running_loop()
    engine, service.inference = service.inference, None
    if engine is not None:
        await loop.run_in_executor(None, engine.close)
    router, service.router = service.router, None
    if router is not None:
        router.close()
    if service.prediction_log is not None:
        service.prediction_log.close()
