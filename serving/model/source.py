"""Where the served bundle comes from: a local folder, or the MLflow registry with a local last-good cache.

Job: turn the configured model (`models:/name@alias`, `models:/name/3` or a folder) into a local
bundle folder plus the identity to report (name, version, alias). Registry bundles are copied into
`models/serving-cache/<name>/v<version>/` and, once the holder has loaded and self-checked one, a
pointer `last-good@<alias>.json` is written next to them, so a restart with the registry down still
serves the last bundle that worked.

Trade-offs:
- MLflow is imported lazily, only by `RegistrySource`, so serving a local folder never imports it.
  Its HTTP client would retry an unreachable server for minutes, so retries and timeouts are capped
  (env defaults set before the import) and start-up falls back to the cache quickly.
- Any registry failure (unreachable, unknown model or alias, download error) falls back to the cache:
  the service keeps answering with a bundle that passed its self-check, and says so in /readyz.
- The bundle is found inside the downloaded MLflow model by its `bundle.json` (exactly one must be
  there), so this module does not depend on how the training side lays out its pyfunc artifacts.
- Change detection is the sha256 of `bundle.json`, which lists every file's sha256: cheap to poll.
- Integrity: a registry bundle must match its version's `bundle_digest` tag (recorded at
  registration: a digest of every file, bundle.json included), both when downloaded and when a
  cached copy is reused; a mismatch is a registry failure (the last good bundle keeps serving).
  The last-good pointer records the same digest, so a cached bundle edited on disk is not served.
- This is the one module that knows how a registry is addressed: `models:/` URI parsing, the default
  store (`default_tracking_uri`, `store_uris`), bundle lookup in a downloaded model
  (`find_bundle_dir`) and the download itself (`fetch_registered_bundle`). `pipelines.registry`
  reuses these, so training and serving cannot disagree about where the store is or what a URI means.
- The store defaults to what `tierroute train` writes to (`MLFLOW_TRACKING_URI`, else the embedded
  `sqlite:///<cwd>/mlruns/mlflow.db` with artifacts in `<cwd>/mlruns/artifacts`); a missing sqlite
  file counts as unreachable instead of letting MLflow create an empty store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from serving.model.bundle import MANIFEST, BundleError, folder_digest, read_manifest
from serving.schemas import RoutingThreshold

log = logging.getLogger("tierroute.serving")

MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))/?$")
Origin = Literal["local", "registry", "cache"]


class ModelSourceError(Exception):
    """The configured model cannot be found (and no cached bundle can stand in)."""


@dataclass(frozen=True)
class ResolvedModel:
    """A bundle folder on local disk and what to call it."""

    path: Path
    name: str
    version: str | None
    alias: str | None
    uri: str
    origin: Origin
    fingerprint: str
    note: str | None = None  # e.g. why a cached bundle stands in for the registry
    routing: dict[str, Any] | None = None
    """The version's `routing_threshold` tag (set by `tierroute calibrate`); wins over the bundle's."""
    digest: str | None = None
    """`folder_digest` of the bundle, checked against the registry's `bundle_digest` tag."""

    def ref(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "alias": self.alias}


class ModelSource(Protocol):
    uri: str

    def resolve(self) -> ResolvedModel: ...

    def remember(self, resolved: ResolvedModel) -> None:
        """Called once a resolved bundle loaded and passed its self-check."""


def parse_models_uri(uri: str) -> tuple[str, str | None, int | None]:
    """`models:/name@alias` -> (name, alias, None); `models:/name/3` -> (name, None, 3)."""
    m = MODELS_URI.match(uri.strip())
    if not m:
        raise ModelSourceError(
            f"not a registered-model URI: {uri!r}; "
            "expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    return m["name"], m["alias"], int(m["version"]) if m["version"] else None


def default_tracking_uri(project_root: Path | None = None) -> str:
    """`$MLFLOW_TRACKING_URI` if set, else the embedded sqlite store `<root>/mlruns/mlflow.db`, where
    `root` is the current directory at call time unless given (the one default of the whole project)."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    root = Path(project_root if project_root is not None else Path.cwd()).resolve()
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def store_uris(tracking_uri: str | None = None) -> tuple[str, str]:
    """(tracking, registry) URIs: the explicit tracking URI (then also the registry), else
    `default_tracking_uri()` with `$MLFLOW_REGISTRY_URI` as the registry when set."""
    tracking = tracking_uri or default_tracking_uri()
    registry = (None if tracking_uri else os.environ.get("MLFLOW_REGISTRY_URI", "").strip()) or tracking
    return tracking, registry


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


def manifest_fingerprint(path: Path) -> str:
    """sha256 of bundle.json: it lists every file's sha256, so any content change changes it."""
    try:
        return hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelSourceError(f"{path}: cannot read {MANIFEST} ({exc.strerror or exc})") from exc


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", part) or "_"


def find_bundle_dir(root: Path) -> Path:
    """The one folder under `root` (itself included) holding a bundle.json."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return root
    found = sorted(p.parent for p in root.rglob(MANIFEST))
    if not found:
        raise ModelSourceError(f"no {MANIFEST} under {root}: this model holds no tierroute bundle")
    if len(found) > 1:
        raise ModelSourceError(f"several bundles under {root}: {[str(p) for p in found]}")
    return found[0]


def fetch_registered_bundle(
    name: str, version: int | str, dst: Path, *, tracking: str, registry: str
) -> Path:
    """Download version `version` of registered model `name` into `dst` and return its bundle folder.

    MLflow is imported here and only here on the serving side; the fluent API is pointed at the
    same store first, so no part of MLflow falls back to its own default store in the cwd."""
    import mlflow
    import mlflow.artifacts

    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version}",
        dst_path=str(dst),
        tracking_uri=tracking,
        registry_uri=registry,
    )
    return find_bundle_dir(Path(local))


def create_source(model: str, *, tracking_uri: str | None = None, cache_dir: Path) -> ModelSource:
    """A registry source for `models:/...`, a local source for anything else."""
    if model.startswith("models:/"):
        return RegistrySource(model, tracking_uri=tracking_uri, cache_dir=cache_dir)
    return LocalSource(Path(model))


class LocalSource:
    """A bundle folder (or a symlink to one, for atomic deploys); re-read on every resolve."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.uri = str(self.path)

    def resolve(self) -> ResolvedModel:
        folder = self.path.resolve()
        if not (folder / MANIFEST).is_file():
            raise ModelSourceError(f"{self.path}: not a bundle folder (no {MANIFEST})")
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelSourceError(f"{folder / MANIFEST}: unreadable ({exc})") from exc
        if not isinstance(manifest, dict):
            raise ModelSourceError(f"{folder / MANIFEST}: expected a JSON object")
        version = manifest.get("version")
        return ResolvedModel(
            path=folder,
            name=str(manifest.get("name") or folder.name),
            version=str(version) if version is not None else None,
            alias=None,
            uri=self.uri,
            origin="local",
            fingerprint=manifest_fingerprint(folder),
        )

    def remember(self, resolved: ResolvedModel) -> None:
        """Local folders need no cache."""


class RegistrySource:
    """`models:/name@alias` or `models:/name/<version>` through the MLflow client, with a local cache."""

    def __init__(self, uri: str, *, tracking_uri: str | None, cache_dir: Path) -> None:
        self.uri = uri
        self.name, self.alias, self.version = parse_models_uri(uri)
        self.tracking_uri = tracking_uri
        self.root = Path(cache_dir) / _safe(self.name)

    @property
    def _pointer(self) -> Path:
        selector = f"@{_safe(self.alias)}" if self.alias else f"-v{_safe(str(self.version))}"
        return self.root / f"last-good{selector}.json"

    def resolve(self) -> ResolvedModel:
        try:
            return self._from_registry()
        except Exception as exc:
            reason = f"registry unavailable for {self.uri}: {_one_line(exc)}"
            cached = self._from_cache(reason)
            if cached is None:
                raise ModelSourceError(
                    f"{reason}; and no cached bundle under {self._pointer.parent} "
                    "(serve a local bundle folder with --model DIR, or fix the registry)"
                ) from exc
            return cached

    def store_uris(self) -> tuple[str, str]:
        """(tracking, registry) URIs of this source; see the module's `store_uris`."""
        return store_uris(self.tracking_uri)

    def _from_registry(self) -> ResolvedModel:
        tracking, registry = self.store_uris()
        db = sqlite_db_path(tracking)
        if db is not None and not db.is_file():  # MLflow would silently create an empty store here
            raise ModelSourceError(f"no MLflow store at {db}")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking, registry_uri=registry)
        if self.alias is not None:
            mv = client.get_model_version_by_alias(self.name, self.alias)
        else:
            mv = client.get_model_version(self.name, str(self.version))
        version = str(mv.version)
        routing = routing_from_tags(mv.tags or {})
        expected = (mv.tags or {}).get("bundle_digest") or None
        target = self.root / f"v{_safe(version)}"
        if not self._usable(target, expected):
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".download-", dir=self.root) as tmp:
                bundle = fetch_registered_bundle(
                    self.name, version, Path(tmp), tracking=tracking, registry=registry
                )
                digest = bundle_digest_of(bundle)
                if expected is not None and digest != expected:
                    raise ModelSourceError(
                        f"version {version} does not match its bundle_digest tag "
                        f"({digest[:12]}… != {expected[:12]}…): refusing a modified bundle"
                    )
                shutil.rmtree(target, ignore_errors=True)
                os.replace(bundle, target)
        return ResolvedModel(
            path=target,
            name=self.name,
            version=version,
            alias=self.alias,
            uri=self.uri,
            origin="registry",
            fingerprint=with_routing(manifest_fingerprint(target), routing),
            routing=routing,
            digest=expected,
        )

    @staticmethod
    def _usable(folder: Path, expected: str | None) -> bool:
        """A cached copy is reused only if every file still matches its manifest hash and the
        folder matches the version's `bundle_digest` tag (when the version has one)."""
        if not (folder / MANIFEST).is_file():
            return False
        try:
            read_manifest(folder)
            if expected is not None and bundle_digest_of(folder) != expected:
                raise BundleError("the folder does not match the version's bundle_digest tag")
        except BundleError as exc:
            log.warning("cached bundle %s is damaged (%s); downloading it again", folder, exc)
            return False
        return True

    def _from_cache(self, reason: str) -> ResolvedModel | None:
        try:
            pointer: dict[str, Any] = json.loads(self._pointer.read_text(encoding="utf-8"))
            folder = self.root / str(pointer["folder"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not (folder / MANIFEST).is_file():
            return None
        recorded = pointer.get("bundle_digest")
        if isinstance(recorded, str) and bundle_digest_of(folder) != recorded:
            log.error("cached bundle %s was modified since it was last served; not serving it", folder)
            return None
        routing = pointer.get("routing") if isinstance(pointer.get("routing"), dict) else None
        return ResolvedModel(
            path=folder,
            name=self.name,
            version=str(pointer.get("version")) if pointer.get("version") is not None else None,
            alias=self.alias,
            uri=self.uri,
            origin="cache",
            fingerprint=with_routing(manifest_fingerprint(folder), routing),
            routing=routing,
            note=f"serving the last good cached bundle (saved {pointer.get('saved_at', '?')}): {reason}",
        )

    def remember(self, resolved: ResolvedModel) -> None:
        """Point `last-good` at a registry bundle that loaded and passed its self-check."""
        if resolved.origin != "registry":
            return
        pointer = {
            "uri": self.uri,
            "name": resolved.name,
            "version": resolved.version,
            "alias": resolved.alias,
            "folder": resolved.path.name,
            "fingerprint": resolved.fingerprint,
            "bundle_digest": bundle_digest_of(resolved.path),
            "routing": resolved.routing,
            "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        tmp = self._pointer.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self._pointer)


def seed_cache(cache_dir: Path, uri: str, bundle: Path, version: str) -> ResolvedModel:
    """Put a bundle into the cache as the last good one for `uri` (for air-gapped installs and tests)."""
    source = RegistrySource(uri, tracking_uri=None, cache_dir=cache_dir)
    target = source.root / f"v{_safe(version)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bundle, target)
    resolved = ResolvedModel(
        path=target,
        name=source.name,
        version=version,
        alias=source.alias,
        uri=uri,
        origin="registry",
        fingerprint=manifest_fingerprint(target),
    )
    source.remember(resolved)
    return replace(resolved, origin="cache")


def bundle_digest_of(folder: Path) -> str:
    """`folder_digest` of a bundle folder, reusing the manifest's file hashes when it is readable
    (the caller verifies them); bundle.json and any unlisted file are always hashed."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        files = None
    known = {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else None
    return folder_digest(folder, known)


def routing_from_tags(tags: dict[str, str]) -> dict[str, Any] | None:
    """The `routing_threshold` version tag (JSON written by `tierroute calibrate`), or None when the
    version was never calibrated or the tag is not a usable threshold (logged, then ignored)."""
    raw = tags.get("routing_threshold")
    if not raw:
        return None
    try:
        routing = json.loads(raw)
    except ValueError:
        routing = None
    if not isinstance(routing, dict) or RoutingThreshold.parse(routing) is None:
        log.warning("ignoring malformed routing_threshold tag %r", raw[:200])
        return None
    return routing


def with_routing(fingerprint: str, routing: dict[str, Any] | None) -> str:
    """A bundle fingerprint that also changes when the version's threshold tag does, so the reload
    poller picks up a new calibration without a new bundle."""
    if routing is None:
        return fingerprint
    extra = hashlib.sha256(json.dumps(routing, sort_keys=True).encode()).hexdigest()[:16]
    return f"{fingerprint}+routing:{extra}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
