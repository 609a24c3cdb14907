"""The registry layer: every MLflow call of the project lives in this subpackage.

`store` connects (default store and `models:/` parsing shared with `serving.model.source`), `log`
registers training runs, `read` resolves and lists versions, `promote` moves `champion`, `export`
writes a version back to a plain bundle folder, `tracking` logs eval/drift/calibrate runs, `pyfunc`
is the MLflow flavour of a bundle. mlflow itself is imported only inside functions (and by `pyfunc`).
"""

from pipelines.registry.export import download_bundle
from pipelines.registry.hashing import bundle_digest, find_bundle_dir
from pipelines.registry.log import RegisteredVersion, TrainingRecord, log_and_register, tagged_metrics
from pipelines.registry.promote import (
    ComparisonRow,
    PromotionCheck,
    PromotionContext,
    PromotionResult,
    compare_metrics,
    lower_is_better,
    promote,
    rollback,
)
from pipelines.registry.read import ResolvedVersion, VersionInfo, list_versions, resolve
from pipelines.registry.store import (
    CANDIDATE_ALIAS,
    CHAMPION_ALIAS,
    DEFAULT_EXPERIMENT,
    DEFAULT_MODEL_NAME,
    DEFAULT_TOLERANCE,
    HTTP_ENV,
    KEY_METRICS,
    QUIET_ENV,
    RegistryError,
    artifact_root_for,
    default_tracking_uri,
    parse_model_uri,
    sqlite_db_path,
)

__all__ = [
    "CANDIDATE_ALIAS",
    "CHAMPION_ALIAS",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_TOLERANCE",
    "HTTP_ENV",
    "KEY_METRICS",
    "QUIET_ENV",
    "ComparisonRow",
    "PromotionCheck",
    "PromotionContext",
    "PromotionResult",
    "RegisteredVersion",
    "RegistryError",
    "ResolvedVersion",
    "TrainingRecord",
    "VersionInfo",
    "artifact_root_for",
    "bundle_digest",
    "compare_metrics",
    "default_tracking_uri",
    "download_bundle",
    "find_bundle_dir",
    "list_versions",
    "log_and_register",
    "lower_is_better",
    "parse_model_uri",
    "promote",
    "resolve",
    "rollback",
    "sqlite_db_path",
    "tagged_metrics",
]
