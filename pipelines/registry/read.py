"""Reading the registry: resolve a `models:/` URI to a version, list versions with their metrics."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.registry.store import (
    DEFAULT_MODEL_NAME,
    KEY_METRICS,
    METRIC_TAG_PREFIX,
    RegistryError,
    _aliases,
    _connect,
    _errors,
    _get_version,
    _is_missing,
    _model_exists,
    _quote,
    _redact,
    parse_model_uri,
)


@dataclass(frozen=True)
class ResolvedVersion:
    """A registry version a `models:/` URI points at (not serving's local-bundle `ResolvedModel`)."""

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


def resolve(model_uri: str, *, tracking_uri: str | None = None) -> ResolvedVersion:
    """Name, version, alias and run of a `models:/` URI; RegistryError names what is missing."""
    name, alias, version = parse_model_uri(model_uri)
    _, client, uri = _connect(tracking_uri)
    with _errors(f"resolving {model_uri}", uri):
        mv = _get_version(client, uri, name, alias, version)
    return ResolvedVersion(name, int(mv.version), alias, mv.run_id or None)


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
