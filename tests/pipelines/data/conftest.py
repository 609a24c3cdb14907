"""Fixtures for the data tests: the real raw folder and one real build shared by the session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner, Result

from pipelines.cli.data import register
from pipelines.data.build import BuildReport, build_dataset, load_built

REPO = Path(__file__).resolve().parents[3]
RAW = REPO / "data" / "raw"
CARD = REPO / "data" / "README.md"
LABELLED = REPO / "data" / "labelled"


def make_app() -> typer.Typer:
    """A root app with only the data commands, mounted the way evals/cli/root.py mounts them."""
    root = typer.Typer(no_args_is_help=True)
    bench = typer.Typer()
    register(root, bench)

    @root.callback()
    def _root() -> None:
        """tierroute (test root)."""

    return root


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    return build_dataset(RAW, tmp_path_factory.mktemp("built"))


@pytest.fixture(scope="session")
def built_df(built: BuildReport) -> pd.DataFrame:
    return load_built(built.path)


@pytest.fixture(scope="session")
def cli_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path, Path]:
    """`data build` run through the CLI into a temp folder, refreshing a temp copy of the data card."""
    out = tmp_path_factory.mktemp("cli_built")
    card = out / "card.md"
    shutil.copyfile(CARD, card)
    result = CliRunner().invoke(
        make_app(), ["data", "build", "--raw", str(RAW), "--out", str(out), "--card", str(card)]
    )
    return result, out, card
