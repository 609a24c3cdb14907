"""The OpenAI-compatible endpoint under a real uvicorn: any OpenAI client can use the router."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serving.router import Router
from serving.router.http import build_chat_router
from serving.router.policy import Policy
from tests.support.fake_provider import FakeProvider, Step, ThreadedServer

MakePolicy = Callable[..., Policy]


@pytest.fixture()
def served(make_policy: MakePolicy) -> Iterator[tuple[str, Router]]:
    router = Router(make_policy()).warm()
    app = FastAPI()
    app.include_router(build_chat_router(router))
    server = ThreadedServer(app).start()
    yield server.url, router
    server.stop()


def _post(url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def test_openai_client_with_model_auto(served: tuple[str, Router], provider: FakeProvider) -> None:
    import openai

    url, _ = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "system", "content": "Summarise"}, {"role": "user", "content": "long text"}],
    )
    completion = raw.parse()
    assert (completion.choices[0].message.content or "").startswith("Here is")
    assert completion.usage is not None and completion.usage.total_tokens == 30
    assert raw.headers["x-tierroute-model"] == "cheap"
    assert raw.headers["x-tierroute-decided-by"] == "rule"
    assert raw.headers["x-tierroute-rule"] == "short-summary"
    assert "short-summary" in raw.headers["x-tierroute-reason"]


def test_route_name_metadata_and_headers(served: tuple[str, Router], provider: FakeProvider) -> None:
    url, _ = served
    r = _post(url, {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["x-tierroute-model"] == "gpt"
    assert r.headers["x-tierroute-decided-by"] == "explicit"
    provider.script("anthropic", "claude-sonnet", Step(kind="error", status=500))
    r = _post(
        url,
        {
            "model": "auto",
            "messages": [{"role": "user", "content": "run"}],
            "metadata": {"requires_code_execution": True},
        },
    )
    assert r.status_code == 200
    assert r.headers["x-tierroute-model"] == "gpt"  # who answered, after failover
    r = _post(
        url,
        {"messages": [{"role": "user", "content": "where is my order"}]},
        **{"x-tierroute-use-case": "faq"},
    )
    assert r.headers["x-tierroute-cascade"].startswith("faq:")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found"),
        ({"model": "auto", "messages": []}, 400, "invalid_request_error"),
        (
            {"model": "auto", "stream_options": {}, "messages": [{"role": "user", "content": "hi"}]},
            400,
            "invalid_request_error",
        ),
        (
            {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "metadata": {"sla": "nope"}},
            400,
            "invalid_request_error",
        ),
    ],
)
def test_client_errors(served: tuple[str, Router], body: dict[str, Any], status: int, code: str) -> None:
    url, _ = served
    r = _post(url, body)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


def test_budget_and_outage_errors_carry_the_trace(served: tuple[str, Router], provider: FakeProvider) -> None:
    url, router = served
    for prov, model in (("anthropic", "claude-sonnet"), ("openai", "gpt-equivalent")):
        provider.set_default(prov, model, Step(kind="error", status=503))
    r = _post(url, {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 502
    assert [s["step"] for s in r.json()["error"]["trace"]][-1] == "failed"
    assert router.ledger is not None
    router.ledger.record("opus", 10.0)
    r = _post(url, {"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 402 and r.json()["error"]["code"] == "budget_exhausted"
    r = _post(
        url,
        {"model": "cheap", "messages": [{"role": "user", "content": "hi"}], "metadata": {"critical": True}},
    )
    assert r.status_code == 200
