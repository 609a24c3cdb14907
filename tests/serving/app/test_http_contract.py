"""The HTTP contract of /v1/classify and the operational endpoints, against a real server."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import httpx
import pytest

from serving.schemas import ClassifyResponse
from tests.support.server import Server

TEXTS = [
    "What is the capital of France?",
    "Write a Python function that merges two sorted lists and explain its complexity.",
    "Prove that the square root of two is irrational.",
    "hi",
]


def classify(server: Server, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/classify", json=body, timeout=30)


def test_classify_returns_contract_results_in_input_order(server: Server) -> None:
    resp = classify(server, {"texts": TEXTS})
    assert resp.status_code == 200, resp.text
    body = ClassifyResponse.model_validate(resp.json())
    assert len(body.results) == len(TEXTS)
    assert body.model.name
    for i, text in enumerate(TEXTS):
        single = classify(server, {"text": text}).json()["results"][0]
        batched = resp.json()["results"][i]
        assert single["tier"] == batched["tier"]
        assert single["tokens"] == batched["tokens"]
        for label, p in single["tier_probs"].items():
            assert batched["tier_probs"][label] == pytest.approx(p, abs=1e-4)
        assert batched["p_weak_ok"] == pytest.approx(single["p_weak_ok"], abs=1e-4)
    for result in body.results:
        assert math.isclose(sum(result.tier_probs.values()), 1.0, abs_tol=1e-3)
        assert result.tier == max(result.tier_probs, key=result.tier_probs.__getitem__)
        assert result.confidence == pytest.approx(max(result.tier_probs.values()))
        assert result.task_probs is not None and result.task in result.task_probs
        # the served bundle has a routing head: p_weak_ok over HTTP, complexity = 1 - p_weak_ok
        assert result.p_weak_ok is not None and 0.0 <= result.p_weak_ok <= 1.0
        assert result.complexity == pytest.approx(1.0 - result.p_weak_ok, abs=1e-6)


def test_single_text_form_and_long_text_truncation(server: Server) -> None:
    long_text = "Please read the following carefully. " * 200
    resp = classify(server, {"text": long_text})
    assert resp.status_code == 200
    result = resp.json()["results"][0]
    assert result["truncated"] is True
    assert result["tokens"] > 128
    short = classify(server, {"text": "hello"}).json()["results"][0]
    assert short["truncated"] is False


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({}, 422, "exactly one"),
        ({"text": "a", "texts": ["b"]}, 422, "exactly one"),
        ({"texts": []}, 422, "empty"),
        ({"texts": ["ok", ""]}, 422, "texts[1]"),
        ({"text": ""}, 422, "empty"),
        ({"texts": ["ok", 3]}, 422, "texts.1"),
        ({"texts": "not a list"}, 422, "texts"),
        ({"text": None}, 422, "exactly one"),
        ({"text": "a", "texts": None}, 422, "exactly one"),
        ({"texts": ["a"], "extra": 1}, 422, "extra"),
        ([1, 2], 422, "invalid request"),
        ({"texts": ["x"] * 257}, 422, "257 > 256"),
        ({"text": "x" * 500_001}, 422, "longer than 500000"),
        ({"text": True}, 422, "text"),
        ({"texts": ["x" * 300_000, "y" * 300_000]}, 413, "characters"),
    ],
)
def test_bad_requests_get_json_errors(server: Server, body: object, status: int, needle: str) -> None:
    resp = classify(server, body)
    assert resp.status_code == status
    detail = resp.json()["detail"]
    assert isinstance(detail, str)
    assert needle in detail
    assert "x" * 50 not in detail  # never echoes the submitted text


def test_malformed_json_and_oversized_body(server: Server) -> None:
    resp = httpx.post(
        f"{server.url}/v1/classify", content=b'{"texts": [', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    assert "JSON" in resp.json()["detail"]
    huge = json.dumps({"text": "z" * 4_000_000}).encode()
    resp = httpx.post(f"{server.url}/v1/classify", content=huge, headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert "bytes" in resp.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
        for _ in range(40):
            yield b" " * 100_000

    resp = httpx.post(
        f"{server.url}/v1/classify", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413


def test_health_ready_models(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["origin"] == "local" and body["stale"] is False
    assert body["serving"]["max_batch"] >= 1
    models = httpx.get(f"{server.url}/v1/models").json()
    heads = {h["name"]: h["labels"] for h in models["heads"]}
    assert "tier" in heads and models["bundle"]["kind"] == "classifier"
    assert models["fingerprint"] and models["model"]["name"] == body["model"]["name"]
    result = classify(server, {"text": "What time is it in Tokyo?"}).json()["results"][0]
    assert result["tier"] in heads["tier"]


def test_metrics_count_requests_predictions_and_truncations(server: Server) -> None:
    classify(server, {"texts": ["hello there", "word " * 400]})
    classify(server, {"texts": []})
    httpx.get(f"{server.url}/no/such/path")
    text = httpx.get(f"{server.url}/metrics").text

    def value(prefix: str) -> float:
        lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
        assert lines, f"no metric line starting with {prefix}"
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)

    assert value('tierroute_http_requests_total{endpoint="/v1/classify",method="POST",status="200"}') >= 1
    assert value('tierroute_http_requests_total{endpoint="/v1/classify",method="POST",status="422"}') >= 1
    assert value('tierroute_http_requests_total{endpoint="unmatched",method="GET",status="404"}') >= 1
    assert value('tierroute_http_request_duration_seconds_count{endpoint="/v1/classify"') >= 2
    assert value('tierroute_predictions_total{head="tier"') >= 2
    assert value('tierroute_predictions_total{head="task"') >= 2
    assert value("tierroute_texts_truncated_total") >= 1
    assert value("tierroute_model_info{") == 1
    assert value("tierroute_inference_batch_texts_count") >= 1
    assert "/no/such/path" not in text


def test_openapi_documents_every_endpoint_and_error(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/classify", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/v1/models", "get"),
        ("/metrics", "get"),
        ("/admin/reload", "post"),
    ]:
        assert method in paths[path], path
    responses = paths["/v1/classify"]["post"]["responses"]
    assert {"200", "401", "413", "422"} <= set(responses)
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "409" in paths["/admin/reload"]["post"]["responses"]
