"""Model sources and the holder without a server: URIs, the cache pointer, contract checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serving.model.holder import ModelHolder, ModelLoadError
from serving.model.source import (
    LocalSource,
    ModelSourceError,
    RegistrySource,
    parse_models_uri,
    seed_cache,
)
from tests.support.server import free_port


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/tierroute-classifier@champion", ("tierroute-classifier", "champion", None)),
        ("models:/m/3", ("m", None, 3)),
    ],
)
def test_parse_models_uri(uri: str, expected: tuple[str, str | None, int | None]) -> None:
    assert parse_models_uri(uri) == expected


@pytest.mark.parametrize("uri", ["models:/", "models:/m", "models:/m@a/extra", "runs:/abc/model"])
def test_parse_models_uri_rejects_what_it_cannot_serve(uri: str) -> None:
    with pytest.raises(ModelSourceError):
        parse_models_uri(uri)


def test_local_source_fingerprint_follows_content(serving_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "b"
    shutil.copytree(serving_bundle, folder)
    first = LocalSource(folder).resolve()
    assert first.origin == "local" and first.alias is None
    manifest = json.loads((folder / "bundle.json").read_text())
    manifest["version"] = "9"
    (folder / "bundle.json").write_text(json.dumps(manifest))
    second = LocalSource(folder).resolve()
    assert second.version == "9" and second.fingerprint != first.fingerprint
    with pytest.raises(ModelSourceError, match="not a bundle folder"):
        LocalSource(tmp_path / "missing").resolve()


def test_registry_source_falls_back_to_the_last_good_cache(serving_bundle: Path, tmp_path: Path) -> None:
    uri = "models:/tierroute-classifier@champion"
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ModelSourceError, match="no cached bundle"):
        RegistrySource(uri, tracking_uri=dead, cache_dir=tmp_path).resolve()
    seed_cache(tmp_path, uri, serving_bundle, version="4")
    resolved = RegistrySource(uri, tracking_uri=dead, cache_dir=tmp_path).resolve()
    assert resolved.origin == "cache" and resolved.version == "4" and resolved.alias == "champion"
    assert resolved.note and "registry unavailable" in resolved.note
    # another alias has no last-good pointer of its own
    with pytest.raises(ModelSourceError):
        RegistrySource(
            "models:/tierroute-classifier@candidate", tracking_uri=dead, cache_dir=tmp_path
        ).resolve()


def test_holder_refuses_a_bundle_without_a_tier_head(serving_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-tier"
    shutil.copytree(serving_bundle, folder)
    manifest = json.loads((folder / "bundle.json").read_text())
    manifest["heads"] = [h for h in manifest["heads"] if h["name"] != "tier"]
    (folder / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="no 'tier' head"):
        ModelHolder(LocalSource(folder)).load_initial()


def test_holder_reload_keeps_the_old_model_when_the_source_breaks(
    serving_bundle: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "b"
    shutil.copytree(serving_bundle, folder)
    holder = ModelHolder(LocalSource(folder))
    first = holder.load_initial()
    assert holder.reload().status == "unchanged"
    (folder / "tokenizer.json").write_text("{}")  # tampered file, same manifest
    assert holder.reload().status == "unchanged"  # nothing to reload: the manifest did not change
    outcome = holder.reload(force=True)
    assert outcome.status == "refused" and "tokenizer.json" in (outcome.reason or "")
    assert holder.current is first
    shutil.rmtree(folder)
    outcome = holder.reload()
    assert outcome.status == "refused" and holder.current is first
    ready = holder.readiness()
    assert ready["ready"] is True and ready["last_reload"]["status"] == "refused"
    model, predictions = holder.predict(["still serving"])
    assert model is first and len(predictions) == 1
