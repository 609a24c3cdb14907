"""Optional parts of the service owned by other areas: the gate, the policy router, the prediction log.

Job: load and wire what `tierroute serve` mounts next to /v1/classify when configured:
`POST /v1/gate` (`serving.gate.http`, backed by a hot-reloadable `GateHolder`),
`POST /v1/chat/completions` (`serving.router.http`, when `--policy` is given) and the opt-in
prediction log (`serving.prediction_log`). Each import happens only when its feature is used, so a
plain classify service imports none of them (and LiteLLM in particular stays out).

Trade-offs:
- Inside the service the router's classifier is the served model, called in process through the
  model holder (`HolderClassifier`): no HTTP hop to ourselves, and it follows hot reloads. The
  policy's own classifier URL/bundle is used only when the router runs outside the service.
- A gate that fails to load does not stop the service: /v1/gate answers from the deterministic
  checks (`decided_by: checks_only`) and /readyz says why; a later reload can bring it in.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from serving.model.batcher import CancelToken
from serving.model.holder import ModelHolder
from serving.model.source import create_source
from serving.schemas import ClassifyResponse, ClassifyResult, ModelRef
from serving.settings import ServeSettings

if TYPE_CHECKING:
    from serving.gate.holder import GateHolder

log = logging.getLogger("tierroute.serving")


def available(module: str) -> bool:
    """Whether an optional module is importable (its area has landed / its extra is installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class HolderClassifier:
    """The served model behind the router's `ClassifierBackend` protocol (in process, hot-reload aware)."""

    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder

    def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        return self._respond(texts, None)

    def predict_results(
        self, texts: Sequence[str], cancel: CancelToken | None = None
    ) -> tuple[ModelRef, list[ClassifyResult]]:
        """The router's batched, cancellable path (`serving.client.deadline.CancellableBackend`)."""
        response = self._respond(texts, cancel)
        return response.model, response.results

    def _respond(self, texts: Sequence[str], cancel: CancelToken | None) -> ClassifyResponse:
        if isinstance(texts, str):
            raise TypeError("classify() takes a sequence of texts, not a single string")
        model, predictions = self.holder.predict(list(texts), cancel)
        return ClassifyResponse.model_validate(
            {"model": model.ref(), "results": [p.to_result() for p in predictions]}
        )


DEFAULT_GATE_URI = "models:/tierroute-gate@champion"
NO_GATE = frozenset({"none", "off", ""})


def load_gate(settings: ServeSettings) -> GateHolder | None:
    """A GateHolder for `settings.gate_model` (loaded if possible), or None when no gate is configured.

    No `gate_model` and a registry classifier (`models:/...`): `DEFAULT_GATE_URI` when it exists
    (`tierroute demo` registers and promotes one), else no gate. `gate_model` "none" turns it off."""
    if settings.gate_model is not None and settings.gate_model.strip().lower() in NO_GATE:
        return None
    from serving.gate.holder import GateHolder, GateLoadError

    default = settings.gate_model is None
    if default and not settings.model.startswith("models:/"):
        return None
    source = create_source(
        DEFAULT_GATE_URI if default else str(settings.gate_model),
        tracking_uri=settings.tracking_uri,
        cache_dir=settings.cache_dir,
    )
    gate = GateHolder(source, threads=settings.threads)
    try:
        gate.load_initial()
    except GateLoadError as exc:
        if default:
            log.info(
                "no %s to serve (%s); /v1/gate runs the deterministic checks only", DEFAULT_GATE_URI, exc
            )
            return None
        log.error("gate not loaded, /v1/gate answers from the deterministic checks only: %s", exc)
    return gate


def gate_router(get_gate: Any, settings: ServeSettings, dependencies: Sequence[Any], registry: Any) -> Any:
    """`POST /v1/gate`, or None when the gate area is not installed."""
    if not available("serving.gate.http"):
        return None
    from serving.gate.http import build_gate_router

    return build_gate_router(get_gate, settings, dependencies=dependencies, registry=registry)


def build_policy_router(
    settings: ServeSettings, holder: ModelHolder, registry: Any = None, outcome_log: Any = None
) -> Any:
    """The policy router for /v1/chat/completions, its classifier being the served model.

    `registry`: the Prometheus registry the app's /metrics renders; the router's
    `tierroute_router_*` / `tierroute_cascade_*` series go there (None: the global default).
    `outcome_log`: the prediction log, which then records every routed request's outcome."""
    from serving.router import Router, load_policy

    assert settings.policy is not None
    policy = load_policy(settings.policy)
    classifier = HolderClassifier(holder) if policy.classifier is not None else None
    return Router(policy, classifier=classifier, registry=registry, outcome_log=outcome_log).warm()


def chat_router(router: Any) -> Any:
    from serving.router.http import build_chat_router

    return build_chat_router(router)


def check_policy(settings: ServeSettings) -> str | None:
    """A user-facing problem with `--policy`, or None; run before the server starts."""
    if settings.policy is None:
        return None
    if not available("serving.router.http"):
        return "--policy needs the router (serving.router), which is not installed"
    if not settings.policy.is_file():
        return f"policy file not found: {settings.policy}"
    from serving.router import PolicyError, load_policy

    try:
        load_policy(settings.policy)
    except PolicyError as exc:
        return f"invalid policy {settings.policy}: {exc}"
    return None


def open_prediction_log(settings: ServeSettings) -> Any:
    """The opt-in prediction log, or None (not configured, or the module is missing)."""
    if settings.prediction_log is None:
        return None
    if not available("serving.prediction_log"):
        log.warning(
            "prediction_log is set but serving.prediction_log is not available; not logging predictions"
        )
        return None
    from serving.prediction_log import PredictionLog

    return PredictionLog(settings.prediction_log, include_text=settings.prediction_log_texts)
