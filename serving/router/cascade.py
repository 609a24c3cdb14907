"""Cascades: judge a stage-1 answer with the gate, and watch how often stage 1 is not good enough.

Job: (1) run the gate on a stage-1 answer: the deterministic checks from `serving.gate.checks`
always, then, if configured, a learned gate (`(prompt, response) -> p_acceptable`, in process or
over HTTP `/v1/gate`) whose failure or timeout leaves the deterministic verdict standing and says
so; (2) keep a rolling window of stage-1 outcomes per cascade, raise an alarm (log + metrics)
when the fallback rate passes the threshold, and, if the policy allows, tell the decision path
to skip stage 1 while the alarm is up, probing stage 1 every Nth request so the alarm can clear.

Trade-offs: the window is per process (a deque): cheap and lock-light, but with several workers
each one alarms on its own traffic. The learned gate only runs when the deterministic checks
pass: they are exact, microseconds, and a failed check already means "escalate".
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from serving.router.metrics import RouterMetrics
from serving.router.policy import Cascade, GateSettings, LearnedGate

log = logging.getLogger("tierroute.router.cascade")

LearnedGateFn = Callable[[str, str], float]
"""(prompt, response) -> P(acceptable) in [0, 1]."""


class FallbackTracker:
    """Rolling fallback rate per cascade route, with an alarm above the threshold."""

    def __init__(self, cascades: dict[str, Cascade], metrics: RouterMetrics | None = None) -> None:
        self._metrics = metrics or RouterMetrics.for_registry()
        self._cfg = {name: c.alarm for name, c in cascades.items()}
        self._windows: dict[str, deque[bool]] = {
            name: deque(maxlen=a.window) for name, a in self._cfg.items()
        }
        self._alarmed: dict[str, bool] = dict.fromkeys(self._cfg, False)
        self._skips: dict[str, int] = dict.fromkeys(self._cfg, 0)
        self._lock = threading.Lock()

    def record(self, route: str, fell_back: bool) -> None:
        cfg = self._cfg[route]
        with self._lock:
            window = self._windows[route]
            window.append(fell_back)
            n = len(window)
            rate = sum(window) / n
            was = self._alarmed[route]
            now = n >= cfg.min_samples and rate > cfg.threshold
            self._alarmed[route] = now
        m = self._metrics
        m.cascade_fallback_rate.labels(route).set(rate)
        m.cascade_alarm.labels(route).set(1 if now else 0)
        if now and not was:
            m.cascade_alarms.labels(route).inc()
            log.warning(
                "cascade %s: stage-1 fallback rate %.0f%% over the last %d requests is above %.0f%%%s",
                route,
                rate * 100,
                n,
                cfg.threshold * 100,
                "; sending traffic straight to stage 2" if cfg.auto_skip_stage1 else "",
            )
        elif was and not now:
            log.warning("cascade %s: fallback rate back to %.0f%%; alarm cleared", route, rate * 100)

    def rate(self, route: str) -> float | None:
        window = self._windows[route]
        return sum(window) / len(window) if window else None

    def alarmed(self, route: str) -> bool:
        return self._alarmed[route]

    def plan_skip(self, route: str) -> tuple[bool, bool]:
        """(skip stage 1, this is a probe). Skips only while alarmed and auto-skip is on."""
        cfg = self._cfg[route]
        if not (cfg.auto_skip_stage1 and self._alarmed[route]):
            return False, False
        with self._lock:
            self._skips[route] += 1
            probe = self._skips[route] % cfg.probe_every == 0
        return (not probe), probe


@dataclass(frozen=True, slots=True)
class GateVerdict:
    ok: bool
    reasons: tuple[str, ...]
    learned: str  # ok | unavailable | not_configured
    p_acceptable: float | None
    detail: str = ""


class HttpLearnedGate:
    """`POST {url}/v1/gate` with one item; returns p_acceptable. Raises on any failure."""

    def __init__(self, cfg: LearnedGate, api_key: str | None = None) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._url = cfg.url.rstrip("/") + "/v1/gate"
        self._http = httpx.Client(timeout=httpx.Timeout(cfg.timeout_ms / 1000), headers=headers)

    def __call__(self, prompt: str, response: str) -> float:
        r = self._http.post(self._url, json={"items": [{"prompt": prompt, "response": response}]})
        r.raise_for_status()
        result = r.json()["results"][0]
        if result.get("p_acceptable") is None:
            # the service's own deterministic checks rejected it, or its model is not loaded
            if result.get("acceptable") is False:
                return 0.0
            raise ValueError("the gate service answered without p_acceptable (no model loaded)")
        p = float(result["p_acceptable"])
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ValueError(f"p_acceptable out of range: {p}")
        return p


def run_gate(
    prompt: str,
    response: str,
    settings: GateSettings,
    *,
    expect_json: bool = False,
    json_schema: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    mean_logprob: float | None = None,
    learned: LearnedGateFn | None = None,
    threshold: float = 0.5,
) -> GateVerdict:
    from serving.gate.checks import check_response

    result = check_response(
        prompt,
        response,
        expect_json=expect_json or settings.expect_json,
        json_schema=json_schema if json_schema is not None else settings.json_schema,
        finish_reason=finish_reason,
        mean_logprob=mean_logprob,
        min_chars=settings.min_chars,
    )
    reasons = tuple(result.reasons)
    if learned is None:
        return GateVerdict(result.ok, reasons, "not_configured", None)
    if not result.ok:
        return GateVerdict(
            False, reasons, "not_configured", None, "deterministic checks failed; learned gate skipped"
        )
    try:
        p = float(learned(prompt, response))
    except Exception as exc:  # timeout, connection refused, bad body: deterministic checks decide
        return GateVerdict(
            result.ok,
            reasons,
            "unavailable",
            None,
            f"learned gate unavailable ({type(exc).__name__}); checks decided",
        )
    if p < threshold:
        return GateVerdict(False, (*reasons, "learned_gate_below_threshold"), "ok", p)
    return GateVerdict(True, reasons, "ok", p)
