"""Execution through LiteLLM's Router against the fake provider: failover, spend, typed failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from serving.router import AllProvidersFailed, InvalidRequest, Router, answered_by, decision_of
from serving.router.decision import CooldownApplied, Executed, ExecutionFailed
from serving.router.execute import ProviderMisconfigured, ProviderRejected
from serving.router.policy import Policy
from tests.support.fake_provider import FakeProvider, Step

MakePolicy = Callable[..., Policy]
CODE = {"requires_code_execution": True}  # -> rule code-or-long -> sonnet (anthropic)


def _msgs(text: str = "run this script") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_normal_answer_records_spend_from_usage(make_policy: MakePolicy, provider: FakeProvider) -> None:
    provider.set_default("anthropic", "claude-sonnet", Step(prompt_tokens=1000, completion_tokens=200))
    router = Router(make_policy())
    response = router.complete(_msgs(), metadata=CODE, temperature=0)
    assert response.choices[0].message.content.startswith("Here is")
    decision = decision_of(response)
    assert decision is not None and decision.model == "sonnet"
    assert answered_by(response) == "sonnet"
    expected = 1000 * 3e-6 + 200 * 15e-6  # the policy's override prices
    assert router.ledger is not None
    assert router.ledger.spent_today(fresh=True) == pytest.approx(expected)
    executed = [s for s in decision.trace if isinstance(s, Executed)][-1]
    assert (executed.provider, executed.prompt_tokens, executed.fallback_used) == ("anthropic", 1000, False)
    assert provider.calls_to("anthropic")[0].body["temperature"] == 0


def test_5xx_goes_to_the_other_providers_equivalent(make_policy: MakePolicy, provider: FakeProvider) -> None:
    provider.script("anthropic", "claude-sonnet", Step(kind="error", status=500))
    router = Router(make_policy())
    response = router.complete(_msgs(), metadata=CODE)
    assert answered_by(response) == "gpt"
    assert [c.status for c in provider.calls_to("anthropic")] == [500]
    assert provider.calls_to("bedrock") == []
    assert [c.model for c in provider.calls_to("openai")] == ["gpt-equivalent"]


def test_429_goes_to_the_same_model_on_another_provider(
    make_policy: MakePolicy, provider: FakeProvider
) -> None:
    provider.script("anthropic", "claude-sonnet", Step(kind="error", status=429))
    router = Router(make_policy())
    response = router.complete(_msgs(), metadata=CODE)
    assert answered_by(response) == "sonnet-bedrock"
    assert [c.status for c in provider.calls_to("anthropic")] == [429]
    assert [c.status for c in provider.calls_to("bedrock")] == [200]
    assert provider.calls_to("openai") == []
    # the primary is cooling down now: the next request goes to Bedrock without trying Anthropic
    router.complete(_msgs(), metadata=CODE)
    assert len(provider.calls_to("anthropic")) == 1
    assert len(provider.calls_to("bedrock")) == 2


def test_every_provider_down_raises_a_typed_error_with_the_trace(
    make_policy: MakePolicy, provider: FakeProvider
) -> None:
    provider.set_default("anthropic", "claude-sonnet", Step(kind="error", status=429))
    provider.set_default("bedrock", "claude-sonnet", Step(kind="error", status=503))
    provider.set_default("openai", "gpt-equivalent", Step(kind="error", status=503))
    router = Router(make_policy())
    with pytest.raises(AllProvidersFailed) as info:
        router.complete(_msgs(), metadata=CODE)
    steps = [s.to_dict()["step"] for s in info.value.trace]
    assert steps[0] == "rule" and steps[-1] == "failed"
    failed = info.value.trace[-1]
    assert isinstance(failed, ExecutionFailed) and failed.requested == "sonnet"
    assert "sonnet -> gpt" in str(info.value)
    assert {c.provider for c in provider.calls} == {"anthropic", "bedrock", "openai"}
    assert info.value.decision is not None
    assert router.ledger is not None and router.ledger.spent_today(fresh=True) == 0.0


def test_async_complete_fails_over_too(make_policy: MakePolicy, provider: FakeProvider) -> None:
    provider.script("anthropic", "claude-sonnet", Step(kind="error", status=502))
    router = Router(make_policy())
    response = asyncio.run(router.acomplete(_msgs(), metadata=CODE))
    assert answered_by(response) == "gpt"


def test_cooldown_shows_in_the_next_decision(make_policy: MakePolicy, provider: FakeProvider) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["failover"]["models"]["cheap"] = {"server_error": ["gpt"]}

    provider.script("openai", "cheap-model", Step(kind="error", status=500))
    router = Router(make_policy(edit))
    summary = [{"role": "system", "content": "Summarise"}, {"role": "user", "content": "text"}]
    first = router.complete(summary)
    assert answered_by(first) == "gpt"
    second = router.decide(summary)
    assert (second.model, second.decided_by) == ("gpt", "cooldown")
    step = next(s for s in second.trace if isinstance(s, CooldownApplied))
    assert step.model == "cheap" and step.cooling == ("cheap::cheap",)


def test_provider_rejection_is_not_failover(make_policy: MakePolicy, provider: FakeProvider) -> None:
    for prov, model in (("anthropic", "claude-sonnet"), ("openai", "gpt-equivalent")):
        provider.set_default(prov, model, Step(kind="error", status=400))
    router = Router(make_policy())
    with pytest.raises(ProviderRejected, match="HTTP 400") as info:
        router.complete(_msgs(), metadata=CODE)
    assert info.value.trace[-1].to_dict()["step"] == "failed"


@pytest.mark.parametrize(
    "kw",
    [
        {"api_base": "http://127.0.0.1:9"},
        {"api_key": "sk-other"},
        {"mock_response": "free answer"},
        {"fallbacks": ["gpt"]},
        {"extra_headers": {"x": "y"}},
        {"timeout": 0.001},
    ],
)
def test_transport_keywords_are_refused(
    make_policy: MakePolicy, provider: FakeProvider, kw: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest, match=next(iter(kw))):
        Router(make_policy()).complete(_msgs(), metadata=CODE, **kw)
    assert provider.calls == []


@pytest.mark.parametrize("status", [401, 403, 404])
def test_provider_auth_and_config_failures_are_the_servers(
    make_policy: MakePolicy, provider: FakeProvider, status: int
) -> None:
    for prov, model in (
        ("anthropic", "claude-sonnet"),
        ("bedrock", "claude-sonnet"),
        ("openai", "gpt-equivalent"),
    ):
        provider.set_default(prov, model, Step(kind="error", status=status))
    with pytest.raises(ProviderMisconfigured, match="server configuration problem") as info:
        Router(make_policy()).complete(_msgs(), metadata=CODE)
    assert "fake" not in str(info.value)  # the provider's own text stays in the log
