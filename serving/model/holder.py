"""The served model: load, self-check, atomic swap on reload, and the readiness story.

Job: own the one reference requests read. A reload resolves the source, loads the candidate next
to the running model, runs its self-check (plus what the caller's contract needs), and only then
rebinds the reference. A request (or micro-batch) grabs the reference once and keeps it, so
in-flight work finishes on the old model while new work sees the new one; the old session is freed
when its last user lets go. `Holder` is generic over what is loaded: `ModelHolder` (below) holds
the classifier, `serving.gate.holder.GateHolder` the response gate; both share this one mechanism.

Trade-offs: a reload briefly holds two sessions (about twice the model's memory) and spends CPU
loading while serving; that is the price of never dropping a request. Reloads are serialised by a
lock, so a poll and an admin call cannot race each other into loading the same version twice.
Each model has its own holder (and state), so a broken gate never makes the classifier unready.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, Literal, TypeVar

from serving.model.batcher import CancelToken
from serving.model.bundle import TIER_HEAD, Bundle, BundleError, Prediction
from serving.model.source import ModelSource, ModelSourceError, ResolvedModel
from serving.schemas import RoutingThreshold

log = logging.getLogger("tierroute.serving")

ReloadStatus = Literal["loaded", "unchanged", "refused"]
B = TypeVar("B")


class ModelLoadError(Exception):
    """No model could be loaded at start-up; the message says why."""


@dataclass(frozen=True)
class Loaded(Generic[B]):
    """A loaded model and where it came from; immutable, swapped as a whole."""

    bundle: B
    resolved: ResolvedModel
    loaded_at: float

    def ref(self) -> dict[str, Any]:
        """name, version and alias (a fresh dict)."""
        return dict(self.resolved.ref())


@dataclass(frozen=True)
class LoadedModel(Loaded[Bundle]):
    """The loaded classifier bundle; its `ref()` also carries the routing threshold of a calibrated one."""

    def ref(self) -> dict[str, Any]:
        """name, version, alias and, for a calibrated bundle, its routing threshold (a fresh dict)."""
        return dict(self._ref)

    @cached_property
    def _ref(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.resolved.ref())
        routing = (
            RoutingThreshold.parse(self.resolved.routing)
            if self.resolved.routing is not None
            else RoutingThreshold.from_manifest(self.bundle.manifest)
        )
        if routing is not None:
            out["routing"] = routing.model_dump(exclude_none=True)
        return out


L = TypeVar("L", bound=Loaded[Any])


@dataclass(frozen=True)
class ReloadOutcome(Generic[L]):
    status: ReloadStatus
    reason: str | None
    model: L | None


@dataclass
class _Status:
    last_reload_at: float | None = None
    last_reload_status: ReloadStatus | None = None
    last_reload_reason: str | None = None
    registry_note: str | None = None
    reloads: dict[str, int] = field(default_factory=lambda: {"loaded": 0, "unchanged": 0, "refused": 0})


class Holder(Generic[L]):
    """Holds the current `L`; `reload()` swaps it only for a candidate that loads and self-checks.

    Subclasses say how to load (`_load`: raise BundleError/OSError to refuse a candidate), what a
    failed start raises (`load_error`) and what to call the model in messages (`noun`, `candidate`).
    """

    load_error: type[ModelLoadError] = ModelLoadError
    noun = "model"
    candidate = "version"  # "refused version 3 from ...": what a refused candidate is called

    def __init__(
        self,
        source: ModelSource,
        *,
        threads: int = 1,
        on_change: Callable[[L], None] | None = None,
        on_reload: Callable[[ReloadStatus], None] | None = None,
    ) -> None:
        self.source = source
        self.threads = threads
        self._loaded: L | None = None
        self._lock = threading.Lock()
        self._status = _Status()
        self._on_change = on_change
        self._on_reload = on_reload

    def _load(self, resolved: ResolvedModel) -> L:
        raise NotImplementedError

    def _cannot_serve(self, resolved: ResolvedModel) -> str:
        return f"cannot serve {resolved.path}"

    @property
    def loaded(self) -> L | None:
        return self._loaded

    def require(self) -> L:
        model = self._loaded
        if model is None:
            raise self.load_error(f"no {self.noun} loaded")
        return model

    def set_callbacks(
        self, on_change: Callable[[L], None] | None, on_reload: Callable[[ReloadStatus], None] | None
    ) -> None:
        self._on_change = on_change
        self._on_reload = on_reload
        if on_change is not None and self._loaded is not None:
            on_change(self._loaded)

    def load_initial(self) -> L:
        """First load; raises `load_error` with a message fit for a user."""
        with self._lock:
            try:
                resolved = self.source.resolve()
            except ModelSourceError as exc:
                raise self.load_error(str(exc)) from exc
            try:
                model = self._load(resolved)
            except (BundleError, OSError) as exc:
                raise self.load_error(f"{self._cannot_serve(resolved)}: {exc}") from exc
            self._install(model)
            self._status.registry_note = resolved.note
            if resolved.note:
                log.warning("%s", resolved.note)
            return model

    def reload(self, *, force: bool = False) -> ReloadOutcome[L]:
        """Resolve again; swap in a changed (or, with force, any) bundle that loads and self-checks."""
        with self._lock:
            outcome = self._reload(force=force)
            st = self._status
            st.last_reload_at = time.time()
            st.last_reload_status = outcome.status
            st.last_reload_reason = outcome.reason
            st.reloads[outcome.status] += 1
        if self._on_reload is not None:
            self._on_reload(outcome.status)
        return outcome

    def _reload(self, *, force: bool) -> ReloadOutcome[L]:
        current = self._loaded
        try:
            resolved = self.source.resolve()
        except ModelSourceError as exc:
            reason = f"refused: {exc}; still serving the current {self.noun}"
            log.error("%s reload %s", self.noun, reason)
            return ReloadOutcome("refused", reason, current)
        if resolved.note and resolved.note != self._status.registry_note:
            log.warning("%s", resolved.note)  # once per change: /readyz shows only a fixed reason
        self._status.registry_note = resolved.note
        if current is not None and not force and resolved.fingerprint == current.resolved.fingerprint:
            if resolved.origin == "registry" and current.resolved.origin == "cache":
                # same bundle, registry back: no longer a stale cache
                self._loaded = dataclasses.replace(current, resolved=resolved)
                self.source.remember(resolved)
                if self._on_change is not None:
                    self._on_change(self._loaded)
            return ReloadOutcome("unchanged", resolved.note, self._loaded)
        try:
            model = self._load(resolved)
        except (BundleError, OSError) as exc:
            which = resolved.version or resolved.fingerprint[:12]
            reason = f"refused {self.candidate} {which} from {resolved.path}: {exc}"
            log.error("reload %s; still serving %s", reason, _describe(current))
            return ReloadOutcome("refused", reason, current)
        self._install(model)
        log.info("%s reload: now serving %s (was %s)", self.noun, _describe(model), _describe(current))
        return ReloadOutcome("loaded", None, model)

    def _install(self, model: L) -> None:
        self._loaded = model  # one reference rebind: atomic for readers
        self.source.remember(model.resolved)
        if self._on_change is not None:
            self._on_change(model)

    def readiness(self, *, detail: bool = True) -> dict[str, Any]:
        """Which model, from where, whether it is a stale cache, the last reload.

        `detail=False` is what the unauthenticated /readyz shows: no local paths, no tracking URI, no
        registry or loader error text (a short fixed reason instead); those are logged when they
        happen and shown with `detail=True` (/admin/status).
        """
        model = self._loaded
        st = self._status
        stale = bool(model and model.resolved.origin == "cache")
        last: dict[str, Any] | None = None
        if st.last_reload_at is not None:
            reason = st.last_reload_reason
            if not detail and reason is not None:
                refused = st.last_reload_status == "refused"
                reason = "candidate refused; details in the server log" if refused else None
            last = {"at": st.last_reload_at, "status": st.last_reload_status, "reason": reason}
        if detail:
            why = st.registry_note if model else f"no {self.noun} loaded"
            source = self.source.uri
        else:
            cached = "registry unavailable; serving the last good cached bundle"
            why = (cached if stale else None) if model else f"no {self.noun} loaded"
            source = self.source.uri if self.source.uri.startswith("models:/") else "local bundle folder"
        return {
            "ready": model is not None,
            "model": model.ref() if model else None,
            "source": source,
            "origin": model.resolved.origin if model else None,
            "stale": stale,
            "reason": why,
            "last_reload": last,
        }


class ModelHolder(Holder[LoadedModel]):
    """Holds the served classifier; a candidate must also have the `tier` head the classify contract needs."""

    @property
    def current(self) -> LoadedModel | None:
        return self._loaded

    def _load(self, resolved: ResolvedModel) -> LoadedModel:
        bundle = Bundle.load(resolved.path, threads=self.threads)
        if TIER_HEAD not in bundle.head_names:
            raise BundleError(f"{resolved.path}: no '{TIER_HEAD}' head; the classify contract needs one")
        bundle.self_check()
        return LoadedModel(bundle=bundle, resolved=resolved, loaded_at=time.time())

    def predict(
        self, texts: Sequence[str], cancel: CancelToken | None = None
    ) -> tuple[LoadedModel, list[Prediction]]:
        """Run `texts` on the model current at call time; returns that model with the results.
        `cancel` aborts the call when nobody waits for it (see `serving.model.batcher`)."""
        model = self.require()
        return model, model.bundle.predict(texts, cancel)


def _describe(model: Loaded[Any] | None) -> str:
    if model is None:
        return "nothing"
    r = model.resolved
    return f"{r.name} version {r.version or '-'} ({r.origin}, {r.fingerprint[:12]})"
