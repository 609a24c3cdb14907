"""The router's CLI: route, policy validate / to-litellm, bench router."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from serving.router.cli import register
from tests.support.fake_classifier import FakeClassifier
from tests.support.fake_provider import FakeProvider
from tests.support.policies import policy_dict, write_policy

REPO = Path(__file__).resolve().parents[3]
DEFAULT = REPO / "serving" / "policies" / "default.yaml"
SUPPORT = REPO / "serving" / "policies" / "customer_support.yaml"


def _app() -> typer.Typer:
    root = typer.Typer()
    bench = typer.Typer()
    register(root, bench)
    root.add_typer(bench, name="bench")
    return root


runner = CliRunner()


def test_route_json_has_the_decision_and_trace(tmp_path: Path) -> None:
    result = runner.invoke(
        _app(),
        [
            "route",
            "--policy",
            str(DEFAULT),
            "--text",
            "run this",
            "--metadata",
            "requires_code_execution=true",
            "--ledger",
            str(tmp_path / "l.sqlite"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"] == "sonnet" and out["decided_by"] == "rule"
    assert out["fallbacks"] == ["sonnet-bedrock", "gpt-4.1"]
    assert out["trace"][0] == {"step": "rule", "rule_id": "code-or-long-context", "target": "model sonnet"}


def test_route_uses_the_classifier_and_prints_the_trace(
    tmp_path: Path, provider: FakeProvider, classifier_server: FakeClassifier
) -> None:
    d = policy_dict(provider, classifier_server.url, tmp_path / "l.sqlite")
    d["classifier"]["timeout_ms"] = 1000
    policy = write_policy(tmp_path, d)
    result = runner.invoke(_app(), ["route", "-p", str(policy), "-t", "Prove Fermat's little theorem"])
    assert result.exit_code == 0, result.output
    assert "model:      opus" in result.stdout
    assert "classifier (rule ask-classifier): tier reasoning" in result.stdout
    result = runner.invoke(_app(), ["route", "-p", str(policy), "-t", "Prove it", "--no-classifier"])
    assert "not_configured" in result.stdout and "model:      sonnet" in result.stdout


def test_route_errors_exit_non_zero(tmp_path: Path) -> None:
    result = runner.invoke(
        _app(),
        ["route", "-p", str(SUPPORT), "-t", "hi", "--route", "nope", "--ledger", str(tmp_path / "l.sqlite")],
    )
    assert result.exit_code == 1 and "unknown route 'nope'" in result.stderr
    result = runner.invoke(_app(), ["route", "-p", str(SUPPORT), "-t", "hi", "--metadata", "oops"])
    assert result.exit_code == 2 and "key=value" in result.stderr


def test_policy_validate(tmp_path: Path) -> None:
    for path in (DEFAULT, SUPPORT):
        result = runner.invoke(_app(), ["policy", "validate", str(path)])
        assert result.exit_code == 0 and ": ok (" in result.stdout
    bad = tmp_path / "bad.yaml"
    text = DEFAULT.read_text()
    line = text[: text.index("tier: simple")].count("\n") + 1
    bad.write_text(text.replace("tier: simple", "tier: tiny", 1))
    result = runner.invoke(_app(), ["policy", "validate", str(bad)])
    assert result.exit_code == 2
    assert f"models.haiku.tier (line {line}): expected one of simple, complex, reasoning" in result.stderr
    assert "Traceback" not in result.output


def test_policy_to_litellm_writes_yaml(tmp_path: Path) -> None:
    out = tmp_path / "litellm.yaml"
    result = runner.invoke(_app(), ["policy", "to-litellm", str(SUPPORT), "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(out.read_text())
    assert {"model_list", "router_settings"} <= set(config)
    assert config["router_settings"]["fallbacks"] == [
        {"haiku": ["gpt-mini"]},
        {"sonnet": ["gpt-4.1"]},
        {"sonnet-bedrock": ["gpt-4.1"]},
    ]
    auto = next(d for d in config["model_list"] if d["model_name"] == "tierroute-auto")
    cfg = auto["litellm_params"]["complexity_router_config"]
    assert cfg["classifier_plugin"] == "serving.router.litellm_hook.classifier_plugin"
    assert cfg["tiers"]["SIMPLE"] == "haiku"  # the FAQ cascade's stage 1: LiteLLM has no cascades
    assert cfg["default_model"] == "haiku"


def test_bench_router_prints_the_table() -> None:
    result = runner.invoke(
        _app(), ["bench", "router", "--policy", str(DEFAULT), "--n", "300", "--n-slow", "10"]
    )
    assert result.exit_code == 0, result.output
    for row in ("rules-only", "classifier answered", "classifier refused", "classifier blackholed"):
        assert row in result.stdout


def test_route_with_a_local_bundle_classifies_in_process(
    tmp_path: Path, provider: FakeProvider, serving_bundle: Path
) -> None:
    """`--bundle`: the standalone router classifies in process; the policy url (a closed port) is unused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    d = policy_dict(provider, closed, tmp_path / "l.sqlite")
    d["classifier"]["timeout_ms"] = 10_000
    d["classifier"]["inprocess_timeout_ms"] = 10_000  # --bundle: in process, loaded box
    policy = write_policy(tmp_path, d)
    args = ["route", "-p", str(policy), "-t", "Prove Fermat's little theorem"]
    over_http = runner.invoke(_app(), args)
    assert over_http.exit_code == 0 and "classifier (rule ask-classifier): unavailable" in over_http.stdout
    local = runner.invoke(_app(), [*args, "--bundle", str(serving_bundle)])
    assert local.exit_code == 0, local.output
    assert "classifier (rule ask-classifier):" in local.stdout
    assert "unavailable" not in local.stdout and "timeout" not in local.stdout
    broken = runner.invoke(_app(), [*args, "--bundle", str(tmp_path / "missing")])
    assert broken.exit_code == 2 and "--bundle" in broken.output
