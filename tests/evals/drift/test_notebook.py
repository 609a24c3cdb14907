"""notebooks/02-drift.ipynb runs top to bottom against the real trained bundle and finds the drift."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow


def test_notebook_02_executes(repo_root: Path, trained_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERROUTE_BUNDLE", str(trained_bundle))
    monkeypatch.setenv("TIERROUTE_MAX_ROWS", "700")
    nb = nbformat.read(repo_root / "notebooks" / "02-drift.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "DRIFT -> exit code 1" in text
    assert "cyrillic" in text
    images = sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )
    assert images >= 2


def test_notebook_01_executes_on_the_model_it_is_given(
    repo_root: Path, trained_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """01 loads a model by URI/alias (default models:/tierroute-classifier@champion), never "the newest
    folder under models/bundles", which after `gate train` is a gate bundle."""
    monkeypatch.setenv("TIERROUTE_BUNDLE", str(trained_bundle))
    monkeypatch.setenv("TIERROUTE_MAX_ROWS", "300")
    nb = nbformat.read(repo_root / "notebooks" / "01-labels-and-errors.ipynb", as_version=4)
    assert not any("latest_bundle" in c.source for c in nb.cells if c.cell_type == "code")
    assert any("@champion" in c.source for c in nb.cells if c.cell_type == "code")
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"model {trained_bundle.name}" in text or str(trained_bundle) in text, text[:2000]
    assert "tier accuracy" in text
    images = sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )
    assert images >= 2
