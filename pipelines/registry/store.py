"""MLflow tracking and model registry: the only module in `pipelines` that talks to MLflow.

Job: log a training run (params, metrics, plots, dataset digest, the ONNX bundle as a pyfunc
model), register it as a new version of `tierroute-classifier` with alias `candidate`, gate the
move of alias `champion` on test metrics, list versions, resolve `models:/` URIs and export a
registered bundle back to a plain folder that serving can load without MLflow.

Trade-offs and choices:
- `mlflow` is imported inside functions (after telemetry is switched off), so everything else in
  the package imports and tests without it; this module only needs the stdlib at import time.
- The default store is embedded: `sqlite:///<root>/mlruns/mlflow.db` with artifacts in
  `<root>/mlruns/artifacts` (MLflow would otherwise put artifacts under the *current directory*).
  `MLFLOW_TRACKING_URI` wins when set; a remote server is checked with one short `/health` request
  first (3 s timeout) and HTTP retries/timeouts are capped, so an unreachable registry fails within
  seconds (milliseconds for a refused port) with a clear message instead of retrying for minutes.
- Registration is all-or-nothing: the version is created only after params, metrics, artifacts,
  dataset and model are logged; if anything fails after the run started, the run ends FAILED, a
  version already created is deleted again (with a registered model that this call created), and a
  `RegistryError` is raised. Alias `candidate` is set last, so it never points at a partial version.
- Version tags carry the key test metrics (`metric.<name>`), the bundle digest and the data digest:
  the registry UI and `tierroute models list` show them without opening runs, and `download_bundle`
  checks the exported folder against the registered digest.
- Promotion compares key metrics with an absolute tolerance, in the right direction per metric
  (losses/ECE lower is better). `extra_checks` are callables returning more comparison rows (for
  example evaluation on extra labelled sets or slices); any row that is not ok refuses promotion.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    version: int
    alias: str | None
    run_id: str | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    aliases: tuple[str, ...]
    created: dt.datetime
    run_id: str | None
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class ComparisonRow:
    """One checked number: champion vs candidate. `ok` False refuses promotion (unless forced)."""

    metric: str
    champion: float | None
    candidate: float | None
    delta: float | None
    ok: bool
    note: str = ""


@dataclass(frozen=True)
class PromotionContext:
    """What an extra promotion check gets: the two versions and the gate's settings."""

    model_name: str
    candidate: VersionInfo
    champion: VersionInfo | None
    tolerance: float
    tracking_uri: str


PromotionCheck = Callable[[PromotionContext], Sequence[ComparisonRow]]
"""Plug-in gate: e.g. evaluate both versions on an extra labelled set and return one row per metric."""


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    """True when `champion` points at the candidate after the call."""
    model_name: str
    candidate_version: int
    champion_version: int | None
    """The champion after the call (the candidate when promoted)."""
    previous_champion_version: int | None
    rows: tuple[ComparisonRow, ...]
    reason: str
    forced: bool = False

    @property
    def comparison(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]


# --------------------------------------------------------------------------------------------
# Connection: URIs, environment, error handling
# --------------------------------------------------------------------------------------------


def default_tracking_uri(project_root: Path | None = None) -> str:
    """`$MLFLOW_TRACKING_URI` if set, else the embedded sqlite store under `<root>/mlruns/`."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    root = Path(project_root if project_root is not None else Path.cwd()).resolve()
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def sqlite_db_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative paths resolve against the cwd), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri[len("sqlite:///") :].split("?", 1)[0]
    if not raw or raw == ":memory:":
        return None
    return Path(raw).resolve()


def artifact_root_for(uri: str) -> Path | None:
    """Where experiments of an embedded sqlite store keep artifacts: `artifacts/` next to the db."""
    db = sqlite_db_path(uri)
    return db.parent / "artifacts" if db is not None else None


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


def _connect(tracking_uri: str | None) -> tuple[Any, Any, str]:
    """(mlflow module, MlflowClient, uri) with the fluent API pointed at the same store."""
    uri = tracking_uri or default_tracking_uri()
    mlflow = _mlflow()
    _check_reachable(uri)
    db = sqlite_db_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    registry_uri = os.environ.get("MLFLOW_REGISTRY_URI", "").strip() if tracking_uri is None else ""
    registry_uri = registry_uri or uri
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


@contextlib.contextmanager
def _quiet_model_logging() -> Iterator[None]:
    """Silence two expected MLflow warnings: cloudpickle (by design, see pyfunc_model) and 'no signature'
    (a DataFrame type hint cannot carry one; a column signature would reject list-of-str input)."""
    logger = logging.getLogger("mlflow.pyfunc")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(old)


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


# --------------------------------------------------------------------------------------------
# Bundles
# --------------------------------------------------------------------------------------------


def bundle_digest(bundle_dir: Path) -> str:
    """sha256 over every file of a bundle folder (relative path + content digest), order-independent."""
    bundle_dir = Path(bundle_dir)
    h = hashlib.sha256()
    for f in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
        fh = hashlib.sha256()
        with f.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                fh.update(chunk)
        h.update(f"{f.relative_to(bundle_dir).as_posix()}\0{fh.hexdigest()}\n".encode())
    return h.hexdigest()


def find_bundle_dir(root: Path) -> Path:
    """The one folder under `root` (itself included) holding a bundle.json."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return root
    found = sorted(p.parent for p in root.rglob(MANIFEST))
    if not found:
        raise RegistryError(f"no {MANIFEST} under {root}: this model holds no tierroute bundle")
    if len(found) > 1:
        raise RegistryError(f"several bundles under {root}: {[str(p) for p in found]}")
    return found[0]


def _verify_bundle(path: Path) -> dict[str, Any]:
    """bundle.json parsed; file hashes checked with serving.bundle when it is available."""
    if not path.is_dir():
        raise RegistryError(f"bundle folder not found: {path}")
    if not (path / MANIFEST).is_file():
        raise RegistryError(f"{path}: no {MANIFEST}; not a tierroute bundle")
    try:
        from serving.bundle import BundleError, read_manifest
    except ImportError:
        try:
            data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path / MANIFEST}: unreadable ({exc})") from exc
        return data if isinstance(data, dict) else {}
    try:
        return read_manifest(path)
    except BundleError as exc:
        raise RegistryError(f"invalid bundle: {exc}") from exc


def pip_requirements() -> list[str]:
    """What loading the pyfunc needs, pinned to this environment. `tierroute` itself is not on PyPI:
    the loading environment must have it installed (see pipelines.pyfunc_model)."""
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


# --------------------------------------------------------------------------------------------
# Logging + registration
# --------------------------------------------------------------------------------------------


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
    bundle_dir = Path(bundle_dir)
    manifest = _verify_bundle(bundle_dir)
    missing = [str(p) for p in record.artifacts if not p.exists()]
    if missing:
        raise RegistryError(f"artifacts to log do not exist: {missing}")
    digest = bundle_digest(bundle_dir)
    mlflow, client, uri = _connect(tracking_uri)
    with _errors(f"preparing experiment {record.experiment!r}", uri):
        experiment_id = _ensure_experiment(client, record.experiment, uri)
        model_existed = _model_exists(client, model_name)

    from pipelines.pyfunc_model import BundlePyfunc

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


def _model_exists(client: Any, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in _error_code(exc) or "not found" in str(exc).lower():
            return False
        raise


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


# --------------------------------------------------------------------------------------------
# Reading the registry
# --------------------------------------------------------------------------------------------

_URI_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))/?$")


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def parse_model_uri(model_uri: str) -> tuple[str, str | None, int | None]:
    """(name, alias, version) of `models:/name@alias` or `models:/name/version`."""
    m = _URI_RE.match(model_uri.strip())
    if not m:
        raise RegistryError(
            f"not a registered-model URI: {model_uri!r}; "
            "use models:/<name>@<alias> or models:/<name>/<version>"
        )
    version = m.group("version")
    return m.group("name"), m.group("alias"), int(version) if version else None


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


def resolve(model_uri: str, *, tracking_uri: str | None = None) -> ResolvedModel:
    """Name, version, alias and run of a `models:/` URI; RegistryError names what is missing."""
    name, alias, version = parse_model_uri(model_uri)
    _, client, uri = _connect(tracking_uri)
    with _errors(f"resolving {model_uri}", uri):
        mv = _get_version(client, uri, name, alias, version)
    return ResolvedModel(name, int(mv.version), alias, mv.run_id or None)


def _metrics_of(client: Any, mv: Any, keys: Sequence[str]) -> dict[str, float]:
    """Version tags `metric.<k>` first (written at registration or by later evals), then run metrics."""
    tags = dict(getattr(mv, "tags", {}) or {})
    out: dict[str, float] = {}
    for k, v in tags.items():
        if k.startswith(METRIC_TAG_PREFIX):
            with contextlib.suppress(ValueError):
                out[k[len(METRIC_TAG_PREFIX) :]] = float(v)
    if any(k not in out for k in keys) and mv.run_id:
        try:
            run_metrics = client.get_run(mv.run_id).data.metrics
        except Exception as exc:
            if not _is_missing(exc):
                raise
            run_metrics = {}
        for k in keys:
            if k not in out and k in run_metrics:
                out[k] = float(run_metrics[k])
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _version_info(client: Any, mv: Any, aliases: Mapping[str, int], keys: Sequence[str]) -> VersionInfo:
    version = int(mv.version)
    created = dt.datetime.fromtimestamp(int(mv.creation_timestamp or 0) / 1000, tz=dt.UTC)
    return VersionInfo(
        name=str(mv.name),
        version=version,
        aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
        created=created,
        run_id=mv.run_id or None,
        metrics=_metrics_of(client, mv, keys),
        tags={str(k): str(v) for k, v in (getattr(mv, "tags", {}) or {}).items()},
    )


def list_versions(
    model_name: str = DEFAULT_MODEL_NAME,
    *,
    metric_keys: Sequence[str] = KEY_METRICS,
    tracking_uri: str | None = None,
) -> list[VersionInfo]:
    """Every version of `model_name`, newest first, with aliases and key metrics."""
    _, client, uri = _connect(tracking_uri)
    with _errors(f"listing versions of {model_name!r}", uri):
        if not _model_exists(client, model_name):
            raise RegistryError(f"no registered model named {model_name!r} in {_redact(uri)}")
        aliases = _aliases(client, model_name)
        versions = list(client.search_model_versions(f"name='{_quote(model_name)}'"))
        infos = [_version_info(client, mv, aliases, metric_keys) for mv in versions]
    return sorted(infos, key=lambda v: v.version, reverse=True)


# --------------------------------------------------------------------------------------------
# Promotion
# --------------------------------------------------------------------------------------------


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER_SUFFIXES)


def compare_metrics(
    champion: Mapping[str, float] | None,
    candidate: Mapping[str, float],
    keys: Sequence[str],
    tolerance: float,
) -> list[ComparisonRow]:
    """One row per key: ok unless the candidate is worse than the champion by more than `tolerance`
    (absolute, in the metric's own direction). A key the champion lacks is ok (nothing to defend);
    a key the candidate lacks but the champion has is not (the candidate cannot show it holds)."""
    rows: list[ComparisonRow] = []
    for key in keys:
        cand = candidate.get(key)
        champ = champion.get(key) if champion is not None else None
        if cand is None and champ is None:
            rows.append(ComparisonRow(key, None, None, None, True, "absent in both"))
        elif cand is None:
            rows.append(ComparisonRow(key, champ, None, None, False, "candidate lacks this metric"))
        elif champ is None:
            note = "no champion" if champion is None else "champion lacks this metric"
            rows.append(ComparisonRow(key, None, cand, None, True, note))
        else:
            delta = cand - champ
            worse = delta if lower_is_better(key) else -delta
            ok = worse <= tolerance + 1e-12
            direction = "lower is better" if lower_is_better(key) else "higher is better"
            note = direction if ok else f"worse by {worse:.4f} > tolerance {tolerance:g} ({direction})"
            rows.append(ComparisonRow(key, champ, cand, delta, ok, note))
    return rows


def promote(
    model_name: str = DEFAULT_MODEL_NAME,
    *,
    candidate_alias: str = CANDIDATE_ALIAS,
    champion_alias: str = CHAMPION_ALIAS,
    tolerance: float = DEFAULT_TOLERANCE,
    metric_keys: Sequence[str] = KEY_METRICS,
    force: bool = False,
    extra_checks: Sequence[PromotionCheck] = (),
    tracking_uri: str | None = None,
) -> PromotionResult:
    """Move `champion_alias` to the `candidate_alias` version if no check fails (or `force`).

    Checks: each key metric must not be worse than the champion's by more than `tolerance`
    (absolute); then every `extra_checks` callable adds rows. A first promotion (no champion)
    passes when the candidate carries at least one key metric. Tags written on the candidate:
    `promoted_at`, `promoted_from`, `promoted_by_force`, `promotion_comparison` (JSON)."""
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise RegistryError(f"tolerance must be a finite number >= 0, got {tolerance}")
    if candidate_alias == champion_alias:
        raise RegistryError("candidate and champion aliases must differ")
    _, client, uri = _connect(tracking_uri)
    with _errors(f"promoting {model_name!r}", uri):
        cand_mv = _get_version(client, uri, model_name, candidate_alias, None)
        aliases = _aliases(client, model_name)
        candidate = _version_info(client, cand_mv, aliases, metric_keys)
        champion: VersionInfo | None = None
        if champion_alias in aliases:
            champ_mv = client.get_model_version(model_name, str(aliases[champion_alias]))
            champion = _version_info(client, champ_mv, aliases, metric_keys)
    previous = champion.version if champion else None
    if champion is not None and champion.version == candidate.version:
        return PromotionResult(
            True,
            model_name,
            candidate.version,
            previous,
            previous,
            (),
            f"v{candidate.version} is already {champion_alias}; nothing to do",
        )

    rows = compare_metrics(champion.metrics if champion else None, candidate.metrics, metric_keys, tolerance)
    if all(r.candidate is None for r in rows):
        rows.append(
            ComparisonRow(
                "key metrics", None, None, None, False, f"candidate has none of {list(metric_keys)}"
            )
        )
    ctx = PromotionContext(model_name, candidate, champion, tolerance, uri)
    for check in extra_checks:
        name = getattr(check, "__name__", type(check).__name__)
        try:
            rows.extend(check(ctx))
        except Exception as exc:
            rows.append(
                ComparisonRow(f"check {name}", None, None, None, False, f"check raised: {_short(exc)}")
            )

    failed = [r for r in rows if not r.ok]
    versus = f"v{candidate.version} vs {champion_alias} v{previous}" if previous else f"v{candidate.version}"
    if failed and not force:
        return PromotionResult(
            False,
            model_name,
            candidate.version,
            previous,
            previous,
            tuple(rows),
            f"refused {versus}: " + "; ".join(f"{r.metric}: {r.note}" for r in failed),
        )

    comparison = json.dumps([asdict(r) for r in rows], separators=(",", ":"))
    if len(comparison) > MAX_TAG_VALUE:
        comparison = comparison[: MAX_TAG_VALUE - 1] + "…"
    tags = {
        "promoted_by_force": "true" if force and failed else "false",
        "promoted_from": str(previous) if previous else "none",
        "promotion_comparison": comparison,
    }
    with _errors(f"moving {champion_alias} to v{candidate.version}", uri):
        for key, value in tags.items():
            client.set_model_version_tag(model_name, str(candidate.version), key, value)
        try:
            client.set_registered_model_alias(model_name, champion_alias, str(candidate.version))
        except Exception:
            for key in tags:
                with contextlib.suppress(Exception):
                    client.delete_model_version_tag(model_name, str(candidate.version), key)
            raise
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(model_name, str(candidate.version), "promoted_at", stamp)
    if failed:
        reason = f"forced {versus} despite: " + "; ".join(f"{r.metric}: {r.note}" for r in failed)
    elif previous:
        reason = f"promoted {versus}: no key metric worse by more than {tolerance:g}"
    else:
        reason = f"promoted v{candidate.version}: first {champion_alias}"
    return PromotionResult(
        True,
        model_name,
        candidate.version,
        candidate.version,
        previous,
        tuple(rows),
        reason,
        force and bool(failed),
    )


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def download_bundle(model_uri: str, out_dir: Path, *, tracking_uri: str | None = None) -> Path:
    """Write the bundle of a registered version to `out_dir` (model.onnx, tokenizer.json, bundle.json).

    The folder is assembled next to `out_dir`, verified (manifest + file hashes + registered digest)
    and renamed into place; an existing bundle folder is replaced, any other non-empty folder is
    refused. The result loads with `serving.bundle.Bundle.load` alone, no MLflow."""
    name, alias, version = parse_model_uri(model_uri)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file())
    ):
        raise RegistryError(f"{out_dir} exists and is not a bundle folder; refusing to overwrite it")
    mlflow, client, uri = _connect(tracking_uri)
    with _errors(f"resolving {model_uri}", uri):
        mv = _get_version(client, uri, name, alias, version)
    expected = dict(getattr(mv, "tags", {}) or {}).get("bundle_digest")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with _errors(f"downloading {model_uri}", uri):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{int(mv.version)}", dst_path=str(staging / "model")
            )
        src = find_bundle_dir(Path(local))
        final = staging / "bundle"
        shutil.copytree(src, final)
        _verify_bundle(final)
        if expected and bundle_digest(final) != expected:
            raise RegistryError(
                f"{model_uri}: downloaded bundle digest does not match the registered bundle_digest tag "
                f"({expected[:12]}…); the stored artifacts were modified"
            )
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, old / "b")
            os.replace(final, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(final, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
