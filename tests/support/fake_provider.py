"""A scriptable fake OpenAI-compatible provider, served by a real uvicorn on 127.0.0.1.

Job: stand in for Anthropic, OpenAI, Bedrock... in tests, since no provider can be reached here.
Each "provider" is a path prefix (`/<provider>/v1/chat/completions`), so one server plays several
providers and LiteLLM deployments differ only by `api_base`. Behaviour is scripted per
(provider, model): one-shot steps queued with `script()` run first, then a responder set with
`set_responder()` (a function of the request body: a step, or None to fall through), then the
sticky default set with `set_default()`. Kinds: ok, error (any status, e.g. 429/500/503), slow
(sleep, then ok), refusal, invalid_json. Every answer reports token usage; every call is logged for
assertions. `stream: true` is answered with server-sent events in OpenAI's chunk format (one chunk per word,
`chunk_delay_s` apart; usage last when `stream_options.include_usage`); streams cut short by the
client are counted in `streams_cut`.

Trade-off: the server runs in a thread of the test process (fast start, shared state without an
admin API); the router under test still talks to it over real HTTP through LiteLLM.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.support.ports import free_port

REFUSAL_TEXT = "I'm sorry, but I can't help with that request."


@dataclass
class Step:
    """One scripted answer."""

    kind: str = "ok"  # ok | error | slow | refusal | invalid_json
    content: str = "Here is a complete and helpful answer to your question."
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int = 20
    completion_tokens: int = 10
    finish_reason: str = "stop"
    chunk_delay_s: float = 0.0  # streaming: pause before each content chunk


@dataclass
class Call:
    provider: str
    model: str
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class FakeProvider:
    """State + app. Use as a context manager: starts uvicorn on a free port, stops it on exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[tuple[str, str], deque[Step]] = defaultdict(deque)
        self._defaults: dict[tuple[str, str], Step] = {}
        self._responders: dict[tuple[str, str], Callable[[dict[str, Any]], Step | None]] = {}
        self.calls: list[Call] = []
        self.streams_completed = 0
        self.streams_cut = 0  # streams whose client (the router) went away before the end
        self.port = free_port()
        self.app = self._build_app()
        self._server: ThreadedServer | None = None

    # -- scripting ---------------------------------------------------------------------------
    def api_base(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.port}/{provider}/v1"

    def script(self, provider: str, model: str, *steps: Step) -> None:
        with self._lock:
            self._queues[(provider, model)].extend(steps)

    def set_default(self, provider: str, model: str, step: Step) -> None:
        with self._lock:
            self._defaults[(provider, model)] = step

    def set_responder(
        self, provider: str, model: str, responder: Callable[[dict[str, Any]], Step | None]
    ) -> None:
        """Answer by content: `responder(body)` picks the step (None: the default step)."""
        with self._lock:
            self._responders[(provider, model)] = responder

    def reset(self) -> None:
        with self._lock:
            self._queues.clear()
            self._defaults.clear()
            self._responders.clear()
            self.calls.clear()
            self.streams_completed = self.streams_cut = 0

    def calls_to(self, provider: str, model: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.provider == provider and (model is None or c.model == model)]

    def _next_step(self, provider: str, model: str, body: dict[str, Any] | None = None) -> Step:
        with self._lock:
            queue = self._queues.get((provider, model))
            if queue:
                return queue.popleft()
            responder = self._responders.get((provider, model))
            default = self._defaults.get((provider, model), Step())
        if responder is not None:
            step = responder(body or {})
            if step is not None:
                return step
        return default

    # -- app ---------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{provider}/v1/chat/completions")
        async def chat(provider: str, request: Request) -> Response:
            body = await request.json()
            model = str(body.get("model", ""))
            step = self._next_step(provider, model, body)
            if step.delay_s or step.kind == "slow":
                await asyncio.sleep(step.delay_s)
            status = step.status if step.kind == "error" else 200
            with self._lock:
                self.calls.append(Call(provider, model, status, body))
            if step.kind == "error":
                headers: dict[str, str] = {}
                return JSONResponse(
                    {"error": {"message": f"fake {status} from {provider}", "type": "fake", "code": status}},
                    status_code=status,
                    headers=headers,
                )
            content = {"refusal": REFUSAL_TEXT, "invalid_json": '{"answer": "unterminated'}.get(
                step.kind, step.content
            )
            if body.get("stream") is True:
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return StreamingResponse(
                    self._sse(model, content, step, usage), media_type="text/event-stream"
                )
            return JSONResponse(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": step.finish_reason,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": step.prompt_tokens,
                        "completion_tokens": step.completion_tokens,
                        "total_tokens": step.prompt_tokens + step.completion_tokens,
                    },
                }
            )

        return app

    async def _sse(self, model: str, content: str, step: Step, usage: bool) -> Any:
        """OpenAI's streaming format: a role chunk, one chunk per word, the finish chunk, the usage
        chunk when asked for, then `data: [DONE]`."""
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk"}
        base |= {"created": int(time.time()), "model": model}

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

        done = False
        try:
            yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            words = content.split(" ")
            for i, word in enumerate(words):
                if step.chunk_delay_s:
                    await asyncio.sleep(step.chunk_delay_s)
                piece = word if i == 0 else " " + word
                yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            yield event([{"index": 0, "delta": {}, "finish_reason": step.finish_reason}])
            if usage:
                total = step.prompt_tokens + step.completion_tokens
                tokens = {"prompt_tokens": step.prompt_tokens, "completion_tokens": step.completion_tokens}
                yield event([], usage={**tokens, "total_tokens": total})
            yield b"data: [DONE]\n\n"
            done = True
        finally:
            with self._lock:
                if done:
                    self.streams_completed += 1
                else:
                    self.streams_cut += 1

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeProvider:
        self._server = ThreadedServer(self.app, self.port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadedServer:
    """A real uvicorn server on 127.0.0.1 in a daemon thread of the test process."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
