"""`tierroute data build|validate` through typer's CliRunner on a root app built with `register`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner, Result

from pipelines.data.card import render_tables
from pipelines.data.labels import TASKS, TIERS
from tests.pipelines.data.conftest import RAW, make_app

runner = CliRunner()


def test_build_prints_tables_and_refreshes_the_card(cli_build: tuple[Result, Path, Path]) -> None:
    result, out, card = cli_build
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    for heading in ("Rows per source and tier", "Rows per task and split", "Rows per tier and split"):
        assert heading in result.stdout
    for name in (*summary["by_source"], *TIERS, *TASKS):
        assert name in result.stdout
    assert f"{summary['rows']:,}" in result.stdout
    assert summary["digest"] in result.stdout
    assert render_tables(summary) in card.read_text(encoding="utf-8")
    assert "refreshed the count tables" in result.stdout


def test_build_with_missing_raw_folder_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(
        make_app(), ["data", "build", "--raw", str(tmp_path / "none"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "raw data folder not found" in result.stderr
    assert "Traceback" not in result.output


def test_build_with_incomplete_raw_folder_fails_cleanly(tmp_path: Path) -> None:
    card = tmp_path / "card.md"
    card.write_text("# card without markers\n", encoding="utf-8")
    result = runner.invoke(
        make_app(),
        ["data", "build", "--raw", str(tmp_path), "--out", str(tmp_path / "o"), "--card", str(card)],
    )
    assert result.exit_code == 1  # an empty raw folder lacks the sources: clear error, nothing written
    assert "data build failed" in result.stderr
    assert not (tmp_path / "o" / "requests.parquet").exists()
    assert card.read_text(encoding="utf-8") == "# card without markers\n"


def _write_good(path: Path) -> Path:
    rows = [
        {"text": f"request {i} text", "tier": TIERS[i % 3], "task": TASKS[i % len(TASKS)]}
        for i in range(8 * 8)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_validate_good_file(tmp_path: Path) -> None:
    path = _write_good(tmp_path / "good.csv")
    result = runner.invoke(make_app(), ["data", "validate", str(path), "--label-columns", "tier,task"])
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout and "64 rows" in result.stdout
    assert "reasoning" in result.stdout and "summarization" in result.stdout
    assert "digest" in result.stdout


def test_validate_shipped_data_with_weak_ok_head() -> None:
    path = RAW.parent / "labelled" / "requests.parquet"
    result = runner.invoke(
        make_app(),
        ["data", "validate", str(path), "--label-columns", "tier,task,weak_ok", "--allow-missing-labels"],
    )
    assert result.exit_code == 0, result.output
    assert "(missing)" in result.stdout and "true" in result.stdout


def test_validate_bad_file_exits_2_with_the_reason(tmp_path: Path) -> None:
    path = _write_good(tmp_path / "bad.csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = "request 1 text,hard,code"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(make_app(), ["data", "validate", str(path)])
    assert result.exit_code == 2  # bad input: the same code as `train`
    assert "line 3: 'hard'" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_validate_misnamed_column_suggests(tmp_path: Path) -> None:
    path = _write_good(tmp_path / "good.csv")
    result = runner.invoke(make_app(), ["data", "validate", str(path), "--label-columns", "tier,tsk"])
    assert result.exit_code == 2
    assert "missing column 'tsk'" in result.stderr and "did you mean 'task'" in result.stderr


def test_help_texts() -> None:
    app = make_app()
    group = runner.invoke(app, ["data", "--help"])
    assert group.exit_code == 0
    assert "build" in group.stdout and "validate" in group.stdout and "Labelled request data" in group.stdout
    build = runner.invoke(app, ["data", "build", "--help"])
    assert "--raw" in build.stdout and "--out" in build.stdout and "near-duplicate" in build.stdout
    validate = runner.invoke(app, ["data", "validate", "--help"])
    assert "--label-columns" in validate.stdout and "--min-rows-per-class" in validate.stdout
