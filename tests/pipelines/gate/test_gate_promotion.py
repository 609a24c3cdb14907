"""Gate promotion when the champion was trained with signals this runtime no longer computes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_a_champion_this_runtime_cannot_load_does_not_block_promotion(
    gate_bundle: Path, gate_dataset: Path, tracking_uri: str, tmp_path: Path
) -> None:
    from pipelines.gate.promotion import GATE_KEY_METRICS, same_rows_check
    from pipelines.registry import TrainingRecord, log_and_register, promote

    old = tmp_path / "old-gate"
    shutil.copytree(gate_bundle, old)
    manifest = json.loads((old / "bundle.json").read_text())
    manifest["signals"]["version"] = 1  # what a gate trained before signals v2 carries
    (old / "bundle.json").write_text(json.dumps(manifest))
    check = same_rows_check(gate_dataset, limit=20)
    metrics = {"test_gate_accept_recall": 0.8, "test_gate_reject_recall": 0.8}
    for bundle in (old, gate_bundle):
        record = TrainingRecord(experiment="g", metrics=metrics)
        log_and_register(record, bundle, model_name="tierroute-gate", alias="candidate")
        result = promote(
            "tierroute-gate", metric_keys=GATE_KEY_METRICS, extra_checks=[check], same_rows_check=check
        )
        assert result.promoted, result.reason
    notes = [r.note for r in result.rows if r.metric == "gate same rows"]
    assert notes and "does not load in this runtime" in notes[0]
