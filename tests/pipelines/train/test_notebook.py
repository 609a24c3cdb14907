"""The labels-and-errors notebook runs top to bottom against a real bundle."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def test_notebook_01_executes(repo_root: Path, trained_bundle: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TIERROUTE_BUNDLE", str(trained_bundle))
    monkeypatch.setenv("TIERROUTE_MAX_ROWS", "200")
    nb = nbformat.read(repo_root / "notebooks" / "01-labels-and-errors.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo_root)}}
    ).execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "tier accuracy" in outputs
    assert os.environ["TIERROUTE_BUNDLE"] == str(trained_bundle)
