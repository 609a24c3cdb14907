"""`Router.astream()` as a library API (not exposed over HTTP yet): chunks, usage, spend, cascade."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from serving.router import InvalidRequest, Router
from serving.router.policy import Policy
from tests.support.fake_provider import FakeProvider, Step

ASK = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = "Paris is the capital of France and its largest city by far."


async def _collect(router: Router, **kw: Any) -> tuple[str, list[dict[str, Any]]]:
    streamed = await router.astream(ASK, **kw)
    chunks = [c async for c in streamed.chunks]
    return streamed.model, chunks


def _text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def test_astream_chunks_usage_and_spend(make_policy: Callable[..., Policy], provider: FakeProvider) -> None:
    provider.set_default(
        "openai", "cheap-model", Step(content=ANSWER, prompt_tokens=14, completion_tokens=12)
    )
    router = Router(make_policy(), classifier=None)
    try:
        model, chunks = asyncio.run(_collect(router, route="cheap", stream_options={"include_usage": True}))
        assert model == "cheap" and _text(chunks) == ANSWER
        assert chunks[-1]["usage"]["completion_tokens"] == 12
        assert provider.calls_to("openai", "cheap-model")[-1].body["stream"] is True
        assert router.ledger is not None
        assert router.ledger.spent_today() > 0  # the stream's spend, recorded when it ended
        _, plain = asyncio.run(_collect(router, route="cheap"))
        assert not any("usage" in c for c in plain) and _text(plain) == ANSWER
    finally:
        router.close()


def test_astream_cascade_replays_or_streams_stage2(
    make_policy: Callable[..., Policy], provider: FakeProvider
) -> None:
    provider.set_default("openai", "cheap-model", Step(content=ANSWER))
    provider.set_default("anthropic", "claude-sonnet", Step(content="Stage two answers at length here."))
    router = Router(make_policy(), classifier=None)
    try:
        model, chunks = asyncio.run(_collect(router, route="faq"))
        assert (model, _text(chunks)) == ("cheap", ANSWER)
        assert provider.calls_to("openai", "cheap-model")[-1].body.get("stream") is not True
        provider.set_default("openai", "cheap-model", Step(content="Paris."))  # too short for the gate
        model, chunks = asyncio.run(_collect(router, route="faq"))
        assert (model, _text(chunks)) == ("sonnet", "Stage two answers at length here.")
        assert provider.calls_to("anthropic", "claude-sonnet")[-1].body["stream"] is True
    finally:
        router.close()


def test_complete_refuses_stream(make_policy: Callable[..., Policy]) -> None:
    router = Router(make_policy(), classifier=None)
    try:
        try:
            router.complete(ASK, stream=True)
        except InvalidRequest as err:
            assert "astream" in str(err)
        else:
            raise AssertionError("stream=True was accepted by complete()")
    finally:
        router.close()
