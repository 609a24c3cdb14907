"""Deterministic response checks: the always-on, microsecond part of the gate.

Job: given a prompt and a model's response (plus what the provider said about it), list every
cheap, certain reason the response is not good enough to return: empty, too short for the request,
a refusal or deflection, cut off by the token limit, an unclosed code fence or unbalanced
brackets in code, invalid JSON or a JSON Schema violation when JSON was asked for, low mean token
log-probability. Each failure is a stable reason code (`REASONS`); the router's cascade and
`/v1/gate` rely on these strings.

Trade-offs:
- Precision over recall: a false "bad" here costs a stage-2 call and short-circuits the learned
  gate, so each check only fires on signals that are nearly always right. Softer problems
  (off-instruction, mediocre answers, prose cut mid-sentence) are the learned gate's job.
- The default minimum length depends on the request (`default_min_chars`): "Is Paris in France?"
  or "Answer with one word" accept "Yes"; an open request ("Write a cover letter...") does not
  accept ten characters.
- Brackets are checked only where they must balance (fenced code blocks, requested JSON), and only
  for surplus OPENERS, the signature of truncated code; prose such as "1) ... 2) ..." is left alone.
- JSON wrapped in one Markdown fence (```json ... ```) is accepted as JSON: most chat models do it
  and every client strips it. Schemas are compiled once per distinct schema (cached by its
  canonical JSON text, bounded LRU).
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from serving.gate.refusals import refusal_match

EMPTY = "empty"
TOO_SHORT = "too_short"
REFUSAL = "refusal"
TRUNCATED_LENGTH = "truncated_length"
CONTENT_FILTER = "content_filter"
UNCLOSED_CODE_FENCE = "unclosed_code_fence"
UNBALANCED_BRACKETS = "unbalanced_brackets"
INVALID_JSON = "invalid_json"
SCHEMA_VIOLATION = "schema_violation"
LOW_LOGPROB = "low_logprob"

REASONS: tuple[str, ...] = (
    EMPTY,
    TOO_SHORT,
    REFUSAL,
    TRUNCATED_LENGTH,
    CONTENT_FILTER,
    UNCLOSED_CODE_FENCE,
    UNBALANCED_BRACKETS,
    INVALID_JSON,
    SCHEMA_VIOLATION,
    LOW_LOGPROB,
)
"""Every reason code the deterministic checks can return, in the order they are reported."""

DEFAULT_MIN_MEAN_LOGPROB = -2.5
"""Mean token log-probability below this fails `low_logprob` (fluent text sits around -0.2..-1.2)."""

OPEN_MIN_CHARS = 40
"""Default minimum length for an open-ended request."""

SHORT_ANSWER_MIN_CHARS = 1
"""Default minimum when the request asks for (or naturally has) a one-word answer."""

SCHEMA_CACHE_SIZE = 256


class InvalidSchemaError(ValueError):
    """The json_schema passed to `check_response` is not a valid JSON Schema."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Outcome of the deterministic checks: ok iff no reason fired; reasons in `REASONS` order."""

    ok: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reasons": list(self.reasons)}


# --- request-dependent minimum length -------------------------------------------------------------

_SHORT_ANSWER_RE = re.compile(
    "|".join(
        (
            r"\b(?:one|single|1)[- ]word\b",
            r"\byes or no\b",
            r"\byes/no\b",
            r"\btrue or false\b",
            r"\bonly (?:the|a|one|with) "
            r"(?:number|word|answer|letter|name|label|digit|option|category|result|value)",
            r"\b(?:answer|respond|reply) (?:only )?with (?:a|one|the|only|just)\b",
            r"\bjust the (?:answer|number|name|word|result)\b",
            r"\b(?:choose|pick|select) (?:one|the correct|the best|from)\b",
            r"\bmultiple[- ]choice\b",
            r"\b(?:positive|negative) or (?:negative|positive|neutral)\b",
            r"\bclassify\b",
            r"\boutput only\b",
            r"^\s*(?:q:|question:)",
            r"^\s*\(?[a-e][\).]\s.*\n\s*\(?[a-e][\).]\s",  # lettered options: a multiple-choice question
            r"\b(?:slogan|title|name|headline|hashtag|tagline|motto|nickname|synonym|antonym)s?"
            r" (?:for|of|that)\b",
        )
    ),
    re.MULTILINE,
)
_CLOSED_QUESTION_RE = re.compile(
    r"\s*(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|who|when|where|which"
    r"|what(?: is| was|'s| are| year| day| color| colour)?|how (?:many|much|old|far|long|tall|big))\b"
    r"(?:[^\n]{0,160}\?\s*$|[^\n?]{0,40}$)"
)
_PROMPT_EDGE_CHARS = 400


def default_min_chars(prompt: str) -> int:
    """Minimum response length (characters, stripped) this prompt can be fairly answered in.

    1 for closed or explicitly short-answer requests ("Is X...?", "Who wrote...?", "What color is the
    sky", "Answer with one word", "yes or no", "classify...", lettered options, "a slogan for...");
    `OPEN_MIN_CHARS` otherwise. Only the first and last
    `_PROMPT_EDGE_CHARS` characters are read (instructions sit at the ends of long prompts).
    """
    p = prompt.strip().lower()
    if len(p) > 2 * _PROMPT_EDGE_CHARS:
        p = p[:_PROMPT_EDGE_CHARS] + "\n" + p[-_PROMPT_EDGE_CHARS:]
    if _SHORT_ANSWER_RE.search(p) is not None:
        return SHORT_ANSWER_MIN_CHARS
    if len(p) <= 200 and _CLOSED_QUESTION_RE.match(p) is not None:
        return SHORT_ANSWER_MIN_CHARS
    return OPEN_MIN_CHARS


# --- code fences, brackets, JSON ------------------------------------------------------------------

_JSON_FENCE_RE = re.compile(r"\A\s*```[ \t]*(?:json|JSON|json5)?[ \t]*\n(.*?)\n?[ \t]*```\s*\Z", re.DOTALL)
_PAIRS = (("(", ")"), ("[", "]"), ("{", "}"))


def _fence_starts(text: str, marker: str) -> list[int]:
    """Offsets of fence markers that open a line (after optional indentation); str.find is C-fast."""
    out: list[int] = []
    i = text.find(marker)
    while i != -1:
        line_start = text.rfind("\n", 0, i) + 1
        if not text[line_start:i].strip(" \t"):
            out.append(i)
        end = i + len(marker)
        while text.startswith(marker[0], end):  # a longer run (````) is one fence
            end += 1
        i = text.find(marker, end)
    return out


def _fence_problem(text: str, check_brackets: bool) -> str | None:
    """UNCLOSED_CODE_FENCE, UNBALANCED_BRACKETS (surplus openers inside a fenced block) or None."""
    for marker in ("```", "~~~"):
        if marker not in text:
            continue
        starts = _fence_starts(text, marker)
        if len(starts) % 2 == 1:
            return UNCLOSED_CODE_FENCE
        if check_brackets:
            for k in range(0, len(starts), 2):
                body_start = text.find("\n", starts[k], starts[k + 1])
                if body_start != -1 and _surplus_openers(text[body_start : starts[k + 1]]):
                    return UNBALANCED_BRACKETS
    return None


def _surplus_openers(code: str) -> bool:
    return any(code.count(o) > code.count(c) for o, c in _PAIRS)


def _json_text(response: str) -> str:
    m = _JSON_FENCE_RE.match(response)
    return m.group(1) if m is not None else response


class _ValidatorCache:
    """Compiled jsonschema validators keyed by the schema's canonical JSON text (bounded LRU)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = Lock()
        self._by_id: dict[int, tuple[dict[str, Any], Any]] = {}

    def get(self, schema: dict[str, Any]) -> Any:
        # Fast path: the same dict object as last time (routers pass one schema object per route).
        hit = self._by_id.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)
        with self._lock:
            validator = self._items.get(key)
            if validator is not None:
                self._items.move_to_end(key)
            else:
                validator = _compile_schema(schema)
                self._items[key] = validator
                if len(self._items) > self._size:
                    self._items.popitem(last=False)
            if len(self._by_id) >= self._size:
                self._by_id.clear()
            self._by_id[id(schema)] = (schema, validator)
        return validator


def _compile_schema(schema: dict[str, Any]) -> Any:
    import jsonschema  # runtime dep; imported lazily so checks without schemas never pay for it

    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidSchemaError(f"json_schema is not a valid JSON Schema: {exc.message}") from exc
    return cls(schema)


_VALIDATORS = _ValidatorCache(SCHEMA_CACHE_SIZE)


def validate_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidSchemaError if `schema` is not a valid JSON Schema (compiles and caches it)."""
    _VALIDATORS.get(schema)


# --- the checks -----------------------------------------------------------------------------------


def check_response(
    prompt: str,
    response: str,
    *,
    expect_json: bool = False,
    json_schema: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    mean_logprob: float | None = None,
    min_chars: int | None = None,
    min_mean_logprob: float = DEFAULT_MIN_MEAN_LOGPROB,
    check_refusal: bool = True,
) -> CheckResult:
    """Run every deterministic check; see the module docstring for what each one means.

    Args:
        prompt: the user's request (used for the request-dependent minimum length).
        response: the model's answer text.
        expect_json: the caller asked for JSON; `json_schema` implies it.
        json_schema: a JSON Schema the parsed JSON must satisfy (InvalidSchemaError if it is invalid).
        finish_reason: the provider's finish reason; "length" -> truncated_length,
            "content_filter" -> content_filter.
        mean_logprob: mean token log-probability if the provider sent log-probs.
        min_chars: minimum stripped length; None -> `default_min_chars(prompt)`; 0 disables.
        min_mean_logprob: threshold for `low_logprob`.
        check_refusal: False to skip the refusal check (e.g. a route where refusing is expected).
    """
    text = response.strip()
    if not text:
        reasons = [EMPTY]
        if finish_reason == "content_filter":
            reasons.append(CONTENT_FILTER)
        elif finish_reason == "length":
            reasons.append(TRUNCATED_LENGTH)
        return CheckResult(False, reasons)

    reasons = []
    want_json = expect_json or json_schema is not None
    if not want_json:
        if min_chars is not None:
            floor = min_chars
        elif len(text) < OPEN_MIN_CHARS:  # the default is never above OPEN_MIN_CHARS: skip the prompt scan
            floor = default_min_chars(prompt)
        else:
            floor = 0
        if len(text) < floor:
            reasons.append(TOO_SHORT)
    if check_refusal and refusal_match(text) is not None:
        reasons.append(REFUSAL)
    if finish_reason == "length":
        reasons.append(TRUNCATED_LENGTH)
    elif finish_reason == "content_filter":
        reasons.append(CONTENT_FILTER)

    fence = _fence_problem(text, check_brackets=not want_json)
    if fence is not None:
        reasons.append(fence)

    if want_json:
        payload = _json_text(text)
        try:
            value = json.loads(payload)
        except ValueError:
            if _surplus_openers(payload):
                reasons.append(UNBALANCED_BRACKETS)
            reasons.append(INVALID_JSON)
        else:
            if json_schema is not None:
                validator = _VALIDATORS.get(json_schema)
                if not validator.is_valid(value):
                    reasons.append(SCHEMA_VIOLATION)

    if mean_logprob is not None and not math.isnan(mean_logprob) and mean_logprob < min_mean_logprob:
        reasons.append(LOW_LOGPROB)

    if len(reasons) > 1:
        order = {r: i for i, r in enumerate(REASONS)}
        reasons.sort(key=order.__getitem__)
    return CheckResult(not reasons, reasons)
