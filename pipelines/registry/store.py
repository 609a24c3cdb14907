"""Connecting to the MLflow store: environment, reachability, error translation, lookups shared by
the other registry modules.

Job: one `_connect` that imports mlflow with telemetry off and short HTTP retries, checks a remote
server with one short `/health` request (3 s timeout) so an unreachable registry fails within
seconds, and points the fluent API and a client at the same store. The default store and `models:/`
parsing are serving's (`serving.model.source`), so training and serving cannot disagree on them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serving.model import source as model_source

DEFAULT_MODEL_NAME = "tierroute-classifier"
DEFAULT_EXPERIMENT = "tierroute"
CANDIDATE_ALIAS = "candidate"
CHAMPION_ALIAS = "champion"
KEY_METRICS: tuple[str, ...] = ("test_tier_macro_f1", "test_task_macro_f1")
DEFAULT_TOLERANCE = 0.01
MODEL_ARTIFACT = "model"
"""Name of the logged MLflow model inside a run."""
BUNDLE_ARTIFACT = "bundle"
"""Key in the pyfunc `artifacts` dict: a downloaded model holds the bundle under `artifacts/bundle/`."""
MANIFEST = "bundle.json"
METRIC_TAG_PREFIX = "metric."
TAGGED_METRIC_SUFFIXES = ("_accuracy", "_macro_f1", "_log_loss", "_ece")
LOWER_IS_BETTER_SUFFIXES = ("loss", "ece", "error")
MAX_TAG_VALUE = 5000
"""Every MLflow backend accepts tag values of this length."""

QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

HTTP_ENV = {
    # Defaults are 7 retries with exponential backoff and a 120 s timeout: minutes of waiting on a
    # dead server. One retry and 30 s per socket operation keep big artifact uploads working.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

HEALTH_TIMEOUT_S = 3.0

log = logging.getLogger(__name__)


class RegistryError(Exception):
    """A registry operation failed; the message says what, where, and what to do about it."""


def default_tracking_uri(project_root: Path | None = None) -> str:
    """`$MLFLOW_TRACKING_URI` if set, else the embedded sqlite store under `<root>/mlruns/` (root:
    the cwd at call time); the same function serving uses."""
    return model_source.default_tracking_uri(project_root)


sqlite_db_path = model_source.sqlite_db_path
artifact_root_for = model_source.artifact_root_for


def parse_model_uri(model_uri: str) -> tuple[str, str | None, int | None]:
    """(name, alias, version) of `models:/name@alias` or `models:/name/version` (serving's parser)."""
    try:
        return model_source.parse_models_uri(model_uri)
    except model_source.ModelSourceError as exc:
        raise RegistryError(str(exc)) from None


def _redact(uri: str) -> str:
    """Drop credentials from an http(s) URI before it goes into a message."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return uri


def _prepare_env() -> None:
    for key, value in {**QUIET_ENV, **HTTP_ENV}.items():
        os.environ.setdefault(key, value)


def _mlflow() -> Any:
    """Import mlflow with telemetry off and short HTTP retries (user-set env values win)."""
    _prepare_env()
    try:
        import mlflow
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RegistryError(
            "MLflow is not installed; install the training extra: pip install -e '.[train]'"
        ) from exc
    return mlflow


def _check_reachable(uri: str) -> None:
    """One short GET /health for http(s) stores; any HTTP answer counts as reachable."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return  # it answered (auth, proxy or no /health route): reachable
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryError(
            f"MLflow tracking server {_redact(uri)} is unreachable ({reason}). Start the server, fix "
            "MLFLOW_TRACKING_URI, or unset it to use the embedded store under ./mlruns."
        ) from None


def _connect(tracking_uri: str | None, *, create: bool = False) -> tuple[Any, Any, str]:
    """(mlflow module, MlflowClient, uri) with the fluent API pointed at the same store.

    Only writers that start a store (`create=True`: registering a training run) may create a missing
    sqlite file; a reader (list, promote, export, rollback) run from the wrong directory would
    otherwise get a new empty store and "no registered model", so it fails saying where it looked."""
    uri, registry_uri = model_source.store_uris(tracking_uri)
    db = sqlite_db_path(uri)
    if db is not None and not create and not db.is_file():
        raise RegistryError(
            f"no MLflow store at {db} (the default is ./mlruns/mlflow.db of the current directory): "
            "run from the project directory you trained in, pass --tracking-uri or set MLFLOW_TRACKING_URI"
        )
    mlflow = _mlflow()
    _check_reachable(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(registry_uri)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=registry_uri)
    except Exception as exc:
        raise RegistryError(f"cannot open the MLflow store {_redact(uri)}: {_short(exc)}") from exc
    return mlflow, client, uri


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return text[0][:400] if text else type(exc).__name__


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


@contextlib.contextmanager
def _errors(action: str, uri: str) -> Iterator[None]:
    """Turn MLflow/SQL/OS failures into RegistryError naming the action and the store."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as exc:
        msg = _short(exc)
        if "Connection refused" in msg or "Max retries exceeded" in msg or "timed out" in msg:
            raise RegistryError(f"{action}: MLflow server {_redact(uri)} is unreachable ({msg})") from exc
        if "error code 404" in msg:
            msg += " (is this URI an MLflow tracking server?)"
        raise RegistryError(f"{action} failed on {_redact(uri)}: {msg}") from exc


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"


def _ensure_experiment(client: Any, name: str, uri: str) -> str:
    """Experiment id by name; created with an artifact folder next to the sqlite db when embedded."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if getattr(exp, "lifecycle_stage", "active") == "deleted":
            raise RegistryError(
                f"experiment {name!r} is deleted in {_redact(uri)}; "
                "restore it or pick another experiment name"
            )
        return str(exp.experiment_id)
    root = artifact_root_for(uri)
    location = (root / _safe_name(name)).as_uri() if root is not None else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception as exc:
        if "RESOURCE_ALREADY_EXISTS" in _error_code(exc) or "already exists" in str(exc):
            exp = client.get_experiment_by_name(name)  # created concurrently
            if exp is not None:
                return str(exp.experiment_id)
        raise


def _model_exists(client: Any, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in _error_code(exc) or "not found" in str(exc).lower():
            return False
        raise


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _get_version(client: Any, uri: str, name: str, alias: str | None, version: int | None) -> Any:
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except Exception as exc:
        if not _is_missing(exc):
            raise
    if not _model_exists(client, name):
        raise RegistryError(f"no registered model named {name!r} in {_redact(uri)}") from None
    if alias is not None:
        known = sorted(_aliases(client, name))
        raise RegistryError(
            f"model {name!r} has no alias {alias!r} in {_redact(uri)} (aliases: {', '.join(known) or 'none'})"
        ) from None
    raise RegistryError(f"model {name!r} has no version {version} in {_redact(uri)}") from None


def _is_missing(exc: BaseException) -> bool:
    code = _error_code(exc)
    text = str(exc).lower()
    return (
        "RESOURCE_DOES_NOT_EXIST" in code
        or "not found" in text
        or ("INVALID_PARAMETER_VALUE" in code and "alias" in text)
    )


def _aliases(client: Any, name: str) -> dict[str, int]:
    model = client.get_registered_model(name)
    raw = getattr(model, "aliases", {}) or {}
    return {str(a): int(v) for a, v in dict(raw).items()}
