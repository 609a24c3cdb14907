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
