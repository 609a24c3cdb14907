"""The router's outcome log: one record per executed request with the classifier's outputs, the
cascade's stage-1 model, the gate verdict, escalation and the final model; text only under the opt-in."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.prediction_log import PredictionLog, read_log, text_hash
from serving.router import Router, decision_of
from serving.router.http import decision_headers
from serving.router.policy import Policy
from tests.support.fake_provider import FakeProvider, Step

MakePolicy = Callable[..., Policy]
QUESTION = "How do I reset my password?"
GOOD = Step(content="Open Settings, choose Security, then Reset password and follow the emailed link.")


def _cascade_everything(d: dict[str, Any]) -> None:
    """Every classified request goes to the FAQ cascade (cheap -> gate -> sonnet)."""
    d["classifier"]["tier_models"] = {"simple": "faq", "complex": "faq", "reasoning": "faq"}
    d["budget"]["daily_usd"] = 1000.0


def _records(path: Path) -> list[dict[str, Any]]:
    return list(read_log(path))


def test_rejected_stage1_is_logged_with_classifier_outputs_and_a_hash(
    make_policy: MakePolicy, provider: FakeProvider, tmp_path: Path
) -> None:
    provider.set_default("openai", "cheap-model", Step(kind="refusal"))
    log_path = tmp_path / "log.jsonl"
    with PredictionLog(log_path) as log:
        router = Router(make_policy(_cascade_everything), outcome_log=log)
        response = router.complete([{"role": "user", "content": QUESTION}])
        router.close()
    d = decision_of(response)
    assert d is not None and len(d.request_id) == 32
    assert decision_headers(d)["x-tierroute-request-id"] == d.request_id
    (rec,) = _records(log_path)
    assert rec["kind"] == "tierroute.prediction" and rec["v"] == 2 and rec["id"] == d.request_id
    assert rec["route"] == {
        "decided_by": "classifier",
        "rule": "ask-classifier",
        "cascade": "faq",
        "stage1": "cheap",
        "gate": {"ok": False, "reasons": ["refusal"], "p_acceptable": None},
        "escalated": True,
        "final": "sonnet",
    }
    assert rec["labels"] == {"tier": "simple", "task": "factual_qa"}  # the fake classifier's answer
    assert set(rec["probs"]["tier"]) == {"simple", "complex", "reasoning"}
    assert "text" not in rec
    assert rec["text_hash"] == "sha256:" + hashlib.sha256(QUESTION.encode()).hexdigest()
    assert QUESTION not in log_path.read_text()


def test_accepted_stage1_with_text_opt_in_and_keyed_hash(
    make_policy: MakePolicy, provider: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider.set_default("openai", "cheap-model", GOOD)
    with PredictionLog(tmp_path / "texts.jsonl", include_text=True) as log:
        router = Router(make_policy(_cascade_everything), outcome_log=log)
        asyncio.run(router.acomplete([{"role": "user", "content": QUESTION}]))
    (rec,) = _records(tmp_path / "texts.jsonl")
    assert rec["text"] == QUESTION and "text_hash" not in rec
    assert rec["route"]["gate"]["ok"] is True and rec["route"]["escalated"] is False
    assert rec["route"]["stage1"] == rec["route"]["final"] == "cheap"

    monkeypatch.setenv("TIERROUTE_LOG_HASH_KEY", "deployment-secret")
    with PredictionLog(tmp_path / "keyed.jsonl") as log:
        router = Router(make_policy(_cascade_everything), outcome_log=log)
        router.complete([{"role": "user", "content": QUESTION}])
    (rec,) = _records(tmp_path / "keyed.jsonl")
    assert rec["text_hash"] == text_hash(QUESTION, "deployment-secret")
    assert rec["text_hash"].startswith("hmac-sha256:") and rec["text_hash"] != text_hash(QUESTION)


def test_stage1_outage_has_no_verdict_and_plain_routes_no_cascade(
    make_policy: MakePolicy, provider: FakeProvider, tmp_path: Path
) -> None:
    provider.set_default("openai", "cheap-model", Step(kind="error", status=503))
    with PredictionLog(tmp_path / "log.jsonl", include_text=True) as log:
        router = Router(make_policy(_cascade_everything), outcome_log=log)
        router.complete([{"role": "user", "content": QUESTION}])
        router.complete([{"role": "user", "content": "hello"}], route="opus")  # explicit, no classifier
    outage, plain = _records(tmp_path / "log.jsonl")
    assert outage["route"]["gate"] is None and outage["route"]["escalated"] is True
    assert outage["route"]["final"] == "sonnet"
    assert plain["route"]["cascade"] is None and plain["route"]["final"] == "opus"
    assert plain["route"]["decided_by"] == "explicit"
    assert plain["probs"] == {} and plain["labels"] == {}


def test_streamed_requests_are_logged_too(
    make_policy: MakePolicy, provider: FakeProvider, tmp_path: Path
) -> None:
    provider.set_default("openai", "cheap-model", Step(kind="refusal"))
    provider.set_default("anthropic", "claude-sonnet", GOOD)

    async def stream_all() -> str:
        with PredictionLog(tmp_path / "log.jsonl") as log:
            router = Router(make_policy(_cascade_everything), outcome_log=log)
            streamed = await router.astream([{"role": "user", "content": QUESTION}])
            async for _ in streamed.chunks:
                pass
            return streamed.decision.request_id

    request_id = asyncio.run(stream_all())
    (rec,) = _records(tmp_path / "log.jsonl")
    assert rec["id"] == request_id and rec["route"]["escalated"] is True
    assert rec["route"]["final"] == "sonnet"


def test_a_failing_log_never_fails_the_request(
    make_policy: MakePolicy, provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.set_default("openai", "cheap-model", GOOD)

    class Broken:
        def write_routed(self, *args: Any, **kwargs: Any) -> int:
            raise OSError("disk full")

    router = Router(make_policy(_cascade_everything), outcome_log=Broken())
    response = router.complete([{"role": "user", "content": QUESTION}])
    assert json.loads(response.model_dump_json())["choices"][0]["message"]["content"]
    assert "outcome log write failed" in caplog.text
