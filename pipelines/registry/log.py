"""Logging a training run and registering its bundle as a new model version (all-or-nothing).

Job: params, metrics, plots, the dataset (`mlflow.data`) and the bundle as a pyfunc model go into
one run; the version is created only after everything is logged, alias `candidate` is set last, and
any failure rolls back the run's versions (and a registered model this call created) before
`RegistryError` is raised. Version tags carry the key test metrics, the bundle and data digests.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.registry.hashing import _verify_bundle, bundle_digest
from pipelines.registry.store import (
    BUNDLE_ARTIFACT,
    CANDIDATE_ALIAS,
    DEFAULT_EXPERIMENT,
    DEFAULT_MODEL_NAME,
    KEY_METRICS,
    METRIC_TAG_PREFIX,
    MODEL_ARTIFACT,
    TAGGED_METRIC_SUFFIXES,
    RegistryError,
    _connect,
    _ensure_experiment,
    _errors,
    _model_exists,
    _quote,
    _redact,
    _short,
    log,
)


@dataclass
class TrainingRecord:
    """Everything one training run logs. Paths in `artifacts` may be files or folders."""

    experiment: str = DEFAULT_EXPERIMENT
    run_name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    dataset_df: Any = None
    """pandas.DataFrame of the training data (logged with mlflow.data: schema, profile, digest)."""
    dataset_name: str = "training-data"
    dataset_digest: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    dataset_source: str | None = None
    """Where the data came from (a path or URL); recorded as the dataset's source."""

    def __post_init__(self) -> None:
        if not self.experiment.strip():
            raise ValueError("TrainingRecord.experiment must not be empty")
        clean: dict[str, float] = {}
        for key, value in self.metrics.items():
            try:
                clean[str(key)] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"metric {key!r} is not a number: {value!r}") from None
        self.metrics = clean
        self.artifacts = [Path(p) for p in self.artifacts]


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    model_uri: str
    """`models:/<name>/<version>`."""


@contextlib.contextmanager
def _quiet_model_logging() -> Iterator[None]:
    """Silence two expected MLflow warnings: cloudpickle (by design, see pipelines.registry.pyfunc) and
    'no signature' (a DataFrame type hint cannot carry one; a column signature would reject list-of-str
    input)."""
    logger = logging.getLogger("mlflow.pyfunc")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(old)


def pip_requirements() -> list[str]:
    """What loading the pyfunc needs, pinned to this environment. `tierroute` itself is not on PyPI:
    the loading environment must have it installed (see pipelines.registry.pyfunc)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlflow", "onnxruntime", "tokenizers", "numpy", "pandas"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            reqs.append(dist)
    return reqs


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out


def tagged_metrics(metrics: Mapping[str, float], keys: Sequence[str] = KEY_METRICS) -> dict[str, float]:
    """The metrics worth a version tag: the gate's keys plus test accuracy/macro-F1/log-loss/ECE per head."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if math.isfinite(float(v))
        and (k in keys or (k.startswith("test_") and k.endswith(TAGGED_METRIC_SUFFIXES)))
    }


def log_and_register(
    record: TrainingRecord,
    bundle_dir: Path,
    model_name: str = DEFAULT_MODEL_NAME,
    alias: str = CANDIDATE_ALIAS,
    *,
    tracking_uri: str | None = None,
) -> RegisteredVersion:
    """Log one training run and register its bundle as a new version of `model_name` with `alias`.

    All-or-nothing: on any failure the run ends FAILED, no version is left behind, RegistryError."""
    # Over 60 lines: one MLflow run with rollback around all of it: the try block must hold every step.
    bundle_dir = Path(bundle_dir)
    manifest = _verify_bundle(bundle_dir)
    missing = [str(p) for p in record.artifacts if not p.exists()]
    if missing:
        raise RegistryError(f"artifacts to log do not exist: {missing}")
    digest = bundle_digest(bundle_dir)
    mlflow, client, uri = _connect(tracking_uri, create=True)
    with _errors(f"preparing experiment {record.experiment!r}", uri):
        experiment_id = _ensure_experiment(client, record.experiment, uri)
        model_existed = _model_exists(client, model_name)

    from pipelines.registry.pyfunc import BundlePyfunc  # imports mlflow: only when logging

    version: int | None = None
    run_id = ""
    run_tags = {
        **{str(k): str(v) for k, v in record.tags.items()},
        "tierroute.bundle_digest": digest,
        "tierroute.bundle_name": str(manifest.get("name", bundle_dir.name)),
        "tierroute.dataset_name": record.dataset_name,
    }
    if record.dataset_digest:
        run_tags["tierroute.dataset_digest"] = record.dataset_digest
    version_tags = {
        "bundle_digest": digest,
        "bundle_name": str(manifest.get("name", bundle_dir.name)),
        "dataset_name": record.dataset_name,
        **({"dataset_digest": record.dataset_digest} if record.dataset_digest else {}),
        **({"training_rows": str(len(record.dataset_df))} if record.dataset_df is not None else {}),
        **{f"{METRIC_TAG_PREFIX}{k}": f"{v:.6g}" for k, v in tagged_metrics(record.metrics).items()},
    }
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=record.run_name, tags=run_tags) as run:
            run_id = run.info.run_id
            if record.params:
                mlflow.log_params(_flatten(record.params))
            _log_dataset(mlflow, record)
            for path in record.artifacts:
                if path.is_dir():
                    mlflow.log_artifacts(str(path), artifact_path=path.name)
                else:
                    group = "plots" if path.suffix.lower() in (".png", ".svg", ".jpg", ".html") else "reports"
                    mlflow.log_artifact(str(path), artifact_path=group)
            with _quiet_model_logging():
                info = mlflow.pyfunc.log_model(
                    name=MODEL_ARTIFACT,
                    python_model=BundlePyfunc(),
                    artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                    pip_requirements=pip_requirements(),
                    metadata={
                        "tierroute_bundle_digest": digest,
                        "tierroute_bundle_name": version_tags["bundle_name"],
                    },
                )
            if record.metrics:
                mlflow.log_metrics(record.metrics, model_id=info.model_id)
            mv = mlflow.register_model(info.model_uri, model_name, tags=version_tags)
            version = int(mv.version)
            client.set_registered_model_alias(model_name, alias, str(version))
            mlflow.set_tag("tierroute.registered_version", f"{model_name}/{version}")
    except BaseException as exc:
        _rollback(client, model_name, run_id, model_existed)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        where = f" (run {run_id} marked FAILED)" if run_id else ""
        raise RegistryError(
            f"logging/registering {model_name} on {_redact(uri)} failed{where}; nothing was registered: "
            f"{_short(exc)}"
        ) from exc
    return RegisteredVersion(model_name, version, run_id, f"models:/{model_name}/{version}")


def _rollback(client: Any, model_name: str, run_id: str, model_existed: bool) -> None:
    """Undo a registration that did not complete: delete every version this run created (also one
    whose creation was interrupted before we learnt its number), and the model if this call made it."""
    if not run_id:
        return
    try:
        if not _model_exists(client, model_name):
            return
        query = f"name='{_quote(model_name)}'"
        for mv in client.search_model_versions(query):
            if mv.run_id == run_id:
                client.delete_model_version(model_name, str(mv.version))
        if not model_existed and not list(client.search_model_versions(query)):
            client.delete_registered_model(model_name)
    except Exception as exc:  # the original error matters more; say what may be left over
        log.warning("rollback of %s (run %s) incomplete: %s", model_name, run_id, _short(exc))


def _log_dataset(mlflow: Any, record: TrainingRecord) -> None:
    if record.dataset_df is None:
        return
    dataset = mlflow.data.from_pandas(
        record.dataset_df,
        source=record.dataset_source,
        name=record.dataset_name,
        digest=record.dataset_digest[:32]
        if record.dataset_digest
        else None,  # MLflow caps it; full one is a tag
    )
    mlflow.log_input(dataset, context="training")
