"""POST /v1/gate: contract, order, short-circuit, errors, metrics, hot swap; TestClient and real uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from serving.gate.http import GateResponse, build_gate_router
from serving.gate.model import GateModel

pytestmark = pytest.mark.slow


@dataclass
class Limits:
    max_texts: int = 8
    max_chars: int = 5_000


class Slot:
    """Stands in for the service's holder: `get` is what the router calls per request."""

    def __init__(self, gate: GateModel | None) -> None:
        self.gate = gate

    def get(self) -> GateModel | None:
        return self.gate


def make_app(slot: Slot, registry: CollectorRegistry | None = None, api_key: str | None = None) -> FastAPI:
    def require_key(x_api_key: str | None = Header(default=None)) -> None:
        if api_key is not None and x_api_key != api_key:
            raise HTTPException(status_code=401, detail="missing or invalid API key")

    app = FastAPI()
    app.include_router(
        build_gate_router(slot.get, Limits(), dependencies=[Depends(require_key)], registry=registry)
    )
    return app


@pytest.fixture(scope="module")
def gate(gate_bundle: Path) -> GateModel:
    return GateModel.load(gate_bundle)


@pytest.fixture(scope="module")
def client(gate: GateModel) -> Iterator[TestClient]:
    with TestClient(make_app(Slot(gate))) as c:
        yield c


ITEMS = [
    {"prompt": "Who wrote Hamlet?", "response": "William Shakespeare wrote Hamlet around 1600."},
    {"prompt": "Summarise the report.", "response": "   "},
    {"prompt": "Write a limerick.", "response": "I'm sorry, but I can't help with that."},
    {
        "prompt": "Return the user as JSON.",
        "response": '{"name": "Ada"}',
        "json_schema": {"required": ["age"]},
    },
    {
        "prompt": "Explain DNS.",
        "response": "DNS maps host names to numeric IP addresses so",
        "finish_reason": "length",
    },
    {
        "prompt": "Explain DNS.",
        "response": "DNS maps names to IP addresses using resolvers.",
        "mean_logprob": -4.0,
    },
]


def test_results_in_input_order_and_short_circuit(client: TestClient) -> None:
    r = client.post("/v1/gate", json={"items": ITEMS})
    assert r.status_code == 200, r.text
    body = r.json()
    GateResponse.model_validate(body)
    res = body["results"]
    assert len(res) == len(ITEMS)
    assert res[0]["decided_by"] == "model" and isinstance(res[0]["p_acceptable"], float)
    assert res[1] == {"acceptable": False, "p_acceptable": None, "reasons": ["empty"], "decided_by": "checks"}
    assert "refusal" in res[2]["reasons"]
    assert res[3]["reasons"] == ["schema_violation"]
    assert res[4]["reasons"] == ["truncated_length"]
    assert res[5]["reasons"] == ["low_logprob"]
    assert body["model"]["loaded"] is True and body["model"]["name"] == "tierroute-gate"
    assert 0 < body["model"]["threshold"] < 1


def test_threshold_override(client: TestClient) -> None:
    item = {"items": [ITEMS[0]]}
    assert client.post("/v1/gate", json={**item, "threshold": 0.0}).json()["results"][0]["acceptable"] is True
    res = client.post("/v1/gate", json={**item, "threshold": 1.0}).json()["results"][0]
    assert res["acceptable"] is False and res["decided_by"] == "model" and res["reasons"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"items": []}, 422, "at least 1 item"),
        ({}, 422, "items"),
        ({"items": [{"prompt": "x"}]}, 422, "response"),
        ({"items": [{"prompt": 1, "response": "y"}]}, 422, "prompt"),
        ({"items": [{"prompt": "x", "response": "y", "colour": "red"}]}, 422, "colour"),
        (
            {"items": [{"prompt": "x", "response": "{}", "json_schema": {"type": "nope"}}]},
            422,
            "items[0].json_schema",
        ),
        ({"items": [{"prompt": "x", "response": "y", "min_chars": -1}]}, 422, "min_chars"),
        ({"items": [{"prompt": "x", "response": "y"}], "threshold": 2}, 422, "threshold"),
        ({"items": [{"prompt": "x", "response": "y", "min_chars": False}]}, 422, "min_chars"),
        ({"items": [{"prompt": "x", "response": "y", "expect_json": 1}]}, 422, "expect_json"),
        ({"items": [{"prompt": "x", "response": "y"}], "threshold": True}, 422, "threshold"),
        ({"items": [{"prompt": "x", "response": "y" * 5001}]}, 422, "longer than 5000"),
        (
            {"items": [{"prompt": "x", "response": "{}", "json_schema": {"$ref": "http://127.0.0.1:9/x"}}]},
            422,
            "remote references",
        ),
        ({"items": [{"prompt": "x", "response": "{}", "json_schema": {"$ref": "#"}}]}, 422, "without end"),
        (
            {"items": [{"prompt": "x", "response": '"a"', "json_schema": {"pattern": "(a)\\1"}}]},
            422,
            "linear-time",
        ),
        ({"items": [{"prompt": "x", "response": "y"}] * 9}, 422, "too many items"),
        ({"items": [{"prompt": "x" * 3000, "response": "y" * 3000}]}, 413, "too many characters"),
    ],
)
def test_errors(client: TestClient, body: dict[str, object], status: int, fragment: str) -> None:
    r = client.post("/v1/gate", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert fragment in (detail if isinstance(detail, str) else str(detail))


def test_no_model_falls_back_to_checks() -> None:
    with TestClient(make_app(Slot(None))) as c:
        body = c.post("/v1/gate", json={"items": ITEMS[:3]}).json()
    assert body["model"]["loaded"] is False
    assert [x["decided_by"] for x in body["results"]] == ["checks_only", "checks", "checks"]
    assert body["results"][0]["acceptable"] is True and body["results"][0]["p_acceptable"] is None


def test_hot_swap_is_picked_up_per_request(gate: GateModel) -> None:
    slot = Slot(None)
    with TestClient(make_app(slot)) as c:
        before = c.post("/v1/gate", json={"items": ITEMS[:1]}).json()
        slot.gate = gate
        after = c.post("/v1/gate", json={"items": ITEMS[:1]}).json()
    assert before["results"][0]["decided_by"] == "checks_only"
    assert after["results"][0]["decided_by"] == "model"


def test_metrics_and_api_key(gate: GateModel) -> None:
    registry = CollectorRegistry()
    with TestClient(make_app(Slot(gate), registry=registry, api_key="s3cret")) as c:
        assert c.post("/v1/gate", json={"items": ITEMS[:3]}).status_code == 401
        assert (
            c.post("/v1/gate", json={"items": ITEMS[:3]}, headers={"X-API-Key": "s3cret"}).status_code == 200
        )
    text = generate_latest(registry).decode()
    assert 'tierroute_gate_reasons_total{reason="empty"} 1.0' in text
    assert 'tierroute_gate_decisions_total{acceptable="false",decided_by="checks"} 2.0' in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_uvicorn_server(gate: GateModel) -> None:
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(make_app(Slot(gate)), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            r = http.post("/v1/gate", json={"items": ITEMS[:3]})
            assert r.status_code == 200
            assert [x["decided_by"] for x in r.json()["results"]] == ["model", "checks", "checks"]
            assert (
                http.post(
                    "/v1/gate", content=b"{not json", headers={"content-type": "application/json"}
                ).status_code
                == 422
            )
            schema = http.get("/openapi.json").json()
            assert "/v1/gate" in schema["paths"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
