"""The served gate model: the shared hot-reload holder (`serving.model.holder.Holder`) for a GateModel.

Job: own the one reference `/v1/gate` and the cascade read (`holder.current`), resolved from the
same sources as the classifier (`serving.model.source`: a bundle folder, `models:/tierroute-gate@alias`
with a last-good local cache). A reload loads and self-checks the candidate next to the running
gate and only then rebinds the reference, so in-flight requests finish on the old gate; a
candidate that fails to load or self-check is refused and the old gate keeps serving.

Trade-off: the gate has its own holder (and state) rather than sharing the classifier's, so a
broken gate never makes the classifier unready; its readiness is a smaller block inside /readyz.
"""

from __future__ import annotations

import time
from typing import Any

from serving.gate.model import GateModel
from serving.model.holder import Holder, Loaded, ModelLoadError
from serving.model.source import ResolvedModel

LoadedGate = Loaded[GateModel]


class GateLoadError(ModelLoadError):
    """No gate could be loaded; the message says why."""


class GateHolder(Holder[LoadedGate]):
    """Holds the current GateModel; `reload()` swaps it only for a candidate that works."""

    load_error = GateLoadError
    noun = "gate"
    candidate = "gate"

    @property
    def current(self) -> GateModel | None:
        loaded = self._loaded
        return loaded.bundle if loaded is not None else None

    def _cannot_serve(self, resolved: ResolvedModel) -> str:
        return "cannot serve the gate"

    def _load(self, resolved: ResolvedModel) -> LoadedGate:
        gate = GateModel.load(resolved.path, threads=self.threads)
        gate.self_check()
        gate.ref = resolved.ref()
        return Loaded(bundle=gate, resolved=resolved, loaded_at=time.time())

    def readiness(self, *, detail: bool = True) -> dict[str, Any]:
        """The gate's part of /readyz (`detail=False`: no paths or error texts) or /admin/status."""
        full = super().readiness(detail=detail)
        return {key: full[key] for key in ("ready", "model", "origin", "last_reload")}
