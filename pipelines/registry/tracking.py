"""MLflow logging for eval, drift and calibrate runs (evals call it; mlflow stays in this subpackage).

Job: log one run per command (params, metrics, tags, the report folder as artifacts) in the
`tierroute-evals` experiment of the same store the registry uses, and link it to the model version
it evaluated: run tags `tierroute.model_name` / `tierroute.model_version`, metrics attached to the
version's logged model (MLflow 3 `model_id`), and a tag on the version pointing back at the run
(`last_eval_run_id`, `last_drift_run_id`, ...).

Trade-offs: mlflow is imported inside the functions (it costs ~1 s and is not needed for the
numbers), and the store URI, experiment placement and telemetry settings come from
`pipelines.registry.store` so eval runs sit next to the training runs. Logging failures are reported to
the caller as `TrackingError`; the commands print them as warnings, because a report on disk is
still useful when the tracking server is down.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.registry import store as registry

EVAL_EXPERIMENT = "tierroute-evals"


class TrackingError(Exception):
    """Logging to MLflow failed; the report on disk is unaffected."""


def _clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[_key(k)] = f
    return out


def _key(k: str) -> str:
    """MLflow keys allow alphanumerics, _ - . space / only."""
    return "".join(c if (c.isalnum() or c in "_-./ ") else "_" for c in str(k))[:250]


def log_run(
    *,
    kind: str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    tags: Mapping[str, str],
    report_dir: Path | None,
    model_name: str | None = None,
    model_version: str | None = None,
    version_tags: Mapping[str, str] | None = None,
    experiment: str = EVAL_EXPERIMENT,
    tracking_uri: str | None = None,
) -> str:
    """Log one run; returns its run id. Raises TrackingError (never an MLflow exception)."""
    # Over 60 lines: one MLflow run with error translation around all of it.
    for k, v in {**registry.QUIET_ENV, **registry.HTTP_ENV}.items():
        os.environ.setdefault(k, v)
    uri = tracking_uri or registry.default_tracking_uri()
    try:
        import mlflow

        registry._check_reachable(uri)
        db = registry.sqlite_db_path(uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            root = registry.artifact_root_for(uri)
            location = (root / experiment).as_uri() if root is not None else None
            exp_id = client.create_experiment(experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        model_id = None
        if model_name and model_version:
            try:
                model_id = getattr(client.get_model_version(model_name, str(model_version)), "model_id", None)
            except Exception:
                model_id = None
        all_tags = {"tierroute.kind": kind, **{str(k): str(v) for k, v in tags.items()}}
        if model_name:
            all_tags["tierroute.model_name"] = model_name
        if model_version:
            all_tags["tierroute.model_version"] = str(model_version)
        run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
        run_id = str(run.info.run_id)
        try:
            for k, v in params.items():
                client.log_param(run_id, _key(k), str(v)[:6000])
            clean = _clean_metrics(metrics)
            if clean:
                mlflow.set_tracking_uri(uri)
                mlflow.log_metrics(clean, run_id=run_id, model_id=model_id, synchronous=True)
            if report_dir is not None and Path(report_dir).is_dir():
                client.log_artifacts(run_id, str(report_dir), artifact_path="report")
            client.set_terminated(run_id, "FINISHED")
        except Exception:
            client.set_terminated(run_id, "FAILED")
            raise
        if model_name and model_version:
            for k, v in {f"last_{kind}_run_id": run_id, **dict(version_tags or {})}.items():
                client.set_model_version_tag(model_name, str(model_version), k, str(v)[:5000])
        return run_id
    except TrackingError:
        raise
    except Exception as exc:
        msg = str(getattr(exc, "message", None) or exc).strip().splitlines()
        raise TrackingError(
            f"logging the {kind} run to MLflow failed: {msg[0][:300] if msg else type(exc).__name__}"
        ) from exc


def set_version_tags(
    model_name: str, model_version: str, tags: Mapping[str, str], tracking_uri: str | None = None
) -> None:
    """Set tags on a registered model version (used by `tierroute calibrate` for thresholds)."""
    uri = tracking_uri or registry.default_tracking_uri()
    try:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        for k, v in tags.items():
            client.set_model_version_tag(model_name, str(model_version), k, str(v)[:5000])
    except Exception as exc:
        raise TrackingError(
            f"tagging {model_name} v{model_version} failed: {str(exc).splitlines()[0][:300]}"
        ) from exc


def download_run_artifact(
    run_id: str, artifact_path: str, dst: Path, tracking_uri: str | None = None
) -> Path | None:
    """A run artifact downloaded to `dst`, or None when the run has no such artifact."""
    uri = tracking_uri or registry.default_tracking_uri()
    try:
        import mlflow

        mlflow.set_tracking_uri(uri)
        return Path(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(dst))
        )
    except Exception:
        return None
