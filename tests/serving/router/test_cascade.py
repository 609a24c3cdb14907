"""Cascades against the fake provider: the gate escalates bad stage-1 answers, the alarm watches the rate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from serving.router import Router, RouteRequest, answered_by, decision_of
from serving.router.decision import CascadePlanned, GateChecked
from serving.router.policy import Policy
from tests.support.fake_classifier import FakeClassifier
from tests.support.fake_provider import FakeProvider, Step

MakePolicy = Callable[..., Policy]
FAQ = {"use_case": "faq"}
QUESTION = [{"role": "user", "content": "How do I reset my password?"}]
GOOD = Step(content="Open Settings, choose Security, then Reset password and follow the emailed link.")


def _gate(response: Any) -> GateChecked:
    d = decision_of(response)
    assert d is not None
    return next(s for s in d.trace if isinstance(s, GateChecked))


def test_good_stage1_answer_is_not_escalated(make_policy: MakePolicy, provider: FakeProvider) -> None:
    provider.set_default("openai", "cheap-model", GOOD)
    router = Router(make_policy())
    response = router.complete(QUESTION, metadata=FAQ)
    assert answered_by(response) == "cheap"
    gate = _gate(response)
    assert gate.ok and not gate.escalated and gate.learned == "not_configured"
    assert provider.calls_to("anthropic") == []
    assert router.tracker.rate("faq") == 0.0


def test_refusal_escalates_to_stage2(make_policy: MakePolicy, provider: FakeProvider) -> None:
    provider.set_default(
        "openai", "cheap-model", Step(kind="refusal", prompt_tokens=100, completion_tokens=10)
    )
    provider.set_default("anthropic", "claude-sonnet", Step(prompt_tokens=100, completion_tokens=50))
    router = Router(make_policy())
    response = router.complete(QUESTION, metadata=FAQ)
    assert answered_by(response) == "sonnet"
    gate = _gate(response)
    assert not gate.ok and gate.escalated and "refusal" in gate.reasons
    assert len(provider.calls_to("openai", "cheap-model")) == 1
    assert len(provider.calls_to("anthropic", "claude-sonnet")) == 1
    assert router.ledger is not None
    by_model = router.ledger.by_model()
    assert by_model["cheap"] == pytest.approx(100 * 0.5e-6 + 10 * 1.5e-6)  # stage 1 is paid for too
    assert by_model["sonnet"] == pytest.approx(100 * 3e-6 + 50 * 15e-6)
    assert router.tracker.rate("faq") == 1.0


def test_invalid_json_escalates_when_json_was_asked(make_policy: MakePolicy, provider: FakeProvider) -> None:
    provider.set_default("openai", "cheap-model", Step(kind="invalid_json"))
    provider.set_default("anthropic", "claude-sonnet", Step(content='{"answer": "Settings > Security"}'))
    router = Router(make_policy())
    response = asyncio.run(router.acomplete(QUESTION, metadata=FAQ, response_format={"type": "json_object"}))
    assert answered_by(response) == "sonnet"
    assert "invalid_json" in _gate(response).reasons


def test_stage1_outage_escalates(make_policy: MakePolicy, provider: FakeProvider) -> None:
    provider.set_default("openai", "cheap-model", Step(kind="error", status=503))
    router = Router(make_policy())
    response = router.complete(QUESTION, metadata=FAQ)
    assert answered_by(response) == "sonnet"
    assert router.tracker.rate("faq") == 1.0


def _alarm_value() -> float:
    return REGISTRY.get_sample_value("tierroute_cascade_alarm", {"route": "faq"}) or 0.0


def test_fallback_rate_alarm_fires_above_40_percent(
    make_policy: MakePolicy, provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router(make_policy())
    fired_before = REGISTRY.get_sample_value("tierroute_cascade_alarms_total", {"route": "faq"}) or 0.0
    # 2 bad of 5 = 40%: not above the threshold
    provider.script("openai", "cheap-model", GOOD, Step(kind="refusal"), GOOD, Step(kind="refusal"), GOOD)
    for _ in range(5):
        router.complete(QUESTION, metadata=FAQ)
    assert router.tracker.rate("faq") == pytest.approx(0.4)
    assert not router.tracker.alarmed("faq") and _alarm_value() == 0.0
    # one more refusal: 3 of 6 = 50% > 40%
    provider.script("openai", "cheap-model", Step(kind="refusal"))
    with caplog.at_level(logging.WARNING, logger="tierroute.router.cascade"):
        router.complete(QUESTION, metadata=FAQ)
    assert router.tracker.alarmed("faq")
    assert _alarm_value() == 1.0
    assert REGISTRY.get_sample_value("tierroute_cascade_fallback_rate", {"route": "faq"}) == pytest.approx(
        0.5
    )
    assert REGISTRY.get_sample_value("tierroute_cascade_alarms_total", {"route": "faq"}) == fired_before + 1
    assert any("fallback rate 50%" in r.getMessage() and "stage 2" in r.getMessage() for r in caplog.records)

    # auto-skip: the next decisions go straight to stage 2, except a probe every 5th
    decisions = [router.decide(RouteRequest.from_messages(QUESTION, FAQ)) for _ in range(5)]
    skipped = [d for d in decisions if d.decided_by == "cascade_alarm"]
    probes = [d for d in decisions if d.cascade is not None]
    assert len(skipped) == 4 and all(d.model == "sonnet" for d in skipped)
    assert len(probes) == 1
    plan = next(s for s in skipped[0].trace if isinstance(s, CascadePlanned))
    assert plan.skip_stage1 and plan.alarm


def test_alarm_without_auto_skip_only_reports(make_policy: MakePolicy, provider: FakeProvider) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["cascades"]["faq"]["alarm"]["auto_skip_stage1"] = False

    provider.set_default("openai", "cheap-model", Step(kind="refusal"))
    router = Router(make_policy(edit))
    for _ in range(5):
        router.complete(QUESTION, metadata=FAQ)
    assert router.tracker.alarmed("faq")
    d = router.decide(RouteRequest.from_messages(QUESTION, FAQ))
    assert d.cascade is not None and d.model == "cheap"


def test_learned_gate_in_process(make_policy: MakePolicy, provider: FakeProvider) -> None:
    provider.set_default("openai", "cheap-model", GOOD)
    low = Router(make_policy(), learned_gate=lambda prompt, response: 0.1)
    response = low.complete(QUESTION, metadata=FAQ)
    gate = _gate(response)
    assert answered_by(response) == "sonnet"
    assert (
        gate.learned == "ok" and gate.p_acceptable == 0.1 and "learned_gate_below_threshold" in gate.reasons
    )

    def broken(prompt: str, response: str) -> float:
        raise TimeoutError("gate timed out")

    fallback = Router(make_policy(), learned_gate=broken)
    response = fallback.complete(QUESTION, metadata=FAQ)
    gate = _gate(response)
    assert answered_by(response) == "cheap"
    assert gate.ok and gate.learned == "unavailable" and "checks decided" in gate.detail


def test_learned_gate_over_http(
    make_policy: MakePolicy, provider: FakeProvider, classifier_server: FakeClassifier
) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["cascades"]["faq"]["gate"]["learned"] = {
            "url": classifier_server.url,
            "threshold": 0.5,
            "timeout_ms": 500,
        }

    provider.set_default("openai", "cheap-model", GOOD)
    router = Router(make_policy(edit))
    classifier_server.gate_p = 0.2
    response = asyncio.run(router.acomplete(QUESTION, metadata=FAQ))
    assert answered_by(response) == "sonnet" and _gate(response).p_acceptable == 0.2
    classifier_server.gate_mode = "slow"
    classifier_server.delay_s = 2.0
    response = router.complete(QUESTION, metadata=FAQ)
    assert answered_by(response) == "cheap" and _gate(response).learned == "unavailable"
    assert classifier_server.gate_calls == 2
