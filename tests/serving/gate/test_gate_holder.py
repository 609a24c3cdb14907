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


def test_a_signals_v2_bundle_still_loads_and_gets_v2_features(gate_bundle: Path, tmp_path: Path) -> None:
    from serving.gate.model import GateItem, GateModel
    from serving.gate.signals import SIGNALS_VERSION

    assert json.loads((gate_bundle / "bundle.json").read_text())["signals"]["version"] == SIGNALS_VERSION == 3
    old = tmp_path / "v2"
    shutil.copytree(gate_bundle, old)
    manifest = json.loads((old / "bundle.json").read_text())
    manifest["signals"]["version"] = 2  # a gate trained before the hedge-then-help rule
    (old / "bundle.json").write_text(json.dumps(manifest))
    hedge = (
        "Unfortunately I do not have a comprehensive list of bakeries founded by women in Lyon. A few known "
        "examples:\n1. Maison Pozzoli, started in 1998 by two sisters.\n2. Le Fournil de Marie, an organic "
        "bakery in the Croix-Rousse.\n3. Atelier Dora, famous for its pralines and sourdough.\nLocal food "
        "guides and the chamber of commerce list many more, with opening years, owners and neighbourhoods."
    )
    item = [GateItem("Which bakeries in Lyon were founded by women?", hedge)]
    v2, v3 = GateModel.load(old), GateModel.load(gate_bundle)
    assert (v2.signals_version, v3.signals_version) == (2, 3)
    # the same weights see a different refusal signal, so the two scores differ
    p2, p3 = v2.decide(item)[0].p_acceptable, v3.decide(item)[0].p_acceptable
    assert p2 is not None and p3 is not None and p2 != p3
