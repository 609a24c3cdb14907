"""Out of the box: the gate is promoted with its own check and served by default from the registry."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.server import start_server

pytestmark = pytest.mark.slow


def test_gate_promotion_same_rows_and_default_serving(
    serving_bundle: Path, gate_bundle: Path, gate_dataset: Path, tracking_uri: str, tmp_path: Path
) -> None:
    from pipelines.gate.promotion import GATE_KEY_METRICS, same_rows_check
    from pipelines.registry import TrainingRecord, log_and_register, promote

    classifier = TrainingRecord(
        experiment="c", metrics={"test_tier_macro_f1": 0.5, "test_task_macro_f1": 0.5}
    )
    log_and_register(classifier, serving_bundle, model_name="tierroute-classifier", alias="candidate")
    assert promote("tierroute-classifier").promoted

    # no gate registered yet: the service starts without one and /v1/gate runs the checks only
    server = start_server(
        "models:/tierroute-classifier@champion", tmp_path / "srv0", args=["--tracking-uri", tracking_uri]
    )
    try:
        assert "gate" not in httpx.get(f"{server.url}/readyz").json()
    finally:
        server.stop()

    check = same_rows_check(gate_dataset, limit=40)
    results = []
    for recall in (0.80, 0.80):
        record = TrainingRecord(
            experiment="g", metrics={"test_gate_accept_recall": recall, "test_gate_reject_recall": recall}
        )
        log_and_register(record, gate_bundle, model_name="tierroute-gate", alias="candidate")
        results.append(
            promote(
                "tierroute-gate", metric_keys=GATE_KEY_METRICS, extra_checks=[check], same_rows_check=check
            )
        )
    assert all(r.promoted for r in results)
    same = {r.metric: r for r in results[1].rows if "same rows" in r.metric}
    # the second promotion scored champion and candidate (the same bundle) on the same 40 rows
    assert set(same) == {"gate_false_escalation (same rows)", "gate_false_accept (same rows)"}
    assert all(r.ok and r.delta == 0.0 and r.champion is not None for r in same.values())

    server = start_server(
        "models:/tierroute-classifier@champion", tmp_path / "srv1", args=["--tracking-uri", tracking_uri]
    )
    try:
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["gate"]["ready"] is True
        assert (
            ready["gate"]["model"]["name"] == "tierroute-gate"
            and str(ready["gate"]["model"]["version"]) == "2"
        )
        judged = httpx.post(
            f"{server.url}/v1/gate",
            json={
                "items": [
                    {"prompt": "What is the capital of France?", "response": "I'm sorry, I can't help."}
                ]
            },
        ).json()
        assert judged["model"]["loaded"] is True and judged["results"][0]["acceptable"] is False
    finally:
        server.stop()
    # opting out
    server = start_server(
        "models:/tierroute-classifier@champion",
        tmp_path / "srv2",
        args=["--tracking-uri", tracking_uri, "--gate-model", "none"],
    )
    try:
        assert "gate" not in httpx.get(f"{server.url}/readyz").json()
    finally:
        server.stop()
