"""eval / drift / calibrate against a registered version in a real MLflow store, linked both ways."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from evals.cli import build_app

pytestmark = pytest.mark.slow
URI = "models:/tierroute-classifier@candidate"


def _invoke(*args: object) -> Any:
    return CliRunner().invoke(build_app(), [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def registered(trained_bundle: Path, tracking_uri: str, tmp_path: Path) -> Path:
    """The trained bundle registered as @candidate; training stored its reference statistics."""
    from pipelines.registry import TrainingRecord, log_and_register

    bundle_dir = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle_dir)
    assert (bundle_dir / "reference_stats.npz").is_file()  # written by `train`, not by this test
    log_and_register(TrainingRecord(experiment="t", metrics={"test_tier_macro_f1": 0.5}), bundle_dir)
    return bundle_dir


def _client(tracking_uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def test_eval_drift_calibrate_on_registered_version(
    registered: Path, heldout_df: Any, tracking_uri: str, tmp_path: Path
) -> None:
    data = tmp_path / "set.parquet"
    heldout_df.sample(150, random_state=1).reset_index(drop=True).to_parquet(data)
    res = _invoke("eval", "--model", URI, "--data", data, "--out", tmp_path / "eval", "--bootstrap", "200")
    assert res.exit_code == 0, res.output
    client = _client(tracking_uri)
    mv = client.get_model_version("tierroute-classifier", "1")
    eval_run = client.get_run(mv.tags["last_eval_run_id"])
    assert eval_run.data.tags["tierroute.model_version"] == "1"
    assert "tier_macro_f1" in eval_run.data.metrics
    assert "eval.set.tier_macro_f1" in mv.tags
    artifacts = {a.path for a in client.list_artifacts(eval_run.info.run_id, "report")}
    assert "report/report.html" in artifacts and "report/summary.json" in artifacts

    # drift: the reference statistics come from the registered bundle; the model defaults to it
    from evals.drift.synthetic import to_other_script

    shifted = tmp_path / "shifted.csv"
    to_other_script(pd.read_parquet(data), 1.0).to_csv(shifted, index=False)
    res = _invoke(
        "drift", "--reference", URI, "--current", shifted, "--out", tmp_path / "drift", "--bootstrap", "200"
    )
    assert res.exit_code == 1, res.output
    mv = client.get_model_version("tierroute-classifier", "1")
    assert mv.tags["last_drift_result"] == "drift"
    drift_run = client.get_run(mv.tags["last_drift_run_id"])
    assert drift_run.data.tags["tierroute.drift"] == "true"
    assert drift_run.data.metrics["drift"] == 1.0

    # calibrate is a what-if by default: no tag on the registered version (live routing unchanged)
    res = _invoke(
        "calibrate",
        "--model",
        URI,
        "--data",
        data,
        "--target-share",
        "0.25",
        "--bundle-out",
        tmp_path / "what-if",
        "--bootstrap",
        "200",
    )
    assert res.exit_code == 0, res.output
    assert "not tagged" in res.output
    assert "routing_threshold" not in client.get_model_version("tierroute-classifier", "1").tags
    res = _invoke(
        "calibrate",
        "--model",
        URI,
        "--data",
        data,
        "--target-share",
        "0.25",
        "--bundle-out",
        tmp_path / "calibrated",
        "--bootstrap",
        "200",
        "--tag",
    )
    assert res.exit_code == 0, res.output
    mv = client.get_model_version("tierroute-classifier", "1")
    tag = json.loads(mv.tags["routing_threshold"])
    assert tag["objective"] == "target_share" and tag["target"] == 0.25
    assert float(mv.tags["routing_threshold.complexity"]) == pytest.approx(
        tag["strong_if_at_least"], rel=1e-5
    )
    from serving.model.bundle import read_manifest

    manifest = read_manifest(tmp_path / "calibrated")
    assert manifest["thresholds"]["routing"]["strong_if_at_least"] == tag["strong_if_at_least"]
    assert "reference_stats.npz" in manifest["files"]  # reference statistics travel with the copy

    # promotion gate through the CLI: the first promotion records the candidate's numbers on the
    # extra set and passes; a required slice the file does not have is bad input (exit 2)
    res = _invoke("promote", "--eval-set", data, "--required-slice", "*")
    assert res.exit_code == 0, res.output
    assert "set.parquet:all:tier_macro_f1" in res.output
    assert str(client.get_model_version_by_alias("tierroute-classifier", "champion").version) == "1"
    res = _invoke("promote", "--eval-set", data, "--required-slice", "nowhere")
    assert res.exit_code == 2 and "not found" in res.output
