"""The body `POST /v1/chat/completions` accepts: an allow-list of OpenAI chat parameters, each bounded.

Job: turn raw request bytes into a validated `ChatCompletionRequest`, or a `ChatBodyError` (a 4xx
status, a short message naming the field). Nothing a client sends reaches LiteLLM unless it is a
field below, and the router forwards only `LLM_PARAMS` of it (plus the messages).

Choices:
- Unknown fields are refused (400 naming the field), not ignored: a silently dropped parameter
  changes an answer without telling anyone, and an allow-list is only as good as its refusals.
  Transport fields (`request.TRANSPORT_FIELDS`: api_base, api_key, base_url, headers,
  mock_response, timeout, fallbacks, custom_llm_provider, ...) get their own message, since a
  client sending them expects them to work.
- The bounds are constants (`LIMITS`), documented in the OpenAPI schema and SECURITY.md; they bound
  memory and provider spend per request (n x max_tokens), not what a model may do.
- Images are accepted only as `data:image/...` URLs: several providers' LiteLLM adapters (Bedrock,
  Gemini, ...) download an http(s) image URL from this server, which would let a client make the
  server fetch any address it can reach.
- Depth is checked on the parsed JSON without recursion, and `json.loads`'s own RecursionError is
  caught, so deeply nested input is a 400, never a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from serving.router.request import TRANSPORT_FIELDS


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """Per-request bounds of the chat endpoint (constants: the OpenAPI schema documents them)."""

    max_body_bytes: int = 4 * 1024 * 1024
    max_depth: int = 32
    max_messages: int = 256
    max_chars: int = 1_000_000  # all message text together (content, text parts, tool arguments)
    max_parts: int = 64  # content parts per message
    max_image_url_chars: int = 3 * 1024 * 1024  # a data: URL, base64
    max_n: int = 4
    max_tokens: int = 32_768
    max_stop: int = 4
    max_stop_chars: int = 256
    max_tools: int = 64
    max_metadata_keys: int = 32
    max_metadata_value_chars: int = 512
    max_name_chars: int = 256


LIMITS = ChatLimits()

LLM_PARAMS: frozenset[str] = frozenset(
    {
        "temperature",
        "top_p",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "user",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
    }
)
"""The parameters forwarded to the provider (through LiteLLM), besides `messages`."""

ROUTING_FIELDS = frozenset({"model", "messages", "metadata", "stream", "stream_options"})


class ChatBodyError(Exception):
    """A request the endpoint refuses: `status` (400 or 413), a message, the offending field."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


Name = Annotated[str, Field(max_length=LIMITS.max_name_chars)]


class TextPart(_Strict):
    type: Literal["text"]
    text: Annotated[str, Field(max_length=LIMITS.max_chars)]


class ImageUrl(_Strict):
    url: Annotated[str, Field(max_length=LIMITS.max_image_url_chars, description="a data:image/... URL")]
    detail: Literal["auto", "low", "high"] | None = None

    @field_validator("url")
    @classmethod
    def _data_url_only(cls, url: str) -> str:
        if not url.startswith("data:image/"):
            raise ValueError(
                "images must be sent inline as data:image/...;base64 URLs (the server fetches no URL)"
            )
        return url


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(_Strict):
    name: Name
    arguments: Annotated[str, Field(max_length=LIMITS.max_chars)]


class ToolCall(_Strict):
    id: Name
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: (
        Annotated[str, Field(max_length=LIMITS.max_chars)]
        | Annotated[list[ContentPart], Field(max_length=LIMITS.max_parts)]
        | None
    ) = None
    name: Name | None = None
    tool_calls: Annotated[list[ToolCall], Field(max_length=LIMITS.max_tools)] | None = None
    tool_call_id: Name | None = None

    @model_validator(mode="after")
    def _complete(self) -> ChatMessage:
        # What every provider requires of a message; LiteLLM's adapters fail on these before any
        # call (and such a failure must be the client's 400, not an upstream 502).
        if self.role == "assistant":
            if self.content is None and not self.tool_calls:
                raise ValueError("an assistant message needs content or tool_calls")
        elif self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    def chars(self) -> int:
        total = 0
        if isinstance(self.content, str):
            total += len(self.content)
        elif self.content is not None:
            total += sum(len(p.text) for p in self.content if isinstance(p, TextPart))
        for call in self.tool_calls or ():
            total += len(call.function.arguments)
        return total


class JsonSchemaFormat(_Strict):
    name: Annotated[str, Field(max_length=64)]
    description: Annotated[str, Field(max_length=4096)] | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDef(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: Annotated[str, Field(max_length=4096)] | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: Annotated[str, Field(max_length=64)]


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


MetadataValue = (
    Annotated[str, Field(max_length=LIMITS.max_metadata_value_chars)]
    | StrictBool
    | StrictInt
    | StrictFloat
    | None
)
MetadataKey = Annotated[str, Field(min_length=1, max_length=64)]


class StreamOptions(_Strict):
    """OpenAI's `stream_options`; only `include_usage` exists (a final chunk with token usage)."""

    include_usage: StrictBool | None = None


class ChatCompletionRequest(_Strict):
    """OpenAI chat-completion parameters the router supports; any other field is a 400."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        populate_by_name=True,
        json_schema_extra={"additionalProperties": False},
    )

    model: Annotated[str, Field(max_length=256)] | None = Field(
        default="auto",
        description="'auto' (the policy decides) or a route: a policy model, tier, cascade or rule id",
    )
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=LIMITS.max_messages)] = Field(
        description=f"1 to {LIMITS.max_messages} messages, {LIMITS.max_chars} characters of text in all"
    )
    metadata: (
        Annotated[dict[MetadataKey, MetadataValue], Field(max_length=LIMITS.max_metadata_keys)] | None
    ) = Field(
        default=None,
        description="routing hints (use_case, sla, critical, route, and flags rules match such as "
        "requires_code_execution): scalar values only; never sent to a provider",
    )
    stream: StrictBool | None = Field(
        default=None,
        description="true: server-sent events in OpenAI's chunk format, ending with `data: [DONE]`",
    )
    stream_options: StreamOptions | None = Field(
        default=None, description="with stream: true only; {include_usage: true} adds a final usage chunk"
    )
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=LIMITS.max_n)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=LIMITS.max_tokens)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=LIMITS.max_tokens)] | None = None
    stop: (
        Annotated[str, Field(max_length=LIMITS.max_stop_chars)]
        | Annotated[
            list[Annotated[str, Field(max_length=LIMITS.max_stop_chars)]], Field(max_length=LIMITS.max_stop)
        ]
        | None
    ) = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None
    user: Annotated[str, Field(max_length=LIMITS.max_name_chars)] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: (
        Annotated[
            dict[Annotated[str, Field(pattern=r"^[0-9]{1,10}$")], Annotated[float, Field(ge=-100, le=100)]],
            Field(max_length=300),
        ]
        | None
    ) = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[Tool], Field(max_length=LIMITS.max_tools)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None

    @field_validator("metadata")
    @classmethod
    def _routing_hints_typed(cls, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        for key in ("use_case", "sla", "route"):
            if meta and meta.get(key) is not None and not isinstance(meta[key], str):
                raise ValueError(f"metadata.{key} must be a string")
        return meta

    @model_validator(mode="after")
    def _bounded_text(self) -> ChatCompletionRequest:
        total = sum(m.chars() for m in self.messages)
        if total > LIMITS.max_chars:
            raise ValueError(f"messages hold {total} characters of text; at most {LIMITS.max_chars}")
        return self

    def llm_params(self) -> dict[str, Any]:
        """The allow-listed parameters that were set, as plain JSON for LiteLLM."""
        return self.model_dump(include=set(LLM_PARAMS), exclude_none=True, by_alias=True)

    def message_dicts(self) -> list[dict[str, Any]]:
        return [m.model_dump(exclude_none=True, by_alias=True) for m in self.messages]


ALLOWED_FIELDS: frozenset[str] = frozenset(ChatCompletionRequest.model_fields)


def parse_chat_body(raw: bytes) -> ChatCompletionRequest:
    """Raw bytes -> a validated request, or `ChatBodyError` (413 too large, 400 anything else)."""
    if len(raw) > LIMITS.max_body_bytes:
        raise ChatBodyError(413, f"request body larger than {LIMITS.max_body_bytes} bytes")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ChatBodyError(400, f"body nests deeper than {LIMITS.max_depth} levels") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise ChatBodyError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ChatBodyError(400, "body must be a JSON object")
    if json_depth(body) > LIMITS.max_depth:
        raise ChatBodyError(400, f"body nests deeper than {LIMITS.max_depth} levels")
    refused = sorted(k for k in body if k in TRANSPORT_FIELDS)
    if refused:
        raise ChatBodyError(
            400,
            f"field {refused[0]!r} is not accepted: endpoints, credentials, headers, timeouts, retries, "
            "fallbacks and mock answers are set by the server's policy, never by a request",
            refused[0],
        )
    unknown = sorted(k for k in body if k not in ALLOWED_FIELDS)
    if unknown:
        raise ChatBodyError(
            400,
            f"unknown field {unknown[0]!r}; accepted fields: {', '.join(sorted(ALLOWED_FIELDS))}",
            unknown[0],
        )
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise ChatBodyError(400, "stream_options is only allowed with stream: true", "stream_options")
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise ChatBodyError(400, *_describe(exc)) from None


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, `[]` is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > LIMITS.max_depth:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def _describe(exc: ValidationError, limit: int = 3) -> tuple[str, str | None]:
    """A short message from pydantic's errors: where and what, never the offending value."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts: list[str] = []
    for err in errors[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc or 'body'}: {msg}")
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    first = errors[0].get("loc", ()) if errors else ()
    return "invalid request: " + "; ".join(parts) + more, ".".join(str(p) for p in first) or None


def openapi_schema() -> dict[str, Any]:
    """The request body's JSON Schema with every `$ref` inlined (the models are not recursive), so
    it can sit in a route's `openapi_extra` without registering components."""
    schema = ChatCompletionRequest.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = inline(defs[ref.split("/")[-1]])
                rest = {k: inline(v) for k, v in node.items() if k != "$ref"}
                return {**target, **rest}
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result
