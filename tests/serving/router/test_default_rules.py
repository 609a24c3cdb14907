"""The shipped default policy routes sensibly on its rules alone (classifier down).

Issue: with the classifier unreachable every prompt went to the capable model, "hey there!"
included. The rules must catch the cheap and the obvious cases; each prompt is asserted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from serving.client import ClassifierClient
from serving.router import Router, RouteRequest
from serving.router.decision import ClassifierConsulted
from serving.router.policy import load_policy
from serving.router.regex import SCAN_CHARS, RuleRegex
from tests.support.ports import free_port

DEFAULT = Path(__file__).resolve().parents[3] / "serving" / "policies" / "default.yaml"

PYTHON_TRACE = """My job crashes:
Traceback (most recent call last):
  File "/app/main.py", line 12, in <module>
    run()
  File "/app/main.py", line 8, in run
    return items[3]
IndexError: list index out of range"""

JAVA_TRACE = """Exception in thread "main" java.lang.NullPointerException
    at com.shop.Cart.total(Cart.java:42)
    at com.shop.Main.main(Main.java:7)"""

REPORT = "The committee reviewed the regional sales figures, staffing and supplier contracts. " * 90

CASES: list[tuple[str, str, str]] = [
    # (prompt, expected model, why)
    ("hey there!", "haiku", "greeting"),
    ("Hello", "haiku", "greeting"),
    ("thanks a lot!", "haiku", "thanks"),
    ("Good morning everyone", "haiku", "greeting"),
    ("What is the capital of France?", "haiku", "one-fact lookup"),
    ("Who wrote Hamlet?", "haiku", "one-fact lookup"),
    ("How many legs does a spider have?", "haiku", "one-fact lookup"),
    ("Translate to French: the meeting is moved to Tuesday afternoon.", "haiku", "short translation"),
    (
        "Summarize: the build failed twice because the cache was cold; it passes now.",
        "haiku",
        "short summary",
    ),
    (PYTHON_TRACE, "sonnet", "python stack trace"),
    (JAVA_TRACE, "sonnet", "java stack trace"),
    ('Why does this not compile?\n```rust\nfn main() { let x: i32 = "a"; }\n```', "sonnet", "code fence"),
    (
        "I get TypeError: cannot read properties of undefined (reading 'map') in my React app",
        "sonnet",
        "error",
    ),
    ("Prove that there are infinitely many prime numbers.", "opus", "proof"),
    ("Explain step by step how to solve 3x + 5 = 20 for x.", "opus", "step by step"),
    ("Derive the closed form of the Fibonacci sequence using generating functions.", "opus", "derivation"),
    (REPORT + "\nWhat are the three main risks in this report?", "sonnet", "long document"),
    (
        "Write a migration plan for moving our billing service from a monolith to separate services, "
        "covering data ownership, rollout order and rollback.",
        "sonnet",
        "longer open request: the capable default",
    ),
    (
        "Compare the trade-offs of event sourcing and CRUD for an inventory system with audits.",
        "sonnet",
        "design question: the capable default",
    ),
    ("hi, can you prove that the square root of 2 is irrational?", "opus", "greeting prefix, proof request"),
]


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Router:
    down = ClassifierClient(f"http://127.0.0.1:{free_port()}", timeout=0.5)  # nothing listens there
    return Router(load_policy(DEFAULT), classifier=down, ledger=tmp_path_factory.mktemp("l") / "l.sqlite")


@pytest.mark.parametrize(("prompt", "model", "why"), CASES, ids=[c[2] for c in CASES])
def test_default_policy_routes_without_the_classifier(
    router: Router, prompt: str, model: str, why: str
) -> None:
    d = router.decide(RouteRequest.from_text(prompt))
    assert d.model == model, (why, d.rule_id, d.reason)
    consulted = [s for s in d.trace if isinstance(s, ClassifierConsulted)]
    assert all(s.status == "unavailable" for s in consulted)  # when asked, it was down: rules decided


def test_code_route_requires_code_capability(router: Router) -> None:
    d = router.decide(RouteRequest.from_text(PYTHON_TRACE))
    assert d.rule_id == "code-or-stack-trace" and "code" in d.required_capabilities


def test_rule_regexes_read_a_bounded_slice_in_linear_time() -> None:
    # a classic catastrophic-backtracking pattern for a backtracking engine; RE2 answers at once
    evil = RuleRegex("(a+)+$")
    text = "a" * 50_000 + "!"
    deadline = time.monotonic() + 60  # a bound for the loop, not a timing assertion
    assert not evil.search(text) and time.monotonic() < deadline
    # only the head and the tail are scanned: a cue in the middle of a huge text is not seen
    cue = RuleRegex("needle")
    middle = "x" * (SCAN_CHARS + 10) + "needle" + "x" * (SCAN_CHARS + 10)
    assert not cue.search(middle)
    assert cue.search("needle" + "x" * 100_000) and cue.search("x" * 100_000 + "needle")


def test_policy_refuses_regexes_the_linear_time_engine_cannot_run(tmp_path: Path) -> None:
    from serving.router.policy import PolicyError, parse_policy

    text = DEFAULT.read_text().replace(
        'prompt_regex: "(?i)\\\\b(step', 'prompt_regex: "(?<=x)(?i)\\\\b(step', 1
    )
    assert "(?<=x)" in text
    with pytest.raises(PolicyError, match="linear-time engine"):
        parse_policy(text)


def test_low_confidence_trace_prints_enough_digits(tmp_path: Path) -> None:
    from serving.router.bench import StubClassifier

    router = Router(
        load_policy(DEFAULT), classifier=StubClassifier(confidence=0.545), ledger=tmp_path / "l.sqlite"
    )
    d = router.decide(RouteRequest.from_text("Plan a three-day trip to Lisbon with a tight budget please."))
    step = next(s for s in d.trace if isinstance(s, ClassifierConsulted))
    assert step.status == "low_confidence"
    assert "confidence 0.545 below 0.55" in step.detail
