"""GateHolder: load, hot reload to a new bundle, refuse a corrupt one and keep serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serving.gate.holder import GateHolder, GateLoadError
from serving.model.source import LocalSource

pytestmark = pytest.mark.slow


def test_reload_swaps_and_refuses_corrupt(gate_bundle: Path, tmp_path: Path) -> None:
    live = tmp_path / "live"
    shutil.copytree(gate_bundle, live)
    holder = GateHolder(LocalSource(live))
    first = holder.load_initial().bundle  # the loaded record: the gate, where from, when
    assert holder.current is first
    assert holder.reload().status == "unchanged"

    # a changed but valid bundle (new threshold) is swapped in
    manifest = json.loads((live / "bundle.json").read_text())
    manifest["thresholds"]["p_acceptable"] = 0.42
    (live / "bundle.json").write_text(json.dumps(manifest))
    out = holder.reload()
    assert out.status == "loaded" and holder.current is not first
    assert holder.current is not None and holder.current.threshold == 0.42
    second = holder.current

    # a corrupt model file is refused; the previous gate keeps serving
    with (live / "model.onnx").open("r+b") as fh:
        fh.seek(500)
        fh.write(b"garbage!")
    manifest["thresholds"]["p_acceptable"] = 0.5  # change the manifest so the reload is attempted
    (live / "bundle.json").write_text(json.dumps(manifest))
    out = holder.reload()
    assert out.status == "refused" and "sha256" in (out.reason or "")
    assert holder.current is second
    assert holder.readiness()["ready"] is True


def test_missing_bundle_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(GateLoadError):
        GateHolder(LocalSource(tmp_path / "nope")).load_initial()


def test_reordered_reason_labels_are_refused_and_the_old_gate_keeps_serving(
    gate_bundle: Path, tmp_path: Path
) -> None:
    """bundle.json is not among its own hashed files: the recorded self-check outputs catch a swap."""
    live = tmp_path / "live"
    shutil.copytree(gate_bundle, live)
    holder = GateHolder(LocalSource(live))
    first = holder.load_initial().bundle  # the loaded record: the gate, where from, when
    manifest = json.loads((live / "bundle.json").read_text())
    reason = next(h for h in manifest["heads"] if h["name"] == "reason")
    reason["labels"] = reason["labels"][::-1]
    (live / "bundle.json").write_text(json.dumps(manifest))
    out = holder.reload()
    assert out.status == "refused" and "self-check" in (out.reason or "")
    assert holder.current is first
    assert "self-check" not in str(holder.readiness(detail=False))  # public readiness: no error text
    with pytest.raises(GateLoadError, match="self-check"):
        GateHolder(LocalSource(live)).load_initial()
