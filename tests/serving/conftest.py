"""Fixtures for the serving tests: a real bundle and real uvicorn servers on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Server, start_server

REPO = Path(__file__).resolve().parents[2]


def _lead_pipeline_ready() -> bool:
    return (
        importlib.util.find_spec("pipelines.train.classifier") is not None
        and (REPO / "data" / "labelled" / "requests.parquet").is_file()
    )


@pytest.fixture(scope="session")
def serving_bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared trained bundle when the training pipeline is present, else a tiny real one."""
    if _lead_pipeline_ready():
        try:
            return Path(request.getfixturevalue("trained_bundle"))
        except Exception as exc:  # the serving tests need any real bundle, not that one
            warnings.warn(f"trained_bundle unavailable ({exc!r:.200}); using a small stand-in", stacklevel=1)
    from tests.support.bundles import build_small_bundle

    cache: Path = request.getfixturevalue("session_cache")
    return build_small_bundle(
        tmp_path_factory.mktemp("serving-bundle") / "bundle", cache / "encoder", routing=True
    )


@pytest.fixture(scope="module")
def server(serving_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One service without an API key, shared by a test module."""
    srv = start_server(serving_bundle, tmp_path_factory.mktemp("srv"))
    yield srv
    srv.stop()
