"""The last step shared by the classifier and the gate: log a trained bundle's run and register it.

Both trainers end the same way (heads -> bundle -> register): one MLflow run with the config's
params, the test metrics, the plots, the dataset and the bundle, registered as a new version of the
model with the config's alias. Only the tags differ (the gate marks itself `tierroute.kind=gate`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

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


class TrainedBundle(Protocol):
    """What both trainers return: a bundle folder, its metrics and artifacts, and registry fields."""

    bundle_dir: Path
    metrics: dict[str, float]
    artifacts: list[Path]
    version: str | None
    run_id: str | None
    model_uri: str | None
    timings: dict[str, float]


def register_result(
    result: TrainedBundle,
    timings: dict[str, float],
    echo: Callable[[str], None],
    *,
    model_name: str,
    alias: str,
    **bundle_fields: Any,
) -> None:
    """`register_bundle` for a trainer's result: records version, run and URI on `result`, the time
    taken in `timings["register_s"]`, and says what was registered."""
    t = time.perf_counter()
    registered = register_bundle(
        bundle_dir=result.bundle_dir,
        metrics=result.metrics,
        artifacts=result.artifacts,
        model_name=model_name,
        alias=alias,
        **bundle_fields,
    )
    result.version = str(registered.version)
    result.run_id = registered.run_id
    result.model_uri = registered.model_uri
    timings["register_s"] = time.perf_counter() - t
    echo(f"registered {model_name} v{result.version} as @{alias} ({result.model_uri})")


class TrainerConfig(Protocol):
    """What both trainers' configs (classifier, gate) say about where a result is registered."""

    model_name: str
    alias: str
    data: Any
    experiment: str

    def params(self) -> dict[str, Any]: ...


def register_trained(
    config: TrainerConfig,
    result: TrainedBundle,
    echo: Callable[[str], None],
    *,
    dataset_df: Any,
    dataset_digest: str,
    tags: dict[str, str] | None = None,
    tracking_uri: str | None = None,
) -> None:
    """`register_result` with the registry fields read off a trainer's config."""
    register_result(
        result,
        result.timings,
        echo,
        model_name=config.model_name,
        alias=config.alias,
        data_path=config.data,
        dataset_df=dataset_df,
        dataset_digest=dataset_digest,
        params=config.params(),
        experiment=config.experiment,
        tracking_uri=tracking_uri,
        **({"tags": tags} if tags else {}),
    )
