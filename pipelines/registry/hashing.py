"""Bundle identity in the registry: the order-independent digest of a bundle folder, finding the
bundle inside a downloaded model, and verifying a folder before it is logged or exported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.registry.store import MANIFEST, RegistryError
from serving.model import source as model_source
from serving.model.bundle import folder_digest


def bundle_digest(bundle_dir: Path) -> str:
    """sha256 over every file of a bundle folder (relative path + content digest), order-independent:
    serving's `folder_digest`, so the `bundle_digest` tag and the loader's check cannot disagree."""
    return folder_digest(Path(bundle_dir))


def find_bundle_dir(root: Path) -> Path:
    """The one folder under `root` (itself included) holding a bundle.json (serving's lookup)."""
    try:
        return model_source.find_bundle_dir(root)
    except model_source.ModelSourceError as exc:
        raise RegistryError(str(exc)) from None


def _verify_bundle(path: Path) -> dict[str, Any]:
    """bundle.json parsed; file hashes checked with serving.model.bundle when it is available."""
    if not path.is_dir():
        raise RegistryError(f"bundle folder not found: {path}")
    if not (path / MANIFEST).is_file():
        raise RegistryError(f"{path}: no {MANIFEST}; not a tierroute bundle")
    try:
        from serving.model.bundle import BundleError, read_manifest
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
