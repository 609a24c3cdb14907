"""A fake classify service speaking the `serving.schemas` contract, with scriptable faults.

Job: let router tests make the classifier answer well, slowly, with garbage, with a 5xx, or
unsure, over real HTTP. Tier by keyword: "prove"/"derive" -> reasoning, "refactor"/"debug" ->
complex with task code, else simple. Set `mode` (ok | slow | not_json | bad_schema |
unknown_tier | error | low_confidence) and `delay_s` between tests. `/v1/gate` answers
`gate_p` (or fails with `gate_mode` slow | error) for the learned-gate tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.support.fake_provider import ThreadedServer


class FakeClassifier:
    def __init__(self) -> None:
        self.mode = "ok"
        self.delay_s = 2.0
        self.confidence = 0.92
        self.calls = 0
        self.last_texts: list[str] = []
        self.last_auth: str | None = None
        self.gate_p = 0.9
        self.gate_mode = "ok"  # ok | slow | error
        self.gate_calls = 0
        self.routing: dict[str, Any] | None = None  # a calibrated threshold to announce
        self.app = self._build()
        self._server: ThreadedServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def reset(self) -> None:
        self.mode, self.delay_s, self.confidence, self.calls, self.last_auth = "ok", 2.0, 0.92, 0, None
        self.gate_p, self.gate_mode, self.gate_calls = 0.9, "ok", 0
        self.routing = None

    @staticmethod
    def result_for(text: str, confidence: float) -> dict[str, Any]:
        low = text.lower()
        if "prove" in low or "derive" in low:
            tier, task = "reasoning", "math"
        elif "refactor" in low or "debug" in low:
            tier, task = "complex", "code"
        else:
            tier, task = "simple", "factual_qa"
        rest = (1.0 - confidence) / 2
        probs = {t: (confidence if t == tier else rest) for t in ("simple", "complex", "reasoning")}
        return {
            "tier": tier,
            "tier_probs": probs,
            "task": task,
            "task_probs": {task: 1.0},
            "complexity": {"simple": 0.0, "complex": 0.5, "reasoning": 1.0}[tier],
            "confidence": confidence,
            "tokens": max(1, len(text) // 4),
            "truncated": False,
        }

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/classify")
        async def classify(request: Request) -> Response:
            self.calls += 1
            self.last_auth = request.headers.get("authorization")
            body = await request.json()
            texts = body.get("texts") or [body.get("text", "")]
            self.last_texts = [str(t) for t in texts]
            mode = self.mode
            if mode == "slow":
                await asyncio.sleep(self.delay_s)
            if mode == "error":
                return JSONResponse({"detail": "boom"}, status_code=503)
            if mode == "not_json":
                return Response("<html>gateway</html>", media_type="text/html")
            if mode == "bad_schema":
                return JSONResponse({"model": {"name": "x"}, "results": [{"tier": 3} for _ in texts]})
            confidence = 0.3 if mode == "low_confidence" else self.confidence
            results = [self.result_for(t, confidence) for t in texts]
            if mode == "unknown_tier":
                for r in results:
                    r["tier"] = "medium"
            model: dict[str, Any] = {"name": "fake", "version": "1", "alias": None}
            if self.routing is not None:
                model["routing"] = self.routing
            return JSONResponse({"model": model, "results": results})

        @app.post("/v1/gate")
        async def gate(request: Request) -> Response:
            self.gate_calls += 1
            body = await request.json()
            if self.gate_mode == "slow":
                await asyncio.sleep(self.delay_s)
            if self.gate_mode == "error":
                return JSONResponse({"detail": "gate down"}, status_code=503)
            items = body["items"]
            results = [
                {"acceptable": self.gate_p >= 0.5, "p_acceptable": self.gate_p, "reasons": []} for _ in items
            ]
            return JSONResponse({"model": {"name": "fake-gate"}, "results": results})

        return app

    def start(self) -> FakeClassifier:
        self._server = ThreadedServer(self.app).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
