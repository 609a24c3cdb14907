"""The last step shared by the classifier and the gate: log a trained bundle's run and register it.

Both trainers end the same way (heads -> bundle -> register): one MLflow run with the config's
params, the test metrics, the plots, the dataset and the bundle, registered as a new version of the
model with the config's alias. Only the tags differ (the gate marks itself `tierroute.kind=gate`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.registry import RegisteredVersion


def register_bundle(
    *,
    bundle_dir: Path,
    data_path: Path,
    dataset_df: Any,
    dataset_digest: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifacts: Sequence[Path],
    experiment: str,
    model_name: str,
    alias: str,
    tracking_uri: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> RegisteredVersion:
    """Log the run (run name = bundle folder name) and register `bundle_dir` as `model_name@alias`.
    If that fails, the bundle folder is removed too: a trainer leaves a registered bundle or none."""
    from pipelines.registry import TrainingRecord, log_and_register

    record = TrainingRecord(
        experiment=experiment,
        run_name=bundle_dir.name,
        params=dict(params),
        metrics=dict(metrics),
        artifacts=list(artifacts),
        dataset_df=dataset_df,
        dataset_name=Path(data_path).name,
        dataset_digest=dataset_digest,
        tags={"bundle_dir": str(bundle_dir), **(tags or {})},
        dataset_source=str(data_path),
    )
    try:
        return log_and_register(
            record, bundle_dir, model_name=model_name, alias=alias, tracking_uri=tracking_uri
        )
    except BaseException:
        shutil.rmtree(bundle_dir, ignore_errors=True)
        raise
