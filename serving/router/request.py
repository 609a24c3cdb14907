"""A routing request and the cheap features rules look at.

Job: turn OpenAI-style messages plus metadata into `Features` (latest user text, system prompt,
estimated token counts, image present, use case, SLA class, critical flag, metadata flags) in a
few microseconds, so rules can run on every request.

Trade-offs:
- Token counts are estimates: characters / 4 (rounded up). A real tokenizer costs ~100 us per
  text, five times the rules' whole budget; rule thresholds such as "< 500 tokens" do not need
  exactness. When the classifier answers, its exact count is in the trace.
- `tokens` is the latest user message (what the classifier sees); `context_tokens` is every
  message, which is what a context window must hold.
- Metadata values given as strings ("true", "3") are coerced to bool / int / float once here, so
  `--metadata requires_code_execution=true` on the CLI and `true` in JSON match the same rule.
- The reserved routing keys are type-checked here (`InvalidRequest`, not a TypeError deep in the
  decision): use_case / sla / route must be strings, critical a boolean (or "true"/"false").
- `TRANSPORT_FIELDS` are LiteLLM keywords that say where and how a call is made (endpoint,
  credentials, headers, provider, timeouts, retries, mock answers, fallbacks, callbacks). Only the
  policy sets them: `Router.complete()` refuses them, and the HTTP endpoint refuses them by name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.router.decision import InvalidRequest

Message = Mapping[str, Any]
RESERVED_METADATA = ("use_case", "sla", "critical", "route")

TRANSPORT_FIELDS: frozenset[str] = frozenset(
    {
        # where the call goes and as whom
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "organization",
        "custom_llm_provider",
        "deployment_id",
        "azure_ad_token",
        "azure_ad_token_provider",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_region_name",
        "aws_profile_name",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "model_list",
        "litellm_params",
        "specific_deployment",
        # what is sent besides the body we build
        "headers",
        "extra_headers",
        "extra_body",
        "extra_query",
        # how long, how often, what instead
        "timeout",
        "request_timeout",
        "stream_timeout",
        "num_retries",
        "max_retries",
        "fallbacks",
        "context_window_fallbacks",
        "mock_response",
        "mock_tool_calls",
        "mock_timeout",
        "mock_testing_fallbacks",
        # pricing and LiteLLM internals
        "input_cost_per_token",
        "output_cost_per_token",
        "litellm_metadata",
        "litellm_logging_obj",
        "litellm_call_id",
        "logger_fn",
        "callbacks",
        "client",
        "caching",
        "cache",
        "model_info",
        "proxy_server_request",
    }
)

LOG_TEXTS_ENV = "TIERROUTE_LOG_TEXTS"


def log_texts_enabled() -> bool:
    """The service's opt-in to request text in logs (`TIERROUTE_LOG_TEXTS`, the serve settings'
    `log_texts`); off unless set to a true value."""
    return os.environ.get(LOG_TEXTS_ENV, "").strip().lower() in ("1", "true", "yes", "on", "t", "y")


@dataclass(slots=True)
class RouteRequest:
    """What the router decides on. Build with `from_text` or `from_messages`."""

    messages: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)
    use_case: str | None = None
    sla: str | None = None
    critical: bool = False
    route: str | None = None
    """A route name (model, tier, cascade or rule id) to force instead of deciding; None/'auto' decides."""

    @classmethod
    def from_text(
        cls, text: str, system: str | None = None, metadata: Mapping[str, Any] | None = None, **kw: Any
    ) -> RouteRequest:
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": text})
        return cls.from_messages(messages, metadata, **kw)

    @classmethod
    def from_messages(
        cls, messages: Sequence[Message], metadata: Mapping[str, Any] | None = None, **kw: Any
    ) -> RouteRequest:
        """Reserved metadata keys (use_case, sla, critical, route) become fields; explicit kwargs win.

        Raises `InvalidRequest` when a reserved key has the wrong type or a message is not an object.
        """
        if not isinstance(metadata, Mapping | None):
            raise InvalidRequest("metadata must be an object")
        meta = {str(k): coerce(v) for k, v in (metadata or {}).items()}
        for key in RESERVED_METADATA:
            if key in meta and key not in kw:
                kw[key] = meta.pop(key)
            else:
                meta.pop(key, None)
        for key in ("use_case", "sla", "route"):
            if kw.get(key) is not None and not isinstance(kw[key], str):
                raise InvalidRequest(f"{key} must be a string, got {type(kw[key]).__name__}")
        if "critical" in kw:
            critical = coerce(kw["critical"])
            if not isinstance(critical, bool | int | None) or (
                isinstance(critical, int) and critical not in (0, 1)
            ):
                raise InvalidRequest("critical must be true or false")
            kw["critical"] = bool(critical)
        if not all(isinstance(m, Mapping) for m in messages):
            raise InvalidRequest("every message must be an object")
        return cls(messages=[dict(m) for m in messages], metadata=meta, **kw)


@dataclass(slots=True)
class Features:
    prompt: str
    system: str
    tokens: int
    context_tokens: int
    has_image: bool
    use_case: str | None
    sla: str
    critical: bool
    metadata: dict[str, Any]


def coerce(value: Any) -> Any:
    """'true'/'false'/'3'/'0.5' -> True/False/3/0.5; anything else unchanged."""
    if not isinstance(value, str):
        return value
    low = value.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    try:
        return int(low)
    except ValueError:
        pass
    try:
        return float(low)
    except ValueError:
        return value


def estimate_tokens(chars: int) -> int:
    return (chars + 3) // 4


def _text_of(content: Any) -> tuple[str, bool]:
    """Message content (a string or a list of parts) -> (text, has_image)."""
    if isinstance(content, str):
        return content, False
    if not isinstance(content, list):
        return ("" if content is None else str(content)), False
    texts: list[str] = []
    image = False
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind in ("image_url", "image", "input_image"):
            image = True
    return "\n".join(texts), image


def extract(request: RouteRequest, default_sla: str) -> Features:
    prompt = ""
    system_parts: list[str] = []
    total_chars = 0
    has_image = False
    for message in request.messages:
        text, image = _text_of(message.get("content"))
        has_image = has_image or image
        total_chars += len(text)
        role = message.get("role")
        if role in ("system", "developer"):
            system_parts.append(text)
        elif role == "user":
            prompt = text
    meta = request.metadata
    if has_image or meta.get("has_image") is True:
        has_image = True
        meta = {**meta, "has_image": True}
    return Features(
        prompt=prompt,
        system="\n".join(system_parts),
        tokens=estimate_tokens(len(prompt)),
        context_tokens=estimate_tokens(total_chars),
        has_image=has_image,
        use_case=request.use_case,
        sla=request.sla or default_sla,
        critical=request.critical,
        metadata=meta,
    )
