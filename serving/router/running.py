"""Execution as a core step: call the chosen model, gate a cascade's stage 1, record the spend.

Job: `Runner.complete()` is the generator behind `Router.complete()` and `Router.acomplete()`
(driven by `serving.router.core`). It yields the provider calls (`Executor.call` / `acall`), the
ledger write and the learned gate (both blocking: a worker thread under the async driver), and
returns the LiteLLM response with the decision attached.

Outcome log: with an `outcome_log` (the service's opt-in prediction log, `serving.prediction_log`)
every executed request gets an id (`Decision.request_id`, sent as `x-tierroute-request-id`) and one
record: the classifier's outputs, the cascade's stage-1 model, the gate's verdict, whether it
escalated, the model that answered, and the text (opt-in) or its hash. `tierroute data from-log` turns
these into `weak_ok` training rows. A failure to log is logged and never fails the request; requests
that fail (every provider down, budget, ...) are not recorded.

Trade-offs: the cascade's stage 1 is always buffered whole (the gate judges a complete answer);
a stage-1 failure counts as an escalation for the fallback-rate alarm.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Generator, Mapping
from typing import Any

from serving.router.budget import BudgetLedger, usage_of
from serving.router.cascade import FallbackTracker, LearnedGateFn, run_gate
from serving.router.core import Blocking, Call, Op, adrive
from serving.router.decision import (
    CascadePlanned,
    ClassifierConsulted,
    Decision,
    Executed,
    ExecutionFailed,
    GateChecked,
    RouterError,
)
from serving.router.metrics import RouterMetrics
from serving.router.policy import Policy
from serving.router.request import RouteRequest, extract

DECISION_KEY = "tierroute_decision"
log = logging.getLogger("tierroute.router.running")


class Runner:
    """Executes decisions: provider calls, cascade gate, ledger and metrics."""

    def __init__(
        self,
        policy: Policy,
        tracker: FallbackTracker,
        ledger: BudgetLedger | None,
        learned: dict[str, tuple[LearnedGateFn | None, float]],
        metrics: RouterMetrics,
        outcome_log: Any = None,
    ) -> None:
        self.policy = policy
        self.outcome_log = outcome_log
        self.tracker = tracker
        self.ledger = ledger
        self.learned = learned
        self.metrics = metrics
        self.default_sla = policy.latency_sla.default

    def complete(
        self, ex: Any, d: Decision, req: RouteRequest, msgs: list[dict[str, Any]], kw: dict[str, Any]
    ) -> Generator[Op, Any, Any]:
        d.request_id = uuid.uuid4().hex
        if d.cascade is None:
            result = yield from self.run(ex, d, d.model, d.server_error_fallbacks, msgs, kw)
        else:
            result = yield from self._cascade(ex, d, req, msgs, kw)
        return self.done(d, result, req)

    def run(
        self, ex: Any, d: Decision, model: str, fb: list[str], msgs: list[dict[str, Any]], kw: dict[str, Any]
    ) -> Generator[Op, Any, Any]:
        """One provider call (LiteLLM's retries and fallbacks inside), then its spend recorded."""
        try:
            result = yield Call(*_provider_calls(ex, kw), model, msgs, fb)
        except RouterError as err:
            raise self.failed(d, model, err) from err
        # the ledger fsyncs its journal (and may meet a locked SQLite file): never on the event loop
        return (yield Blocking(self.record, d, result, offload=self.ledger is not None))

    def _cascade(
        self, ex: Any, d: Decision, req: RouteRequest, msgs: list[dict[str, Any]], kw: dict[str, Any]
    ) -> Generator[Op, Any, Any]:
        c = d.cascade
        assert c is not None
        first = yield from self.stage1(ex, d, req, msgs, kw)
        if first is not None:
            return first
        return (yield from self.run(ex, d, c.stage2, list(c.stage2_fallbacks), msgs, kw))

    def stage1(
        self, ex: Any, d: Decision, req: RouteRequest, msgs: list[dict[str, Any]], kw: dict[str, Any]
    ) -> Generator[Op, Any, Any]:
        """A cascade's stage 1, buffered and gated: its result when accepted, None to escalate."""
        c = d.cascade
        assert c is not None
        try:
            first = yield from self.run(ex, d, c.stage1, d.server_error_fallbacks, msgs, kw)
        except RouterError:
            self.tracker.record(c.name, True)
            self.metrics.cascade_requests.labels(c.name, "escalated").inc()
            return None
        learned, _ = self.learned.get(c.name, (None, 0.5))
        ok = yield Blocking(self.judge, d, req, kw, first, offload=learned is not None)
        return first if ok else None

    def failed(self, d: Decision, model: str, err: RouterError) -> RouterError:
        d.trace.append(ExecutionFailed(model, type(err.__cause__ or err).__name__, str(err)))
        self.metrics.failures.labels(type(err).__name__).inc()
        err.trace = list(d.trace)
        err.decision = d
        return err

    def record(self, d: Decision, result: Any) -> Any:
        route = d.cascade.name if d.cascade else d.rule_id
        if self.ledger is not None:
            self.ledger.record(
                result.answered_by, result.cost_usd, result.prompt_tokens, result.completion_tokens, route
            )
            self.metrics.budget_spent.set(self.ledger.spent_today())
        self.metrics.spend.labels(result.answered_by).inc(result.cost_usd)
        d.trace.append(
            Executed(
                result.requested,
                result.answered_by,
                result.provider,
                round(result.cost_usd, 8),
                result.prompt_tokens,
                result.completion_tokens,
                result.answered_by != result.requested,
            )
        )
        return result

    def judge(self, d: Decision, req: RouteRequest, kw: Mapping[str, Any], stage1: Any) -> bool:
        """Run the gate on stage 1's answer; True = acceptable. Records the outcome for the alarm."""
        assert d.cascade is not None
        name = d.cascade.name
        c = self.policy.cascades[name]
        prompt = extract(req, self.default_sla).prompt
        expect_json, schema = _expected_format(kw)
        text, finish = answer_of(stage1.response)
        learned, threshold = self.learned.get(name, (None, 0.5))
        v = run_gate(
            prompt,
            text,
            c.gate,
            expect_json=expect_json,
            json_schema=schema,
            finish_reason=finish,
            learned=learned,
            threshold=threshold,
        )
        d.trace.append(GateChecked(v.ok, v.reasons, v.learned, v.p_acceptable, not v.ok, v.detail))
        self.tracker.record(name, not v.ok)
        self.metrics.cascade_requests.labels(name, "accepted" if v.ok else "escalated").inc()
        return v.ok

    def done(self, d: Decision, result: Any, req: RouteRequest | None = None) -> Any:
        response = result.response
        hidden = getattr(response, "_hidden_params", None)
        if isinstance(hidden, dict):
            hidden[DECISION_KEY] = d
        self.metrics.decisions.labels(result.answered_by, d.decided_by).inc()
        self.count_classifier_fallbacks(d)
        if req is not None:
            self.log_outcome(d, req, result.answered_by)
        return response

    def log_outcome(self, d: Decision, req: RouteRequest, final: str | None) -> None:
        """One outcome record for an executed request (no-op without an outcome log; never raises)."""
        if self.outcome_log is None or not d.request_id:
            return
        try:
            model, result = _classified(d.classified)
            self.outcome_log.write_routed(
                d.request_id,
                outcome_of(d, final),
                extract(req, self.default_sla).prompt,
                result=result,
                model=model,
            )
        except Exception as exc:  # the answer is ready: a log problem must not cost the client it
            log.warning("outcome log write failed: %s: %s", type(exc).__name__, exc)

    # -- streaming (async only: it exists for the HTTP endpoint) -------------------------------

    async def astream(
        self, ex: Any, d: Decision, req: RouteRequest, msgs: list[dict[str, Any]], kw: dict[str, Any]
    ) -> tuple[str, AsyncIterator[dict[str, Any]]]:
        """Open the stream (errors before the first chunk raise here) and return the model asked to
        answer and the chunks as OpenAI chunk dicts. A cascade buffers and gates stage 1 first: an
        accepted answer is replayed as chunks, a rejected one is replaced by stage 2's live stream."""
        usage = bool((kw.pop("stream_options", None) or {}).get("include_usage"))
        d.request_id = uuid.uuid4().hex
        model, fb = d.model, d.server_error_fallbacks
        if d.cascade is not None:
            first = await adrive(self.stage1(ex, d, req, msgs, kw))
            if first is not None:
                return first.answered_by, _replay(self.done(d, first, req), usage)
            model, fb = d.cascade.stage2, list(d.cascade.stage2_fallbacks)
        try:
            stream = await ex.astream(model, msgs, fb, **kw)
        except RouterError as err:
            raise self.failed(d, model, err) from err
        return model, self._relay(ex, d, req, model, stream, msgs, usage)

    async def _relay(
        self,
        ex: Any,
        d: Decision,
        req: RouteRequest,
        model: str,
        stream: Any,
        msgs: list[dict[str, Any]],
        usage: bool,
    ) -> AsyncIterator[dict[str, Any]]:
        """Pass the provider's chunks through; when the stream ends, fails or is cancelled (client
        gone), close the provider call and record what was spent."""
        chunks: list[Any] = []
        finished = False
        try:
            async for chunk in stream:
                chunks.append(chunk)
                out = _chunk_dict(chunk, usage)
                if out is not None:
                    yield out
            finished = True
        finally:
            if not finished:
                _close_soon(stream)
            result = ex.stream_result(model, stream, chunks, msgs)
            self.metrics.decisions.labels(result.answered_by, d.decided_by).inc()
            self.count_classifier_fallbacks(d)
            self.log_outcome(d, req, result.answered_by)
            pending = asyncio.get_running_loop().run_in_executor(None, self.record, d, result)
            if finished:  # the ledger write is done before [DONE]; a cancelled stream cannot wait for it
                await pending

    def count_classifier_fallbacks(self, d: Decision) -> None:
        for step in d.trace:
            if isinstance(step, ClassifierConsulted) and step.status != "ok":
                self.metrics.classifier_fallbacks.labels(step.status).inc()


def outcome_of(d: Decision, final: str | None) -> dict[str, Any]:
    """The `route` object of an outcome record (format: `serving.prediction_log`): who decided, the
    cascade's stage 1 and its gate verdict, whether it escalated, and the model that answered."""
    out: dict[str, Any] = {
        "decided_by": d.decided_by,
        "rule": d.rule_id,
        "cascade": None,
        "stage1": None,
        "gate": None,
        "escalated": False,
        "final": final,
    }
    if d.cascade is None:
        return out
    skipped = any(isinstance(s, CascadePlanned) and s.skip_stage1 for s in d.trace)
    gate = next((s for s in reversed(d.trace) if isinstance(s, GateChecked)), None)
    executed = [s for s in d.trace if isinstance(s, Executed)]
    out["cascade"] = d.cascade.name
    if not skipped:
        stage1 = executed[0].answered_by if gate is not None and executed else None
        out["stage1"] = stage1 or d.cascade.stage1
    if gate is not None:
        out["gate"] = {"ok": gate.ok, "reasons": list(gate.reasons), "p_acceptable": gate.p_acceptable}
    out["escalated"] = gate is None or not gate.ok
    return out


def _classified(classified: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(model ref, result) of the classifier's answer as plain dicts; (None, None) without one."""
    if classified is None:
        return None, None
    model, result = classified
    ref = (
        model.model_dump(include={"name", "version", "alias"})
        if hasattr(model, "model_dump")
        else dict(model)
    )
    res = result.model_dump() if hasattr(result, "model_dump") else dict(result)
    return ref, res


def _chunk_dict(chunk: Any, usage: bool) -> dict[str, Any] | None:
    """A LiteLLM stream chunk as OpenAI's chunk JSON; usage only when the client asked for it."""
    out: dict[str, Any] = chunk.model_dump(exclude_none=True) if hasattr(chunk, "model_dump") else dict(chunk)
    out.pop("_hidden_params", None)
    if not usage:
        out.pop("usage", None)
        if not out.get("choices"):
            return None
    return out


async def _replay(response: Any, usage: bool) -> AsyncIterator[dict[str, Any]]:
    """A buffered (gated) answer as chunks: role + whole content, the finish reason, then usage."""
    text, finish = answer_of(response)
    base = {
        "id": getattr(response, "id", ""),
        "object": "chat.completion.chunk",
        "created": getattr(response, "created", 0),
        "model": getattr(response, "model", ""),
    }
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish or "stop"}]}
    if usage:
        p, c = usage_of(response)
        yield {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        }


def _close_soon(stream: Any) -> None:
    """Close a provider stream (its HTTP response) from a finally block that cannot await."""
    for obj in (stream, getattr(stream, "completion_stream", None)):
        for name in ("aclose", "close"):
            close = getattr(obj, name, None)
            if close is None:
                continue
            try:
                res = close()
                if asyncio.iscoroutine(res):
                    asyncio.get_running_loop().create_task(res)
            except Exception:  # closing is best effort; the provider times the call out anyway
                pass
            break


def _provider_calls(ex: Any, kw: dict[str, Any]) -> tuple[Any, Any]:
    """The executor's sync and async call with the request's LiteLLM keywords bound."""

    def call(model: str, msgs: list[dict[str, Any]], fb: list[str]) -> Any:
        return ex.call(model, msgs, fb, **kw)

    async def acall(model: str, msgs: list[dict[str, Any]], fb: list[str]) -> Any:
        return await ex.acall(model, msgs, fb, **kw)

    return call, acall


def _expected_format(kw: Mapping[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    fmt = kw.get("response_format")
    expect_json, schema = False, None
    if isinstance(fmt, Mapping):
        if fmt.get("type") in ("json_object", "json_schema"):
            expect_json = True
        js = fmt.get("json_schema")
        if isinstance(js, Mapping) and isinstance(js.get("schema"), Mapping):
            schema = dict(js["schema"])
    return expect_json, schema


def answer_of(response: Any) -> tuple[str, str | None]:
    try:
        choice = response.choices[0]
        return str(choice.message.content or ""), getattr(choice, "finish_reason", None)
    except (AttributeError, IndexError, TypeError):
        return "", None
