"""The served gate model: load, self-check, atomic swap on reload (the gate's twin of ModelHolder).

Job: own the one reference `/v1/gate` and the cascade read (`holder.current`), resolved from the
same sources as the classifier (`serving.model_source`: a bundle folder, `models:/tierroute-gate@alias`
with a last-good local cache). A reload loads and self-checks the candidate next to the running
gate and only then rebinds the reference, so in-flight requests finish on the old gate; a
candidate that fails to load or self-check is refused and the old gate keeps serving.

Trade-off: a copy of `serving.model_holder.ModelHolder` specialised to `GateModel` rather than a
generic holder: the classifier's holder checks the classify contract (a `tier` head) and owns
the service's readiness; keeping the gate's state separate means a broken gate never makes the
classifier unready.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from serving.bundle import BundleError
from serving.gate.model import GateModel
from serving.model_source import ModelSource, ModelSourceError, ResolvedModel

log = logging.getLogger("tierroute.gate")

GateReloadStatus = Literal["loaded", "unchanged", "refused"]


class GateLoadError(Exception):
    """No gate could be loaded; the message says why."""


@dataclass(frozen=True)
class GateReloadOutcome:
    status: GateReloadStatus
    reason: str | None
    model: GateModel | None


class GateHolder:
    """Holds the current GateModel; `reload()` swaps it only for a candidate that works."""

    def __init__(self, source: ModelSource, *, threads: int = 1) -> None:
        self.source = source
        self.threads = threads
        self._current: GateModel | None = None
        self._resolved: ResolvedModel | None = None
        self._lock = threading.Lock()
        self.loaded_at: float | None = None
        self.last_reload: dict[str, Any] | None = None

    @property
    def current(self) -> GateModel | None:
        return self._current

    def _load(self, resolved: ResolvedModel) -> GateModel:
        gate = GateModel.load(resolved.path, threads=self.threads)
        gate.self_check()
        gate.ref = resolved.ref()
        return gate

    def _install(self, gate: GateModel, resolved: ResolvedModel) -> None:
        self._current = gate  # one reference rebind: atomic for readers
        self._resolved = resolved
        self.loaded_at = time.time()
        self.source.remember(resolved)

    def load_initial(self) -> GateModel:
        with self._lock:
            try:
                resolved = self.source.resolve()
                gate = self._load(resolved)
            except ModelSourceError as exc:
                raise GateLoadError(str(exc)) from exc
            except (BundleError, OSError) as exc:
                raise GateLoadError(f"cannot serve the gate: {exc}") from exc
            self._install(gate, resolved)
            return gate

    def reload(self, *, force: bool = False) -> GateReloadOutcome:
        with self._lock:
            outcome = self._reload(force)
            self.last_reload = {"at": time.time(), "status": outcome.status, "reason": outcome.reason}
            return outcome

    def _reload(self, force: bool) -> GateReloadOutcome:
        current = self._current
        try:
            resolved = self.source.resolve()
        except ModelSourceError as exc:
            log.error("gate reload refused: %s", exc)
            return GateReloadOutcome("refused", f"refused: {exc}; still serving the current gate", current)
        same = self._resolved is not None and resolved.fingerprint == self._resolved.fingerprint
        if current is not None and not force and same:
            return GateReloadOutcome("unchanged", resolved.note, current)
        try:
            gate = self._load(resolved)
        except (BundleError, OSError) as exc:
            reason = (
                f"refused gate {resolved.version or resolved.fingerprint[:12]} from {resolved.path}: {exc}"
            )
            log.error("gate reload %s", reason)
            return GateReloadOutcome("refused", reason, current)
        self._install(gate, resolved)
        log.info("gate reload: now serving %s", gate.ref)
        return GateReloadOutcome("loaded", None, gate)

    def readiness(self, *, detail: bool = True) -> dict[str, Any]:
        """The gate's part of /readyz (`detail=False`: no paths or error texts) or /admin/status."""
        gate = self._current
        last = self.last_reload
        if last is not None and not detail:
            refused = last.get("status") == "refused"
            last = {**last, "reason": "candidate refused; details in the server log" if refused else None}
        return {
            "ready": gate is not None,
            "model": gate.ref if gate else None,
            "origin": self._resolved.origin if self._resolved else None,
            "last_reload": last,
        }
