"""Policy errors: one `PolicyError` listing every problem, each as `path (line N): message`.

Job: turn pydantic's validation errors and the cross-reference problems into lines that name the
field and its line in the YAML file, e.g. `models.haiku.tier (line 7): expected one of simple,
complex, reasoning`; an unknown key gets the allowed field names.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel

from serving.router.policy_checks import suggest
from serving.router.policy_schema import Policy


class PolicyError(ValueError):
    """A policy that cannot be used; `errors` holds one `path: message` line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"invalid policy {source}: {len(errors)} problem(s)\n{lines}")


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def _line_of(loc: tuple[str | int, ...], root: yaml.Node | None) -> int | None:
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def with_line(loc: tuple[str | int, ...], msg: str, root: yaml.Node | None) -> str:
    line = _line_of(loc, root)
    return f"{_dotted(loc)}{f' (line {line})' if line else ''}: {msg}"


def format_pydantic(err: Any, root: yaml.Node | None) -> str:
    loc = tuple(p for p in err.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-")))
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", ""))) or [str(ctx.get("expected"))]
        msg = f"expected one of {', '.join(expected)} (got {err.get('input')!r})"
    elif kind == "missing":
        msg = "required field is missing"
    elif kind == "extra_forbidden":
        allowed = _allowed_fields(loc[:-1])
        hint = suggest(str(loc[-1]), allowed) if allowed else ""
        listing = " (allowed: " + ", ".join(sorted(allowed)) + ")" if allowed else ""
        msg = "unknown field" + (hint or listing)
    elif kind == "value_error":
        msg = str(ctx.get("error") or err.get("msg", "")).removeprefix("Value error, ")
    else:
        raw = str(err.get("msg", ""))
        msg = raw[:1].lower() + raw[1:] + (f" (got {err.get('input')!r})" if "input" in err else "")
    return with_line(loc, msg, root)


def _allowed_fields(loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model at `loc`, walking Policy's annotations (dict keys / list indexes skipped)."""
    annotation: Any = Policy
    parts = list(loc)
    while True:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not parts:
                return list(annotation.model_fields)
            field = annotation.model_fields.get(str(parts.pop(0)))
            if field is None:
                return []
            annotation = field.annotation
        elif origin is dict and parts:
            parts.pop(0)
            annotation = get_args(annotation)[1]
        elif origin is list and parts:
            parts.pop(0)
            annotation = get_args(annotation)[0]
        else:
            return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / X | None -> X."""
    origin = get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
        if len(args) == 1:
            return args[0]
    return annotation
