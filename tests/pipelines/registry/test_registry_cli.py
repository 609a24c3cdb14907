"""`tierroute promote`, `tierroute models list`, `tierroute export` through typer's CliRunner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli import registry as registry_cli
from pipelines.registry import log_and_register, promote, resolve

NAME = "tierroute-classifier"


@pytest.fixture()
def app() -> typer.Typer:
    root = typer.Typer()
    bench = typer.Typer()
    registry_cli.register(root, bench)
    return root


def run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_every_command_has_help(app: typer.Typer) -> None:
    for args in (["promote"], ["models", "list"], ["export"]):
        result = run(app, *args, "--help")
        assert result.exit_code == 0, result.output
        assert "--tracking-uri" in result.output
    assert "--force" in run(app, "promote", "--help").output
    assert "list" in run(app, "models", "--help").output


def test_promote_refuses_a_worse_candidate_and_prints_the_comparison(
    app: typer.Typer, tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(tier_f1=0.80, task_f1=0.70), tiny_bundle)
    first = run(app, "promote")
    assert first.exit_code == 0, first.output
    assert "first champion" in first.output

    log_and_register(make_record(tier_f1=0.70, task_f1=0.70), tiny_bundle)
    refused = run(app, "promote", "--tolerance", "0.01")
    assert refused.exit_code == 1, refused.output
    assert (
        "test_tier_macro_f1" in refused.output and "0.8000" in refused.output and "0.7000" in refused.output
    )
    assert "-0.1000" in refused.output and "NO" in refused.output
    assert "not promoted" in refused.stderr
    assert resolve(f"models:/{NAME}@champion").version == 1

    loose = run(app, "promote", "--tolerance", "0.2")
    assert loose.exit_code == 0, loose.output
    assert resolve(f"models:/{NAME}@champion").version == 2


def test_promote_force_is_recorded(
    app: typer.Typer, tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    from mlflow import MlflowClient

    log_and_register(make_record(tier_f1=0.80), tiny_bundle)
    promote(NAME)
    log_and_register(make_record(tier_f1=0.40), tiny_bundle)
    result = run(app, "promote", "--force")
    assert result.exit_code == 0, result.output
    assert "forced" in result.output
    tags = MlflowClient(tracking_uri, tracking_uri).get_model_version(NAME, "2").tags
    assert tags["promoted_by_force"] == "true"


def test_promote_custom_aliases_and_metric(
    app: typer.Typer, tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(), tiny_bundle, alias="challenger")
    result = run(
        app,
        "promote",
        "--candidate-alias",
        "challenger",
        "--champion-alias",
        "prod",
        "--metric",
        "test_tier_ece",
    )
    assert result.exit_code == 0, result.output
    assert "test_tier_ece" in result.output and "test_task_macro_f1" not in result.output
    assert resolve(f"models:/{NAME}@prod").version == 1


def test_models_list_shows_versions_aliases_and_metrics(
    app: typer.Typer, tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(tier_f1=0.80, task_f1=0.61), tiny_bundle)
    promote(NAME)
    log_and_register(make_record(tier_f1=0.83, task_f1=0.62), tiny_bundle)
    result = run(app, "models", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    v1 = next(line for line in lines if "champion" in line)
    v2 = next(line for line in lines if "candidate" in line)
    assert "0.8000" in v1 and "0.6100" in v1
    assert "0.8300" in v2 and "0.6200" in v2
    assert "tier_macro_f1" in result.output and "2 version(s)" in result.output
    # which data each version was trained on, and how many rows (make_record logs 3 rows of unit.parquet)
    assert "unit.parquet (d1g3st)" in v1 and " 3 " in v1


def test_export_round_trip(
    app: typer.Typer, tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any], tmp_path: Path
) -> None:
    from serving.model.bundle import Bundle

    log_and_register(make_record(), tiny_bundle)
    promote(NAME)
    out = tmp_path / "exported"
    result = run(app, "export", "--model", f"models:/{NAME}@champion", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "@champion = v1" in result.output
    bundle = Bundle.load(out)
    assert bundle.head_names == ["tier", "task"]
    assert bundle.predict(["hi"])[0].to_result() == Bundle.load(tiny_bundle).predict(["hi"])[0].to_result()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "list", "--model-name", "ghost"], "no registered model named 'ghost'"),
        (["promote", "--model-name", "ghost"], "no registered model named 'ghost'"),
        (["promote", "--candidate-alias", "nightly"], "has no alias 'nightly'"),
        (["export", "--model", f"models:/{NAME}@champion", "--out", "x"], "has no alias 'champion'"),
        (["export", "--model", f"models:/{NAME}/9", "--out", "x"], "has no version 9"),
        (["export", "--model", "tierroute-classifier", "--out", "x"], "not a registered-model URI"),
    ],
)
def test_clear_errors_and_exit_code_2(
    app: typer.Typer,
    tracking_uri: str,
    tiny_bundle: Path,
    make_record: Callable[..., Any],
    args: list[str],
    message: str,
) -> None:
    log_and_register(make_record(), tiny_bundle)
    result = run(app, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_unreachable_registry_exits_2(app: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.ports import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    for args in (["models", "list"], ["promote"], ["export", "--out", "x"]):
        result = run(app, *args, "--tracking-uri", uri)
        assert result.exit_code == 2, result.output
        assert f"MLflow tracking server {uri} is unreachable" in result.stderr


def test_eval_set_checks_are_passed_to_promote(
    app: typer.Typer,
    tracking_uri: str,
    tiny_bundle: Path,
    make_record: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines.registry import ComparisonRow, PromotionContext

    log_and_register(make_record(), tiny_bundle)
    extra = tmp_path / "this_week.jsonl"
    extra.write_text('{"text": "hi", "tier": "simple"}\n')

    # `app` mounts the registry commands without an evaluation gate: --eval-set is refused
    not_wired = run(app, "promote", "--eval-set", str(extra))
    assert not_wired.exit_code == 2 and "not wired in" in not_wired.stderr

    calls: list[registry_cli.EvalSetRequest] = []

    def factory(request: registry_cli.EvalSetRequest) -> list[Any]:
        calls.append(request)
        if request.required_slices == ["nope"]:
            raise ValueError("required slice(s) ['nope'] not found")

        def on_extra_set(ctx: PromotionContext) -> list[ComparisonRow]:
            name = request.files[0].name
            return [ComparisonRow(f"{name}: tier_macro_f1", 0.7, 0.6, -0.1, False, "worse on extra set")]

        return [on_extra_set]

    app = typer.Typer()
    registry_cli.register(app, typer.Typer(), eval_checks=factory)
    refused = run(app, "promote", "--eval-set", str(extra), "--tolerance", "0.05", "--required-slice", "*")
    assert refused.exit_code == 1, refused.output
    assert calls == [registry_cli.EvalSetRequest([extra], 0.05, "source", ["*"], "auto")]
    bad = run(app, "promote", "--eval-set", str(extra), "--required-slice", "nope", "--eval-split", "all")
    assert bad.exit_code == 2 and "not found" in bad.stderr and calls[-1].split is None
    orphan = run(app, "promote", "--required-slice", "x")
    assert orphan.exit_code == 2 and "--eval-set" in orphan.stderr
    assert "this_week.jsonl: tier_macro_f1" in refused.output and "worse on extra set" in refused.stderr
    missing = run(app, "promote", "--eval-set", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "not found" in missing.stderr


def test_rollback_command_and_different_data_warning(
    app: typer.Typer, tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(tier_f1=0.62), tiny_bundle)
    promote(NAME)
    log_and_register(make_record(tier_f1=1.0, dataset_digest="0ther"), tiny_bundle)
    refused = run(app, "promote")  # no same-rows evaluator wired into this bare app
    assert refused.exit_code == 1, refused.output
    assert "different data" in refused.stderr and "informational" in refused.output
    forced = run(app, "promote", "--force")
    assert forced.exit_code == 0 and resolve(f"models:/{NAME}@champion").version == 2
    back = run(app, "rollback")
    assert back.exit_code == 0, back.output
    assert "rolled champion back to v1 from v2" in back.output
    assert resolve(f"models:/{NAME}@champion").version == 1
    assert run(app, "rollback", "--to", "2").exit_code == 0
    assert resolve(f"models:/{NAME}@champion").version == 2
    missing = run(app, "rollback", "--to", "7")
    assert missing.exit_code == 2, missing.output
