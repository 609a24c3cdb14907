"""Find a model (bundle folder or `models:/` URI) and run it over a whole data set in batches.

Job: the evaluation commands accept `--model` as either a bundle folder or a registered-model URI;
this module turns both into a loaded `serving.model.bundle.Bundle` plus the identity to record (name,
version, run), and predicts many texts with bounded memory.

Trade-offs: registered bundles are downloaded once into `.cache/evals/bundles/<name>-v<version>`
and reused while their manifest and file hashes still verify (a version's artifacts never change).
Texts are batched in length order (padding is per batch, so similar lengths waste less compute) and
the outputs are put back into input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.model.bundle import Bundle, BundleError, BundleOutput, read_manifest

DEFAULT_CACHE = Path(".cache/evals/bundles")


class ModelError(Exception):
    """The model cannot be found, downloaded or loaded (message says which and why)."""


@dataclass(frozen=True)
class ModelHandle:
    bundle_dir: Path
    uri: str
    name: str
    version: str | None = None
    run_id: str | None = None

    @property
    def registered(self) -> bool:
        return self.version is not None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.version else f"{self.name} ({self.bundle_dir})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "bundle_dir": str(self.bundle_dir),
        }


def resolve_model(
    spec: str, *, cache_dir: Path | None = None, tracking_uri: str | None = None
) -> ModelHandle:
    """A bundle folder path, or `models:/name@alias` / `models:/name/N` (downloaded and cached)."""
    if spec.startswith("models:/"):
        from pipelines.registry import RegistryError, download_bundle, resolve

        try:
            resolved = resolve(spec, tracking_uri=tracking_uri)
            target = Path(cache_dir or DEFAULT_CACHE) / f"{resolved.name}-v{resolved.version}"
            try:
                read_manifest(target)
            except BundleError:
                download_bundle(resolved.uri, target, tracking_uri=tracking_uri)
        except RegistryError as exc:
            raise ModelError(str(exc)) from exc
        return ModelHandle(target, spec, resolved.name, str(resolved.version), resolved.run_id)
    path = Path(spec)
    if not path.exists():
        raise ModelError(f"model not found: {spec!r} is neither a bundle folder nor a models:/ URI")
    try:
        manifest = read_manifest(path, verify_files=False)
    except BundleError as exc:
        raise ModelError(str(exc)) from exc
    return ModelHandle(path, str(path), str(manifest.get("name", path.name)))


def load_bundle(handle: ModelHandle, threads: int = 2) -> Bundle:
    try:
        return Bundle.load(handle.bundle_dir, threads=threads)
    except BundleError as exc:
        raise ModelError(str(exc)) from exc


def predict_in_batches(bundle: Bundle, texts: Sequence[str], batch_size: int = 64) -> BundleOutput:
    """`bundle.predict_arrays` over all texts, batched by length, results in input order."""
    n = len(texts)
    if n == 0:
        return bundle.predict_arrays([])
    order = np.argsort([len(t) for t in texts], kind="stable")
    parts: list[BundleOutput] = []
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        parts.append(bundle.predict_arrays([texts[i] for i in idx]))
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    heads = list(parts[0].probs)
    return BundleOutput(
        probs={h: np.concatenate([p.probs[h] for p in parts])[inverse] for h in heads},
        embedding=np.concatenate([p.embedding for p in parts])[inverse],
        token_counts=np.concatenate([p.token_counts for p in parts])[inverse],
        truncated=np.concatenate([p.truncated for p in parts])[inverse],
        p_weak_ok=(
            None
            if parts[0].p_weak_ok is None
            else np.concatenate([p.p_weak_ok for p in parts if p.p_weak_ok is not None])[inverse]
        ),
    )


def head_labels(bundle: Bundle) -> dict[str, tuple[str, ...]]:
    return {h.name: h.labels for h in bundle.heads}
