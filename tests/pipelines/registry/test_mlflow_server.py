"""Integration: the same registry calls against a real `mlflow server` on 127.0.0.1 started by the test.

Artifacts go through the server (`--serve-artifacts`, `mlflow-artifacts:/` locations), so the
client never writes to the server's folders directly; that is the remote set-up users run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines import registry
from pipelines.registry import download_bundle, list_versions, log_and_register, promote, resolve

pytestmark = pytest.mark.slow
NAME = "tierroute-classifier"


def test_register_promote_list_export_through_a_real_server(
    mlflow_server: str,
    tiny_bundle: Path,
    make_record: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from serving.model.bundle import Bundle

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)

    first = log_and_register(make_record(tier_f1=0.80), tiny_bundle)
    assert first.version == 1
    assert promote(NAME).promoted
    second = log_and_register(make_record(tier_f1=0.60), tiny_bundle)
    refused = promote(NAME)
    assert not refused.promoted and refused.previous_champion_version == 1

    client = MlflowClient(mlflow_server, mlflow_server)
    exp = client.get_experiment_by_name("tierroute-test")
    assert exp is not None and exp.artifact_location.startswith(
        "mlflow-artifacts:"
    )  # uploads went through the server
    inputs = client.get_run(second.run_id).inputs
    assert inputs is not None and inputs.dataset_inputs[0].dataset.digest == "d1g3st"

    versions = list_versions(NAME)
    assert [(v.version, v.aliases) for v in versions] == [(2, ("candidate",)), (1, ("champion",))]
    assert versions[1].metrics["test_tier_macro_f1"] == pytest.approx(0.8)
    assert resolve(f"models:/{NAME}@champion").run_id == first.run_id

    out = download_bundle(f"models:/{NAME}@champion", tmp_path / "exported")
    assert registry.bundle_digest(out) == registry.bundle_digest(tiny_bundle)
    assert (
        Bundle.load(out).predict(["hi"])[0].to_result()
        == Bundle.load(tiny_bundle).predict(["hi"])[0].to_result()
    )

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@candidate")
    assert model.predict(["hi"]).iloc[0]["tier"] == Bundle.load(tiny_bundle).predict(["hi"])[0].labels["tier"]
    assert not list(tmp_path.glob("mlruns"))  # nothing written to a local store by mistake
