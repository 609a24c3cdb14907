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

Caller-supplied JSON Schemas are untrusted input (`/v1/gate` takes them from any client):
- No reference is ever fetched: the validator's `referencing.Registry` refuses every retrieval,
  and a `$ref` that is not a local `#...` pointer is refused up front (`InvalidSchemaError`).
- Size and nesting are capped (`MAX_SCHEMA_BYTES`, `MAX_SCHEMA_DEPTH`; the service passes its
  settings), and a schema whose references loop without consuming the instance (`{"$ref": "#"}`)
  is refused when it is compiled (a probe validation hits the recursion guard).
- `pattern` and `patternProperties` (and `additionalProperties`, which consults them) run on RE2,
  a linear-time engine: no catastrophic backtracking can stall the process. A pattern RE2 cannot
  compile (look-around, back-references) is refused; so is `unevaluatedProperties` next to
  `patternProperties`, whose evaluation would fall back to Python's backtracking `re`.
- A response nested deeper than `MAX_JSON_DEPTH` fails `invalid_json`; a validation that still
  recurses too deep fails `schema_violation`. Neither ever raises.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from threading import Lock
from typing import Any

from serving.gate.refusals import check_refusal_match
from serving.model.textprep import clean_text

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

MAX_SCHEMA_BYTES = 64 * 1024
"""Largest accepted json_schema (compact JSON encoding); `ServeSettings.gate_schema_max_bytes`."""

MAX_SCHEMA_DEPTH = 32
"""Deepest accepted json_schema nesting (objects and arrays); `ServeSettings.gate_schema_max_depth`."""

MAX_JSON_DEPTH = 64
"""Deepest response JSON the schema check validates; deeper fails `invalid_json`."""

_RE2_MAX_MEM = 8 << 20


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
_OPEN_QUESTION_RE = re.compile(
    r"\s*(?:hi|hello|hey|best way|suppose|if i|how (?:do|does|can|could|would|should|to|might|is|are)|why"
    r"|explain|describe|can you|could you|would you|will you|please|help|tell me|write|give|list"
    r"|what are (?:some|the best|good|the pros|the benefits|ways)|what (?:should|can|would)|i |i'm|my )\b"
)
_ONE_LINE_QUESTION_CHARS = 150
_PROMPT_EDGE_CHARS = 400


def default_min_chars(prompt: str) -> int:
    """Minimum response length (characters, stripped) this prompt can be fairly answered in.

    1 for closed or explicitly short-answer requests ("Is X...?", "Who wrote...?", "What color is the
    sky", "Answer with one word", "yes or no", "classify...", lettered options, "a slogan for..."), and
    for any one-line question of <= 150 characters that is not an open one ("Winner of the women's
    royal rumble match?" yes; "How do I...?", "Why...?", "Can you explain...?", "Hi, ...?" no: the
    open-question openers were tuned on the gate data's train split, where this rule stops 92 of 121
    false `too_short` calls on correct short answers and gives up 9 of 233 caught truncations);
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
    one_line = "\n" not in p and len(p) <= _ONE_LINE_QUESTION_CHARS
    if one_line and p.endswith("?") and _OPEN_QUESTION_RE.match(p) is None:
        return SHORT_ANSWER_MIN_CHARS
    return OPEN_MIN_CHARS


# A verb asking for literal text, then (optionally) a few filler words, right before the quote.
_LITERAL_REQUEST_RE = re.compile(
    r"\b(?:write|say|repeat|print|type|output|return|reply|respond|answer|echo|copy|spell|send)"
    r"(?:\s+(?:only|just|exactly|back|out|down|the|a|word|words|text|phrase|string|sentence|following"
    r"|with|me|this|it|in|response|reply))*\s*[:,]?\s*\Z"
)
_QUOTED_RE = re.compile(
    "\"([^\"\\n]{1,200})\"|\u201c([^\u201d\\n]{1,200})\u201d|`([^`\\n]{1,200})`|'([^'\\n]{1,200})'"
)
_ECHO_STRIP = " \t\n\"'`.!\u201c\u201d\u2018\u2019"


def echoes_requested_text(prompt: str, response: str) -> bool:
    """True when the prompt asks for a literal, quoted text (a verb such as write/say/repeat/reply right
    before the quote: `Write "Test"`, `Reply only with 'OK'`, `Say exactly \u201chello\u201d`; not `Write
    a poem about "love"`) and the response is exactly that text (case, surrounding quotes and a final full
    stop aside): a verbatim request answered verbatim is not too short, however short. Reads the same
    prompt edges as `default_min_chars`; only called on responses shorter than the floor."""
    want = response.strip(_ECHO_STRIP).casefold()
    if not want:
        return False
    p = prompt.strip()
    if len(p) > 2 * _PROMPT_EDGE_CHARS:
        p = p[:_PROMPT_EDGE_CHARS] + "\n" + p[-_PROMPT_EDGE_CHARS:]
    for m in _QUOTED_RE.finditer(p):
        quoted = next(g for g in m.groups() if g is not None)
        if quoted.strip(_ECHO_STRIP).casefold() != want:
            continue
        if _LITERAL_REQUEST_RE.search(p[max(0, m.start() - 60) : m.start()].lower()) is not None:
            return True
    return False


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


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value (0 for a scalar), counted iteratively; stops early past `limit`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _re2_options() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False
    options.max_mem = _RE2_MAX_MEM
    return options


@lru_cache(maxsize=1024)
def _re2(pattern: str) -> Any:
    """A compiled RE2 pattern; InvalidSchemaError when RE2 cannot compile it."""
    import re2

    try:
        return re2.compile(pattern, _re2_options())
    except (re2.error, UnicodeError, TypeError, ValueError) as exc:
        raise InvalidSchemaError(
            f"pattern {pattern[:60]!r} is not supported by the linear-time regex engine (RE2: "
            f"{exc!s:.80}); look-around and back-references are not available"
        ) from None


def _re2_search(pattern: str, text: str) -> bool:
    return _re2(pattern).search(clean_text(text)) is not None


def _re2_keywords() -> dict[str, Any]:
    """jsonschema keyword functions that evaluate regexes with RE2 instead of Python's `re`."""
    from jsonschema import ValidationError

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not _re2_search(patrn, instance):
            yield ValidationError(f"the string does not match {patrn[:60]!r}")

    def pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in patterns.items():
            for k, v in instance.items():
                if _re2_search(patrn, k):
                    yield from validator.descend(v, subschema, path=k, schema_path=patrn)

    def additional_properties(validator: Any, ap: Any, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        properties = schema.get("properties", {})
        patterns = list(schema.get("patternProperties", {}))
        extras = [k for k in instance if k not in properties and not any(_re2_search(p, k) for p in patterns)]
        if validator.is_type(ap, "object"):
            for extra in extras:
                yield from validator.descend(instance[extra], ap, path=extra)
        elif not ap and extras:
            yield ValidationError(f"additional properties are not allowed ({len(extras)} unexpected)")

    return {
        "pattern": pattern,
        "patternProperties": pattern_properties,
        "additionalProperties": additional_properties,
    }


def _walk_schema(schema: Any) -> Any:
    """Every dict inside a schema (iteratively)."""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _refuse_retrieval(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


def _compile_schema(schema: dict[str, Any]) -> Any:
    import jsonschema  # runtime dep; imported lazily so checks without schemas never pay for it
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    patterns: list[str] = []
    has_unevaluated = has_pattern_properties = False
    for node in _walk_schema(schema):
        for key in ("$ref", "$dynamicRef", "$recursiveRef"):
            ref = node.get(key)
            if isinstance(ref, str) and not ref.startswith("#"):
                raise InvalidSchemaError(
                    f"{key} {ref[:80]!r} is not a local '#...' reference; remote references are not fetched"
                )
        if isinstance(node.get("pattern"), str):
            patterns.append(node["pattern"])
        if isinstance(node.get("patternProperties"), dict):
            has_pattern_properties = True
            patterns.extend(str(p) for p in node["patternProperties"])
        has_unevaluated = has_unevaluated or "unevaluatedProperties" in node
    if has_unevaluated and has_pattern_properties:
        raise InvalidSchemaError("unevaluatedProperties together with patternProperties is not supported")
    for patrn in patterns:
        _re2(patrn)

    base = jsonschema.validators.validator_for(schema)
    try:
        base.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidSchemaError(f"json_schema is not a valid JSON Schema: {exc.message}") from exc
    except RecursionError:
        raise InvalidSchemaError("json_schema is nested too deeply") from None
    cls = jsonschema.validators.extend(base, _re2_keywords())
    validator = cls(schema, registry=Registry(retrieve=_refuse_retrieval))  # type: ignore[call-arg]
    probes: tuple[Any, ...] = (None, {}, [], "", 0)
    for probe in probes:  # a reference loop recurses on (nearly) any instance
        try:
            validator.is_valid(probe)
        except RecursionError:
            raise InvalidSchemaError(
                "json_schema references itself without end (e.g. {'$ref': '#'})"
            ) from None
        except Unresolvable as exc:
            raise InvalidSchemaError(f"json_schema has an unresolvable reference ({exc!s:.80})") from None
    return validator


_VALIDATORS = _ValidatorCache(SCHEMA_CACHE_SIZE)


def validate_schema(
    schema: dict[str, Any], *, max_bytes: int = MAX_SCHEMA_BYTES, max_depth: int = MAX_SCHEMA_DEPTH
) -> None:
    """Raise InvalidSchemaError if `schema` is not a valid, safe JSON Schema within the size and
    depth limits (compiles and caches it)."""
    if not isinstance(schema, dict):
        raise InvalidSchemaError("json_schema must be a JSON object")
    depth = json_depth(schema, max_depth)
    if depth > max_depth:
        raise InvalidSchemaError(f"json_schema is nested deeper than {max_depth} levels")
    size = len(json.dumps(schema, separators=(",", ":"), default=str))
    if size > max_bytes:
        raise InvalidSchemaError(f"json_schema is {size} bytes, more than {max_bytes}")
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
        if len(text) < floor and not echoes_requested_text(prompt, text):
            reasons.append(TOO_SHORT)
    if check_refusal and check_refusal_match(text) is not None:
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
            if json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
                raise ValueError("nested too deeply")
        except (ValueError, RecursionError):
            if _surplus_openers(payload):
                reasons.append(UNBALANCED_BRACKETS)
            reasons.append(INVALID_JSON)
        else:
            if json_schema is not None:
                if (
                    not isinstance(json_schema, dict)
                    or json_depth(json_schema, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH
                ):
                    raise InvalidSchemaError(f"json_schema is nested deeper than {MAX_SCHEMA_DEPTH} levels")
                validator = _VALIDATORS.get(json_schema)
                try:
                    valid = validator.is_valid(value)
                except RecursionError:  # a reference loop the compile-time probes did not reach
                    valid = False
                except Exception as exc:  # e.g. an unresolvable reference met only on this instance
                    if type(exc).__module__.split(".")[0] not in ("referencing", "jsonschema"):
                        raise
                    valid = False
                if not valid:
                    reasons.append(SCHEMA_VIOLATION)

    if mean_logprob is not None and not math.isnan(mean_logprob) and mean_logprob < min_mean_logprob:
        reasons.append(LOW_LOGPROB)

    if len(reasons) > 1:
        order = {r: i for i, r in enumerate(REASONS)}
        reasons.sort(key=order.__getitem__)
    return CheckResult(not reasons, reasons)
