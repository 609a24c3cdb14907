"""Policy loading: the shipped policies load, the seed example is expressible, every error names its field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.router import Router
from serving.router.policy import PolicyError, load_policy, parse_policy
from serving.router.request import RouteRequest
from tests.support.policies import policy_dict, write_policy

REPO = Path(__file__).resolve().parents[3]
SHIPPED = [
    REPO / "serving" / "policies" / "default.yaml",
    REPO / "serving" / "policies" / "customer_support.yaml",
]


class _Stub:
    def api_base(self, provider: str) -> str:
        return f"http://127.0.0.1:9/{provider}/v1"


def _base(tmp_path: Path) -> dict[str, Any]:
    return policy_dict(_Stub(), "http://127.0.0.1:9", tmp_path / "ledger.sqlite")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_policies_load_and_decide(path: Path, tmp_path: Path) -> None:
    policy = load_policy(path)
    assert policy.models and policy.rules and policy.budget is not None
    assert any(fo.rate_limited and fo.server_error for fo in policy.failover.models.values())
    router = Router(policy, classifier=None, ledger=tmp_path / "ledger.sqlite")
    decision = router.decide(RouteRequest.from_text("hello"))
    assert decision.model in policy.models
    assert decision.trace


def test_seed_example_as_written(tmp_path: Path) -> None:
    """token_count < 500 and 'summarise' in the system prompt -> cheap; code execution or context
    > 50,000 tokens -> capable; financial_analysis needing reasoning -> strongest; else default."""
    router = Router(load_policy(SHIPPED[0]), classifier=None, ledger=tmp_path / "l.sqlite")
    cheap = router.decide(
        RouteRequest.from_text("Q3 report: revenue up 4%...", system="Summarise this for an exec")
    )
    assert (cheap.model, cheap.rule_id) == ("haiku", "short-summary")
    long_doc = router.decide(RouteRequest.from_text("x " * 110_000, system="Summarise this"))
    assert (long_doc.model, long_doc.rule_id) == ("sonnet", "code-or-long-context")
    code = router.decide(RouteRequest.from_text("run it", metadata={"requires_code_execution": "true"}))
    assert (code.model, code.rule_id) == ("sonnet", "code-or-long-context")
    fin = router.decide(
        RouteRequest.from_text(
            "Model our Q3 cash flow", use_case="financial_analysis", metadata={"requires_reasoning": True}
        )
    )
    assert (fin.model, fin.rule_id) == ("opus", "financial-reasoning")
    short = router.decide(RouteRequest.from_text("tell me a joke"))  # no classifier: the short band
    assert (short.model, short.rule_id) == ("haiku", "short-message-band")
    other = router.decide(RouteRequest.from_text("Draft a migration plan for our billing database " * 3))
    assert other.decided_by == "default" and other.model == "sonnet"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        keys = path.split(".")
        node: Any = d
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        keys = path.split(".")
        node: Any = d
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        del node[keys[-1]]

    return edit


ERROR_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "bad tier",
        _set("models.cheap.tier", "tiny"),
        "models.cheap.tier (line 7): expected one of simple, complex, reasoning",
    ),
    ("bad capability", _set("models.cheap.capabilities", ["telepathy"]), "models.cheap.capabilities[0]"),
    ("missing field", _del("models.cheap.provider"), "models.cheap.provider (line"),
    ("typo with hint", _set("rules.0.when", {"token_lt": 5}), "rules[0].when.token_lt (line"),
    ("negative price", _set("models.cheap.price.input_per_mtok", -1), "models.cheap.price.input_per_mtok"),
    ("bad regex", _set("rules.0.when.system_prompt_regex", "(unclosed"), "rules[0].when.system_prompt_regex"),
    (
        "two targets",
        _set("rules.0.route", {"model": "cheap", "tier": "simple"}),
        "exactly one of model, tier",
    ),
    ("string target", _set("rules.0.route", "cheap"), "did you mean {model: cheap}"),
    ("unknown model", _set("rules.0.route", {"model": "chaep"}), "rules[0].route.model (line"),
    (
        "unknown cascade",
        _set("rules.3.route", {"cascade": "faqs"}),
        "unknown cascade 'faqs'; did you mean 'faq'",
    ),
    ("duplicate id", _set("rules.1.id", "short-summary"), "duplicate rule id 'short-summary'"),
    ("id clash", _set("rules.1.id", "cheap"), "clashes with a model"),
    ("default classifier", _set("default", "classifier"), "default (line"),
    ("unknown sla in rule", _set("rules.0.when.sla", "urgent"), "rules[0].when.sla"),
    ("unknown default sla", _set("latency_sla.default", "urgent"), "latency_sla.default"),
    ("classifier two sources", _set("classifier.bundle", "/tmp/b"), "give exactly one of url, bundle"),
    (
        "classifier unknown tier model",
        _set("classifier.tier_models.simple", "nope"),
        "classifier.tier_models.simple",
    ),
    (
        "classifier bad tier key",
        _set("classifier.tier_models", {"medium": "cheap"}),
        "classifier.tier_models.medium",
    ),
    ("classifier timeout", _set("classifier.timeout_ms", 0), "classifier.timeout_ms"),
    ("confidence range", _set("classifier.min_confidence", 1.5), "classifier.min_confidence"),
    ("budget ceiling", _set("budget.daily_usd", 0), "budget.daily_usd"),
    ("budget share", _set("budget.downgrade_at", 1.5), "budget.downgrade_at"),
    ("budget action", _set("budget.on_exhausted", "panic"), "expected one of reject, cheapest"),
    (
        "failover unknown",
        _set("failover.models.sonnet.server_error", ["gtp"]),
        "failover.models.sonnet.server_error[0]",
    ),
    ("failover self", _set("failover.models.sonnet.rate_limited", ["sonnet"]), "cannot fail over to itself"),
    (
        "failover unknown key",
        _set("failover.models.ghost", {"server_error": ["gpt"]}),
        "failover.models.ghost",
    ),
    ("cascade stage", _set("cascades.faq.stage2", "cheap"), "stage2 must differ from stage1"),
    ("cascade unknown stage", _set("cascades.faq.stage1", "mini"), "cascades.faq.stage1"),
    ("cascade window", _set("cascades.faq.alarm.min_samples", 50), "cascades.faq.alarm.min_samples"),
    (
        "cascade schema",
        _set("cascades.faq.gate.json_schema", {"type": "banana"}),
        "cascades.faq.gate.json_schema",
    ),
    ("no price anywhere", _del("models.cheap.price"), "models.cheap.price (line"),
    (
        "reserved name",
        _set("models.simple", {"litellm_model": "openai/gpt-4o", "provider": "openai", "tier": "simple"}),
        "reserved",
    ),
    ("no model for tier", _set("default", {"tier": "simple"}), ""),
    ("version", _set("version", 2), "version"),
]


@pytest.mark.parametrize(("name", "edit", "expected"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_every_validation_error_names_the_field(
    name: str, edit: Callable[[dict[str, Any]], None], expected: str, tmp_path: Path
) -> None:
    d = _base(tmp_path)
    if name == "no model for tier":
        d["models"]["cheap"]["tier"] = "complex"
        d["classifier"]["tier_models"].pop("simple")
        edit(d)
        expected = "default.tier (line"
    else:
        edit(d)
    with pytest.raises(PolicyError) as info:
        load_policy(write_policy(tmp_path, d))
    message = str(info.value)
    assert expected in message, message
    assert all(": " in line for line in info.value.errors)


def test_typo_suggests_the_right_field(tmp_path: Path) -> None:
    d = _base(tmp_path)
    d["rules"][0]["when"] = {"token_lt": 5}
    with pytest.raises(PolicyError, match="did you mean 'tokens_lt'"):
        load_policy(write_policy(tmp_path, d))


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    d = _base(tmp_path)
    d["models"]["cheap"]["tier"] = "tiny"
    d["budget"]["daily_usd"] = -5
    with pytest.raises(PolicyError) as info:
        load_policy(write_policy(tmp_path, d))
    assert len(info.value.errors) == 2


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match=r"not valid YAML \(line \d+\)"):
        parse_policy("models:\n  a: [unclosed\n")
    with pytest.raises(PolicyError, match="must be a YAML mapping"):
        parse_policy("- just\n- a list\n")


def test_unknown_model_needs_price_and_window(tmp_path: Path) -> None:
    d = _base(tmp_path)
    d["models"]["cheap"]["litellm_model"] = "openai/not-a-real-model"
    d["models"]["cheap"].pop("context_window")
    with pytest.raises(PolicyError, match=r"models\.cheap\.context_window"):
        load_policy(write_policy(tmp_path, d))
    d["models"]["cheap"]["context_window"] = 8000
    d["models"]["cheap"].pop("price")
    with pytest.raises(PolicyError, match="not in LiteLLM's bundled cost map"):
        load_policy(write_policy(tmp_path, d))


def test_cost_map_fills_price_and_window(tmp_path: Path) -> None:
    d = _base(tmp_path)
    d["models"]["cheap"]["litellm_model"] = "openai/gpt-4o-mini"
    d["models"]["cheap"].pop("price")
    d["models"]["cheap"].pop("context_window")
    policy = load_policy(write_policy(tmp_path, d))
    assert policy.model_price("cheap") == (1.5e-07, 6e-07)
    assert policy.model_context_window("cheap") == 128000
