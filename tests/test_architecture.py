"""Layer rules of the project, checked over the real import graph by import-linter.

The contracts live in pyproject.toml ([tool.importlinter]): serving imports neither pipelines nor
evals; pipelines does not import evals; only pipelines.registry (and serving.model.source, inside
the function that downloads) imports mlflow; serving does not import torch or sklearn.
tests/serving/cli/test_imports.py checks, in a fresh process, that nothing heavy is imported at start.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_layer_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is part of the dev extra: make venv"
    done = subprocess.run(
        [exe, str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout, done.stdout
