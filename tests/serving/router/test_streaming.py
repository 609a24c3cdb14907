"""Streaming through the OpenAI-compatible endpoint, with the official `openai` client.

A router-only server process (`chat_server`) in front of the fake provider, which answers
`stream: true` with real server-sent events. Covered: the chunks and `[DONE]` an OpenAI client
reads, usage on request, the spend in the ledger, a cascade (stage 1 buffered and gated, then the
accepted answer or stage 2's stream), errors before the first chunk as JSON, and a client that
disconnects mid-stream (the provider call is cut, the spend still recorded).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.serving.router.test_chat_security import ChatServer, start_chat_server
from tests.support.fake_provider import FakeProvider, Step
from tests.support.policies import policy_dict

ANSWER = "Paris is the capital of France and its largest city by far."
ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(_provider_server: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    work = tmp_path_factory.mktemp("streaming")
    d = policy_dict(_provider_server, None, work / "ledger.sqlite")
    d["rules"] = [r for r in d["rules"] if r["route"] != "classifier"]
    srv = start_chat_server(d, work, level="info")
    yield srv
    srv.stop()


@pytest.fixture()
def client(server: ChatServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def _spend(ledger: Path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(ledger, timeout=30) as conn:
        rows = conn.execute("SELECT model, prompt_tokens, completion_tokens FROM spend ORDER BY rowid")
        return [(str(m), int(p), int(c)) for m, p, c in rows.fetchall()]


def _wait_for(check: Any, tries: int = 300) -> bool:
    for _ in range(tries):  # bounded: up to ~30 s on a loaded box
        if check():
            return True
        time.sleep(0.1)
    return False


def test_openai_client_streams_chunks_usage_and_spend(
    server: ChatServer, client: openai.OpenAI, provider: FakeProvider
) -> None:
    provider.set_default(
        "openai", "cheap-model", Step(content=ANSWER, prompt_tokens=14, completion_tokens=12)
    )
    before = len(_spend(server.ledger))
    stream = client.chat.completions.create(
        model="cheap", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # word by word
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
    sent = provider.calls_to("openai", "cheap-model")[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    rows = _spend(server.ledger)
    assert rows[before:] == [("cheap", 14, 12)]  # recorded before [DONE] was sent


def test_without_include_usage_no_usage_chunk_but_spend_recorded(
    server: ChatServer, provider: FakeProvider
) -> None:
    provider.set_default("openai", "cheap-model", Step(content=ANSWER, prompt_tokens=9, completion_tokens=7))
    before = len(_spend(server.ledger))
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json={"model": "cheap", "messages": ASK, "stream": True}
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-tierroute-model"] == "cheap"
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert not any('"usage"' in line for line in lines)
    assert _spend(server.ledger)[before:] == [("cheap", 9, 7)]  # the provider's usage, asked for anyway


def test_cascade_streams_the_accepted_stage1_or_stage2(
    server: ChatServer, client: openai.OpenAI, provider: FakeProvider
) -> None:
    # accepted: stage 1 is called without streaming, gated, then replayed as chunks
    provider.set_default("openai", "cheap-model", Step(content=ANSWER))
    provider.set_default("anthropic", "claude-sonnet", Step(content="Stage two answers at length here."))
    chunks = list(client.chat.completions.create(model="faq", messages=ASK, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert provider.calls_to("openai", "cheap-model")[-1].body.get("stream") is not True
    assert not provider.calls_to("anthropic", "claude-sonnet")
    # escalated: stage 1 too short for the gate (min_chars 20), stage 2 streams live
    provider.set_default("openai", "cheap-model", Step(content="Paris."))
    before = len(_spend(server.ledger))
    raw = client.chat.completions.with_raw_response.create(model="faq", messages=ASK, stream=True)
    assert raw.headers["x-tierroute-model"] == "sonnet"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Stage two answers at length here."
    )
    assert provider.calls_to("anthropic", "claude-sonnet")[-1].body["stream"] is True
    assert [m for m, _, _ in _spend(server.ledger)[before:]] == ["cheap", "sonnet"]  # both stages paid


def test_error_before_the_first_chunk_is_a_json_error(server: ChatServer, provider: FakeProvider) -> None:
    provider.set_default("openai", "cheap-model", Step(kind="error", status=400))
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "cheap", "messages": ASK, "stream": True},
        timeout=60,
    )
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "provider_rejected"


def test_client_disconnect_mid_stream_cuts_the_provider_and_records_spend(
    server: ChatServer, provider: FakeProvider
) -> None:
    words = " ".join(f"word{i}" for i in range(40))
    provider.set_default("openai", "gpt-equivalent", Step(content=words, chunk_delay_s=0.25))
    before = len(_spend(server.ledger))
    body = {"model": "gpt", "messages": ASK, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        got = 0
        for line in r.iter_lines():
            if line.startswith("data: ") and "word" in line:
                got += 1
            if got >= 2:
                break  # leaving the block closes the connection mid-stream
    assert _wait_for(lambda: provider.streams_cut >= 1), "the provider stream was not cut"
    assert provider.streams_completed == 0
    assert _wait_for(lambda: len(_spend(server.ledger)) > before), "no spend recorded"
    model, prompt, completion = _spend(server.ledger)[before]
    assert model == "gpt" and prompt > 0 and 0 < completion < 40  # what was streamed before the cut


def test_complete_refuses_stream_and_points_to_astream(make_policy: Any) -> None:
    from serving.router import InvalidRequest, Router

    router = Router(make_policy(), classifier=None)
    try:
        with pytest.raises(InvalidRequest, match="astream"):
            router.complete(ASK, stream=True)
    finally:
        router.close()
