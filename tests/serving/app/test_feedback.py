"""`POST /v1/feedback` on a real server: the request id of a routed answer, a verdict appended to the
prediction log; API-key protected; malformed input is a 4xx JSON error, never a 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import yaml

from tests.support.fake_provider import FakeProvider, Step
from tests.support.policies import policy_dict
from tests.support.server import start_server

KEY = "feedback-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}


def test_feedback_is_logged_next_to_the_routed_request(serving_bundle: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "traffic.jsonl"
    with FakeProvider() as provider:
        provider.set_default("openai", "cheap-model", Step(content="A complete and helpful answer, here."))
        policy = policy_dict(provider, "http://127.0.0.1:9", tmp_path / "ledger.sqlite")  # URL never used
        policy["classifier"]["min_confidence"] = 0.0
        policy["classifier"]["tier_models"] = {"simple": "faq", "complex": "faq", "reasoning": "faq"}
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
        args = ["--policy", str(policy_path), "--prediction-log", str(log_path)]
        server = start_server(serving_bundle, tmp_path / "srv", args=args, env={"TIERROUTE_API_KEY": KEY})
        try:
            chat = httpx.post(
                f"{server.url}/v1/chat/completions",
                json={
                    "model": "auto",
                    "messages": [{"role": "user", "content": "What is the capital of Peru?"}],
                },
                headers=AUTH,
                timeout=60,
            )
            assert chat.status_code == 200, chat.text
            request_id = chat.headers["x-tierroute-request-id"]
            url = f"{server.url}/v1/feedback"
            ok = httpx.post(url, json={"request_id": request_id, "verdict": "bad"}, headers=AUTH)
            assert ok.status_code == 202 and ok.json() == {"accepted": True, "request_id": request_id}

            assert httpx.post(url, json={"request_id": request_id, "verdict": "bad"}).status_code == 401
            bad_bodies: list[object] = [
                {"request_id": request_id, "verdict": "meh"},
                {"request_id": "../../etc/passwd", "verdict": "bad"},
                {"request_id": request_id.upper(), "verdict": "bad"},
                {"request_id": request_id + "0", "verdict": "good"},
                {"request_id": 12345, "verdict": "good"},
                {"request_id": request_id, "verdict": "good", "comment": "extra field"},
                {"verdict": "good"},
                [request_id, "good"],
                None,
            ]
            for body in bad_bodies:
                resp = httpx.post(url, json=body, headers=AUTH)
                assert resp.status_code == 422, (body, resp.status_code, resp.text)
                assert resp.json()["detail"].startswith("invalid request")
            garbage = httpx.post(
                url, content=b"\xff\xfe{not json", headers={**AUTH, "content-type": "application/json"}
            )
            assert garbage.status_code == 422 and "detail" in garbage.json()
            big = httpx.post(
                url, content=b"{" + b" " * 5000 + b"}", headers={**AUTH, "content-type": "application/json"}
            )
            assert big.status_code == 413 and "detail" in big.json()
            spec = httpx.get(f"{server.url}/openapi.json", headers=AUTH).json()
            assert "/v1/feedback" in spec["paths"]
        finally:
            server.stop()
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    routed = [r for r in records if r.get("id") == request_id and r["kind"] == "tierroute.prediction"]
    feedback = [r for r in records if r["kind"] == "tierroute.feedback"]
    assert len(routed) == 1 and routed[0]["route"]["cascade"] == "faq"
    assert "What is the capital" not in log_path.read_text()  # hashed: no TIERROUTE_PREDICTION_LOG_TEXTS
    assert feedback == [
        {"kind": "tierroute.feedback", "v": 2, "ts": feedback[0]["ts"], "id": request_id, "verdict": "bad"}
    ]


def test_no_feedback_route_without_a_prediction_log(serving_bundle: Path, tmp_path: Path) -> None:
    with FakeProvider() as provider:
        policy = policy_dict(provider, "http://127.0.0.1:9", tmp_path / "ledger.sqlite")
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
        server = start_server(serving_bundle, tmp_path / "srv", args=["--policy", str(policy_path)])
        try:
            resp = httpx.post(f"{server.url}/v1/feedback", json={"request_id": "0" * 32, "verdict": "good"})
            assert resp.status_code == 404
        finally:
            server.stop()
