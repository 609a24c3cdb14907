"""`tierroute gate ...` and `tierroute bench gate` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli.gate import register

runner = CliRunner(env={"COLUMNS": "200"})


def app() -> typer.Typer:
    root = typer.Typer()
    bench = typer.Typer()
    register(root, bench)
    root.add_typer(bench, name="bench")
    return root


def test_check_exit_codes_and_json() -> None:
    ok = runner.invoke(
        app(), ["gate", "check", "--prompt", "Who wrote Hamlet?", "--response", "Shakespeare."]
    )
    assert ok.exit_code == 0 and "ok" in ok.stdout
    bad = runner.invoke(
        app(),
        ["gate", "check", "--prompt", "Write a poem.", "--response", "I'm sorry, I can't do that.", "--json"],
    )
    assert bad.exit_code == 1
    assert json.loads(bad.stdout) == {"ok": False, "reasons": ["too_short", "refusal"]}


def test_check_json_schema_inline_file_and_invalid(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "required": ["a"]}')
    r = runner.invoke(
        app(), ["gate", "check", "--prompt", "x", "--response", '{"b": 1}', "--json-schema", str(schema)]
    )
    assert r.exit_code == 1 and "schema_violation" in r.stdout
    r = runner.invoke(
        app(),
        ["gate", "check", "--prompt", "x", "--response", '{"a": 1}', "--json-schema", '{"required": ["a"]}'],
    )
    assert r.exit_code == 0
    r = runner.invoke(app(), ["gate", "check", "--prompt", "x", "--response", "{}", "--json-schema", "{nope"])
    assert r.exit_code == 2 and "json-schema" in r.stderr
    r = runner.invoke(
        app(), ["gate", "check", "--prompt", "x", "--response", "{}", "--json-schema", '{"type": 5}']
    )
    assert r.exit_code == 2 and "not a valid JSON Schema" in r.stderr


def test_data_build_writes_parquet(tmp_path: Path) -> None:
    raw = Path(__file__).resolve().parents[3] / "data" / "raw"
    assert (raw / "coconot").is_dir(), f"{raw / 'coconot'} ships with the repository"
    out = tmp_path / "g" / "gate.parquet"
    labels = raw.parent / "gate" / "refusal_labels.csv"
    r = runner.invoke(
        app(), ["gate", "data", "build", "--raw", str(raw), "--labels", str(labels), "--out", str(out)]
    )
    assert r.exit_code == 0, r.stdout + r.stderr
    assert out.is_file() and (out.parent / "summary.json").is_file()
    assert "coconot_pref:chosen" in r.stdout


def test_data_build_missing_raw_is_a_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(
        app(), ["gate", "data", "build", "--raw", str(tmp_path), "--out", str(tmp_path / "g.parquet")]
    )
    assert r.exit_code == 2 and "copy the raw data" in r.stderr


def test_train_rejects_bad_options(tmp_path: Path) -> None:
    r = runner.invoke(app(), ["gate", "train", "--precision", "fp16", "--no-register"])
    assert r.exit_code == 2 and "precision" in r.stderr
    r = runner.invoke(app(), ["gate", "train", "--data", str(tmp_path / "none.parquet"), "--no-register"])
    assert r.exit_code == 2 and "gate data build" in r.stderr
    r = runner.invoke(app(), ["gate", "train", "--target-false-accept", "1.5", "--no-register"])
    assert r.exit_code == 2 and "target_false_accept" in r.stderr


def test_bench_gate_checks_only() -> None:
    r = runner.invoke(
        app(),
        [
            "bench",
            "gate",
            "--checks-only",
            "--check-repeats",
            "50",
            "--response-tokens",
            "300",
            "--prompt-tokens",
            "50",
        ],
    )
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "no gate bundle: checks only" in r.stdout


@pytest.mark.slow
def test_judge_and_bench_with_bundle(gate_bundle: Path) -> None:
    r = runner.invoke(
        app(), ["gate", "judge", "--model", str(gate_bundle), "--prompt", "Summarise it.", "--response", ""]
    )
    assert r.exit_code == 1 and '"empty"' in r.stdout
    r = runner.invoke(
        app(),
        [
            "bench",
            "gate",
            "--model",
            str(gate_bundle),
            "--repeats",
            "3",
            "--check-repeats",
            "20",
            "--response-tokens",
            "300",
        ],
    )
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "checks alone" in r.stdout and "gate (checks + model, int8)" in r.stdout


@pytest.mark.slow
def test_calibrate_writes_a_copy_with_the_economic_threshold(
    gate_bundle: Path, gate_dataset: Path, tmp_path: Path
) -> None:
    from serving.gate.model import GateModel

    out = tmp_path / "calibrated"
    args = ["gate", "calibrate", "--model", str(gate_bundle), "--data", str(gate_dataset), "--limit", "40"]
    # a bad answer that costs nothing: accept everything the checks pass (threshold 0)
    r = runner.invoke(app(), [*args, "--bad-answer-cost", "0", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["threshold"] == 0.0 and result["chosen_on"] == "validation"
    assert {"cost_per_1000", "bad_per_1000"} <= set(result["at_threshold"])
    copy = GateModel.load(out)
    assert copy.threshold == 0.0 and copy.manifest["operating_point"]["rule"] == "economics"
    assert (
        GateModel.load(gate_bundle).threshold
        == json.loads((gate_bundle / "bundle.json").read_text())["thresholds"]["p_acceptable"]
    )  # the source bundle is untouched
    # a very expensive bad answer: a strict threshold, and a table with the cost curve
    r = runner.invoke(app(), [*args, "--bad-answer-cost", "100"])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "cascade economics" in r.stdout and "chosen threshold" in r.stdout
    r = runner.invoke(app(), [*args, "--register"])
    assert r.exit_code == 2 and "--out" in r.stderr
