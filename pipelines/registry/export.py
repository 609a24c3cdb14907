"""Export: write a registered version's bundle to a plain folder that loads without MLflow."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pipelines.registry.hashing import _verify_bundle, bundle_digest, find_bundle_dir
from pipelines.registry.store import MANIFEST, RegistryError, _connect, _errors, _get_version, parse_model_uri


def download_bundle(model_uri: str, out_dir: Path, *, tracking_uri: str | None = None) -> Path:
    """Write the bundle of a registered version to `out_dir` (model.onnx, tokenizer.json, bundle.json).

    The folder is assembled next to `out_dir`, verified (manifest + file hashes + registered digest)
    and renamed into place; an existing bundle folder is replaced, any other non-empty folder is
    refused. The result loads with `serving.model.bundle.Bundle.load` alone, no MLflow."""
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
