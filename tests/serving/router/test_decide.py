"""Router.decide(): one test per dimension and per classifier fault; the trace says who decided."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from serving.router import (
    BudgetExceeded,
    InvalidRequest,
    NoEligibleModel,
    Router,
    RouteRequest,
    UnknownRoute,
)
from serving.router.bench import StubClassifier
from serving.router.decision import BudgetApplied, ClassifierConsulted, Decision, ModelFiltered
from serving.router.policy import Policy
from serving.schemas import ClassifyResponse
from tests.support.fake_classifier import FakeClassifier

MakePolicy = Callable[..., Policy]


def _classifier_step(d: Decision) -> ClassifierConsulted:
    steps = [s for s in d.trace if isinstance(s, ClassifierConsulted)]
    assert len(steps) == 1, d.trace
    return steps[0]


def test_classifier_decides_the_tier(make_policy: MakePolicy, classifier_server: FakeClassifier) -> None:
    router = Router(make_policy())
    d = router.decide(RouteRequest.from_text("Prove that there are infinitely many primes."))
    assert (d.model, d.decided_by, d.tier) == ("opus", "classifier", "reasoning")
    step = _classifier_step(d)
    assert (step.status, step.tier, step.task) == ("ok", "reasoning", "math")
    assert d.classifier_latency_ms is not None and d.classifier_latency_ms > 0
    assert classifier_server.calls == 1


@pytest.mark.parametrize(
    ("threshold", "text", "tier"),
    [
        (0.4, "Refactor this function", "complex"),  # complexity 0.5 >= 0.4: strong, predicted tier kept
        (0.75, "Refactor this function", "simple"),  # 0.5 < 0.75: the calibrated cut sends it cheap
        (0.75, "Prove that sqrt(2) is irrational", "reasoning"),  # 1.0 >= 0.75
        (0.0, "What is the capital of France?", "complex"),  # predicted simple, but over the cut
    ],
)
def test_calibrated_threshold_from_the_service_decides_weak_or_strong(
    make_policy: MakePolicy, classifier_server: FakeClassifier, threshold: float, text: str, tier: str
) -> None:
    classifier_server.routing = {
        "score": "complexity",
        "strong_if_at_least": threshold,
        "objective": "budget",
    }
    d = Router(make_policy()).decide(RouteRequest.from_text(text))
    assert _classifier_step(d).detail.endswith(f"calibrated threshold {threshold:.3f} -> {tier}")
    if tier == "simple":  # "refactor" is a code task: the capability check lifts it past simple models
        assert d.decided_by == "capability" and d.tier == "complex"
    else:
        assert (d.decided_by, d.tier) == ("classifier", tier)

    def no_threshold(p: dict[str, Any]) -> None:
        p["classifier"]["use_calibrated_threshold"] = False

    plain = Router(make_policy(no_threshold)).decide(RouteRequest.from_text(text))
    predicted = FakeClassifier.result_for(text, 0.9)["tier"]
    assert plain.tier == predicted and _classifier_step(plain).detail == ""


def test_rule_before_classifier_skips_the_call(
    make_policy: MakePolicy, classifier_server: FakeClassifier
) -> None:
    router = Router(make_policy())
    d = router.decide(RouteRequest.from_text("Long text", system="Summarise this please"))
    assert (d.model, d.decided_by, d.rule_id) == ("cheap", "rule", "short-summary")
    assert classifier_server.calls == 0


@pytest.mark.parametrize(
    ("mode", "status"),
    [
        ("slow", "timeout"),
        ("error", "unavailable"),
        ("not_json", "bad_response"),
        ("bad_schema", "bad_response"),
        ("unknown_tier", "garbage"),
        ("low_confidence", "low_confidence"),
    ],
)
def test_classifier_faults_fall_back_to_rules(
    make_policy: MakePolicy, classifier_server: FakeClassifier, mode: str, status: str
) -> None:
    classifier_server.mode = mode
    classifier_server.delay_s = 2.0  # 4x the test policy's 500 ms timeout
    router = Router(make_policy())
    d = router.decide(RouteRequest.from_text("Prove that there are infinitely many primes."))
    step = _classifier_step(d)
    assert step.status == status
    assert "rules decide" in step.detail
    assert d.decided_by == "default" and d.model == "sonnet"  # the default, not the classifier's opus


def test_classifier_down_falls_back_to_rules(make_policy: MakePolicy) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = make_policy(lambda d: d["classifier"].update(url=f"http://127.0.0.1:{port}"))
    d = Router(policy).decide(RouteRequest.from_text("Prove it"))
    assert _classifier_step(d).status == "unavailable"
    assert d.decided_by == "default"


def test_async_decide_matches_sync(make_policy: MakePolicy, classifier_server: FakeClassifier) -> None:
    router = Router(make_policy())
    ok = asyncio.run(router.adecide(RouteRequest.from_text("derive the gradient")))
    assert (ok.model, ok.decided_by) == ("opus", "classifier")
    classifier_server.mode = "slow"
    slow = asyncio.run(router.adecide(RouteRequest.from_text("derive the gradient")))
    assert _classifier_step(slow).status == "timeout" and slow.decided_by == "default"


class _SlowInProcess:
    """An in-process backend (no own timeout) slower than the test policy's 500 ms."""

    def __init__(self) -> None:
        self.inner = StubClassifier(tier="reasoning")

    def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        time.sleep(1.5)
        return self.inner.classify(texts)


def test_in_process_classifier_is_bounded_by_the_timeout(make_policy: MakePolicy) -> None:
    router = Router(make_policy(), classifier=_SlowInProcess())
    d = router.decide(RouteRequest.from_text("anything"))
    assert _classifier_step(d).status == "timeout"
    assert d.decided_by == "default"
    router.close()


def test_task_requires_capability(make_policy: MakePolicy) -> None:
    router = Router(make_policy(), classifier=StubClassifier(tier="simple", task="code"))
    d = router.decide(RouteRequest.from_text("write a regex"))
    assert "code" in d.required_capabilities
    assert d.model == "sonnet" and d.decided_by == "capability"  # cheap has no `code`
    filt = next(s for s in d.trace if isinstance(s, ModelFiltered))
    assert filt.wanted == "simple" and "missing code" in filt.excluded["cheap"]


def test_image_requires_vision(make_policy: MakePolicy) -> None:
    router = Router(make_policy())
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Summarise what you see"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        },
    ]
    d = router.decide(RouteRequest.from_messages(messages))
    assert d.rule_id == "short-summary" and d.model == "sonnet"
    assert d.decided_by == "capability" and "vision" in d.required_capabilities


def test_context_length_excludes_small_windows(make_policy: MakePolicy) -> None:
    history = [{"role": "user", "content": "x" * 80_000}, {"role": "assistant", "content": "ok"}]
    messages = [
        {"role": "system", "content": "Summarise our chat"},
        *history,
        {"role": "user", "content": "now?"},
    ]
    d = Router(make_policy()).decide(RouteRequest.from_messages(messages))
    assert d.rule_id == "short-summary"
    assert (d.model, d.decided_by) == ("sonnet", "context")


def test_sla_class_excludes_slow_models(make_policy: MakePolicy) -> None:
    router = Router(make_policy())
    fin = RouteRequest.from_text(
        "cash flow", use_case="financial_analysis", metadata={"requires_reasoning": True}
    )
    assert router.decide(fin).model == "opus"
    fin_rt = RouteRequest.from_text(
        "cash flow", use_case="financial_analysis", metadata={"requires_reasoning": True}, sla="realtime"
    )
    d = router.decide(fin_rt)
    assert (d.model, d.decided_by) == ("sonnet", "sla")
    filt = next(s for s in d.trace if isinstance(s, ModelFiltered))
    assert filt.excluded["opus"].startswith("sla")


def test_unknown_sla_class_is_rejected(make_policy: MakePolicy) -> None:
    with pytest.raises(InvalidRequest, match="unknown SLA class"):
        Router(make_policy()).decide(RouteRequest.from_text("hi", sla="whenever"))


@pytest.mark.parametrize(
    "metadata",
    [{"sla": ["x"]}, {"use_case": {"a": 1}}, {"route": ["gpt"]}, {"critical": [True]}, {"critical": "maybe"}],
)
def test_routing_hints_of_the_wrong_type_are_invalid_requests(
    make_policy: MakePolicy, metadata: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest, match="must be"):
        Router(make_policy()).decide(RouteRequest.from_text("hi", metadata=metadata))


def test_critical_only_models(make_policy: MakePolicy) -> None:
    router = Router(make_policy())
    d = router.decide(RouteRequest.from_text("hi", route="vip"))
    assert d.model != "vip" and d.decided_by == "critical_only"
    d = router.decide(RouteRequest.from_text("hi", route="vip", critical=True))
    assert d.model == "vip" and d.decided_by == "explicit"


def test_explicit_routes(make_policy: MakePolicy, classifier_server: FakeClassifier) -> None:
    router = Router(make_policy())
    assert router.decide(RouteRequest.from_text("hi", route="gpt")).model == "gpt"
    assert router.decide(RouteRequest.from_text("hi", route="simple")).model == "cheap"
    by_rule = router.decide(RouteRequest.from_text("hi", route="financial"))
    assert (by_rule.model, by_rule.rule_id, by_rule.decided_by) == ("opus", "financial", "explicit")
    faq = router.decide(RouteRequest.from_text("hi", route="faq"))
    assert faq.cascade is not None and faq.cascade.stage2 == "sonnet"
    assert classifier_server.calls == 0
    with pytest.raises(UnknownRoute, match="unknown route 'gpt-5'"):
        router.decide(RouteRequest.from_text("hi", route="gpt-5"))


def test_no_eligible_model_is_a_typed_error_with_trace(make_policy: MakePolicy) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["rules"][0]["require"] = ["tools"]  # no test model has tools

    router = Router(make_policy(edit))
    with pytest.raises(NoEligibleModel) as info:
        router.decide(RouteRequest.from_text("x", system="summarise"))
    assert info.value.trace and info.value.trace[0].to_dict()["step"] == "rule"


def test_failover_fallbacks_are_ordered(make_policy: MakePolicy) -> None:
    d = Router(make_policy()).decide(
        RouteRequest.from_text("run it", metadata={"requires_code_execution": True})
    )
    assert d.model == "sonnet"
    assert d.fallbacks == ["sonnet-bedrock", "gpt"]
    assert d.server_error_fallbacks == ["gpt"]


# -- budget ---------------------------------------------------------------------------------------


def test_spend_past_80_percent_downgrades_only_non_critical(make_policy: MakePolicy) -> None:
    router = Router(make_policy(), classifier=None)
    assert router.ledger is not None
    before = router.decide(RouteRequest.from_text("hello"))
    assert before.model == "sonnet"
    router.ledger.record("sonnet", 0.85)  # of a 1.00 USD day
    after = router.decide(RouteRequest.from_text("hello"))
    assert (after.model, after.decided_by, after.tier) == ("cheap", "budget", "simple")
    step = next(s for s in after.trace if isinstance(s, BudgetApplied))
    assert (step.state, step.action, step.from_model, step.to_model) == (
        "degraded",
        "downgrade",
        "sonnet",
        "cheap",
    )
    critical = router.decide(RouteRequest.from_text("hello", critical=True))
    assert critical.model == "sonnet" and critical.decided_by == "default"
    simple = router.decide(RouteRequest.from_text("x", system="summarise"))
    assert simple.model == "cheap" and simple.decided_by == "rule"  # already the cheapest tier


def test_spend_past_100_percent_only_critical_pass(make_policy: MakePolicy) -> None:
    router = Router(make_policy(), classifier=None)
    assert router.ledger is not None
    router.ledger.record("opus", 1.2)
    with pytest.raises(BudgetExceeded, match="only critical requests pass") as info:
        router.decide(RouteRequest.from_text("hello"))
    assert any(isinstance(s, BudgetApplied) and s.action == "reject" for s in info.value.trace)
    ok = router.decide(RouteRequest.from_text("hello", critical=True))
    assert ok.model == "sonnet"
    assert any(isinstance(s, BudgetApplied) and s.action == "critical_pass" for s in ok.trace)


def test_exhausted_budget_can_route_to_cheapest(make_policy: MakePolicy) -> None:
    router = Router(make_policy(lambda d: d["budget"].update(on_exhausted="cheapest")), classifier=None)
    assert router.ledger is not None
    router.ledger.record("opus", 5.0)
    d = router.decide(RouteRequest.from_text("hello"))
    assert (d.model, d.decided_by) == ("cheap", "budget")


def test_decide_is_pure(make_policy: MakePolicy, tmp_path: Path) -> None:
    router = Router(make_policy())
    assert router.ledger is not None
    for _ in range(5):
        router.decide(RouteRequest.from_text("Prove it"))
    assert router.ledger.spent_today(fresh=True) == 0.0
    assert router.tracker.rate("faq") is None


def test_restart_keeps_spend(make_policy: MakePolicy) -> None:
    policy = make_policy()
    first = Router(policy, classifier=None)
    assert first.ledger is not None
    first.ledger.record("sonnet", 0.9)
    first.close()
    second = Router(policy, classifier=None)  # a new process would open the same file
    d = second.decide(RouteRequest.from_text("hello"))
    assert d.decided_by == "budget" and d.model == "cheap"
