"""Parts other areas own, mounted by the service: prediction log, /v1/gate, /v1/chat/completions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from serving.router.chat_schema import LIMITS
from tests.support.server import start_server

JSON = {"content-type": "application/json"}


def assert_chat_body_cap(url: str) -> None:
    """The service's body cap lets the chat endpoint see bodies up to its own 4 MiB cap (over the
    classify cap) and refuses larger ones in OpenAI's error shape, by Content-Length or streamed."""
    under = b'{"model": "auto", "messages": "' + b"x" * (LIMITS.max_body_bytes - 64) + b'"}'
    resp = httpx.post(url, content=under, headers=JSON, timeout=60)
    assert resp.status_code == 400, resp.text  # judged by the endpoint (messages is not a list)
    assert resp.json()["error"]["code"] == "invalid_request_error"
    over = b"x" * (LIMITS.max_body_bytes + 1)

    def streamed() -> Iterator[bytes]:  # no Content-Length: the cap applies while reading
        for start in range(0, len(over), 1 << 20):
            yield over[start : start + (1 << 20)]

    for content in (over, streamed()):
        resp = httpx.post(url, content=content, headers=JSON, timeout=60)
        assert resp.status_code == 413, resp.text
        error = resp.json()["error"]
        assert error["code"] == "invalid_request_error" and str(LIMITS.max_body_bytes) in error["message"]


def test_prediction_log_and_gate_without_a_gate_model(serving_bundle: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "predictions.jsonl"
    server = start_server(serving_bundle, tmp_path / "srv", args=["--prediction-log", str(log_path)])
    try:
        texts = ["secret one", "secret two", "secret three"]
        resp = httpx.post(f"{server.url}/v1/classify", json={"texts": texts})
        assert resp.status_code == 200
        gate = httpx.post(
            f"{server.url}/v1/gate",
            json={
                "items": [
                    {"prompt": "Write a cover letter for a nurse job.", "response": ""},
                    {"prompt": "Is Paris in France?", "response": "Yes, Paris is the capital of France."},
                ]
            },
        )
        assert gate.status_code == 200, gate.text
        empty, fine = gate.json()["results"]
        assert gate.json()["model"]["loaded"] is False  # no gate model configured: checks only
        assert empty["acceptable"] is False and "empty" in empty["reasons"]
        assert fine["acceptable"] is True and fine["decided_by"] == "checks_only"
    finally:
        server.stop()
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(records) == 3
    served = resp.json()["results"]
    assert [r["labels"]["tier"] for r in records] == [r["tier"] for r in served]
    assert all("text" not in r for r in records)
    assert "secret" not in log_path.read_text() + server.log()  # raw text is never written by default


def test_policy_mounts_chat_completions_with_the_served_classifier(
    serving_bundle: Path, tmp_path: Path
) -> None:
    from tests.support.fake_provider import FakeProvider
    from tests.support.policies import policy_dict

    with FakeProvider() as provider:
        policy = policy_dict(provider, "http://127.0.0.1:9", tmp_path / "ledger.sqlite")  # URL never used
        policy["classifier"]["min_confidence"] = 0.0
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
        server = start_server(serving_bundle, tmp_path / "srv", args=["--policy", str(policy_path)])
        try:
            assert httpx.get(f"{server.url}/readyz").json()["policy"] == policy_path.name
            assert httpx.get(f"{server.url}/admin/status").json()["policy"] == str(policy_path)
            resp = httpx.post(
                f"{server.url}/v1/chat/completions",
                json={"model": "auto", "messages": [{"role": "user", "content": "Prove that 17 is prime."}]},
                timeout=60,
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["choices"][0]["message"]["content"]
            assert "classifier:" in resp.headers["x-tierroute-reason"]  # answered in process, not via the URL
            assert resp.headers["x-tierroute-model"] in policy["models"]
            spec = httpx.get(f"{server.url}/openapi.json").json()
            assert "/v1/chat/completions" in spec["paths"] and "/v1/gate" in spec["paths"]
            assert_chat_body_cap(f"{server.url}/v1/chat/completions")
        finally:
            server.stop()
