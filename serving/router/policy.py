"""The routing policy: one YAML file, validated on load, with errors that name the bad field.

Job: `load_policy` / `parse_policy` read YAML into the schema (`serving.router.policy_schema`),
run the cross-reference checks (`policy_checks`) and report every problem at once, one line
each, as `path (line N): message` (`policy_errors`). The schema's names are re-exported here:
`from serving.router.policy import Policy, TIERS, ...` is the public import.

Trade-offs:
- Prices and context windows default to LiteLLM's bundled cost map, so a model the map does not
  know must carry `price` and `context_window` in the policy; the loader refuses it otherwise,
  because a budget that cannot price a model cannot enforce anything.
- Shapes first, references second: a reference check never runs on a malformed policy, so its
  messages can assume the shapes are right.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from serving.router.policy_checks import check_references
from serving.router.policy_errors import PolicyError, format_pydantic, with_line
from serving.router.policy_schema import (
    AUTO_ROUTE,
    CAPABILITIES,
    ROUTE_NAME,
    TIERS,
    Budget,
    Capability,
    Cascade,
    CascadeAlarm,
    ClassifierSettings,
    Failover,
    GateSettings,
    LatencySla,
    LearnedGate,
    Match,
    ModelFailover,
    ModelSpec,
    Policy,
    Price,
    Rule,
    SlaClass,
    Target,
    Tier,
)

__all__ = [
    "AUTO_ROUTE",
    "CAPABILITIES",
    "ROUTE_NAME",
    "TIERS",
    "Budget",
    "Capability",
    "Cascade",
    "CascadeAlarm",
    "ClassifierSettings",
    "Failover",
    "GateSettings",
    "LatencySla",
    "LearnedGate",
    "Match",
    "ModelFailover",
    "ModelSpec",
    "Policy",
    "PolicyError",
    "Price",
    "Rule",
    "SlaClass",
    "Target",
    "Tier",
    "load_policy",
    "parse_policy",
]


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raise PolicyError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<string>") -> Policy:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise PolicyError(source, [f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from exc
    if not isinstance(data, dict):
        raise PolicyError(source, ["the policy must be a YAML mapping with at least models and default"])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, [format_pydantic(err, root) for err in exc.errors()]) from exc
    problems = check_references(policy)
    if problems:
        raise PolicyError(source, [with_line(loc, msg, root) for loc, msg in problems])
    return policy
