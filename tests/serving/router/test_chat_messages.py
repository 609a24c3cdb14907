"""Messages a provider would refuse are the client's 400, refused before any call.

Found by fuzzing the chat endpoint: a `developer` message without content passed validation, LiteLLM's
adapter then failed before sending, and the client got a 502 "every provider failed"."""

from __future__ import annotations

import json

import pytest

from serving.router.chat_schema import ChatBodyError, parse_chat_body


def _body(*messages: dict[str, object]) -> bytes:
    return json.dumps({"model": "auto", "messages": list(messages)}).encode()


@pytest.mark.parametrize(
    "message",
    [
        {"role": "developer"},
        {"role": "user", "name": "x"},
        {"role": "system", "content": None},
        {"role": "tool", "content": "42"},
        {"role": "assistant"},
        {"role": "assistant", "tool_calls": []},
        {
            "role": "user",
            "content": "hi",
            "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": ""}}],
        },
    ],
    ids=[
        "no-content",
        "name-only",
        "null-content",
        "tool-without-id",
        "empty-assistant",
        "assistant-empty-calls",
        "user-with-tool-calls",
    ],
)
def test_incomplete_messages_are_a_400(message: dict[str, object]) -> None:
    with pytest.raises(ChatBodyError) as err:
        parse_chat_body(_body(message))
    assert err.value.status == 400


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hi"}],
        [{"role": "developer", "content": ""}, {"role": "user", "content": "hi"}],
        [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
    ],
    ids=["user", "empty-developer", "tool-round-trip"],
)
def test_complete_messages_pass(messages: list[dict[str, object]]) -> None:
    request = parse_chat_body(_body(*messages))
    assert len(request.messages) == len(messages)
