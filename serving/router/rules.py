"""Ordered rules, compiled once, evaluated first-match-wins in about a microsecond each.

Job: turn the policy's `rules` into `CompiledRule`s whose `matches(features)` is a handful of
attribute compares and, at most, two precompiled regex searches (RE2, linear time, on at most
4096 characters from each end of the text: `serving.router.regex`). `when` conditions are ANDed; a
non-empty `any` list adds "and at least one of these".

Trade-off: conditions are fixed fields (token bounds, context bounds, use case, system-prompt
regex, latest-message regex, metadata equality, SLA class, critical) rather than an expression
language: policies stay reviewable and validation can name the bad field, at the price of
expressiveness (no arithmetic, no negation except `metadata: {flag: false}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serving.router.policy import Match, Rule, Target
from serving.router.regex import RuleRegex
from serving.router.request import Features


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    tokens_lt: int | None
    tokens_gte: int | None
    context_tokens_gt: int | None
    context_tokens_lte: int | None
    use_cases: frozenset[str] | None
    system_re: RuleRegex | None
    prompt_re: RuleRegex | None
    metadata: tuple[tuple[str, Any], ...]
    slas: frozenset[str] | None
    critical: bool | None

    @classmethod
    def build(cls, m: Match) -> CompiledMatch:
        def as_set(v: str | list[str] | None) -> frozenset[str] | None:
            if v is None:
                return None
            return frozenset([v] if isinstance(v, str) else v)

        return cls(
            tokens_lt=m.tokens_lt,
            tokens_gte=m.tokens_gte,
            context_tokens_gt=m.context_tokens_gt,
            context_tokens_lte=m.context_tokens_lte,
            use_cases=as_set(m.use_case),
            system_re=RuleRegex(m.system_prompt_regex) if m.system_prompt_regex else None,
            prompt_re=RuleRegex(m.prompt_regex) if m.prompt_regex else None,
            metadata=tuple(m.metadata.items()),
            slas=as_set(m.sla),
            critical=m.critical,
        )

    def matches(self, f: Features) -> bool:
        if self.tokens_lt is not None and not f.tokens < self.tokens_lt:
            return False
        if self.tokens_gte is not None and not f.tokens >= self.tokens_gte:
            return False
        if self.context_tokens_gt is not None and not f.context_tokens > self.context_tokens_gt:
            return False
        if self.context_tokens_lte is not None and not f.context_tokens <= self.context_tokens_lte:
            return False
        if self.use_cases is not None and f.use_case not in self.use_cases:
            return False
        if self.slas is not None and f.sla not in self.slas:
            return False
        if self.critical is not None and f.critical is not self.critical:
            return False
        for key, expected in self.metadata:
            value = f.metadata.get(key)
            if expected is False:
                if value not in (None, False):
                    return False
            elif value != expected:
                return False
        if self.system_re is not None and not self.system_re.search(f.system):
            return False
        return not (self.prompt_re is not None and not self.prompt_re.search(f.prompt))


@dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int
    id: str
    when: CompiledMatch
    any: tuple[CompiledMatch, ...]
    target: Target
    require: frozenset[str]
    target_kind: str  # model | tier | cascade | classifier (precomputed: the decision path reads these)
    target_value: str
    target_desc: str

    def matches(self, f: Features) -> bool:
        if not self.when.matches(f):
            return False
        if self.any:
            return any(m.matches(f) for m in self.any)
        return True


def compile_rules(rules: list[Rule]) -> tuple[CompiledRule, ...]:
    return tuple(
        CompiledRule(
            index=i,
            id=r.id,
            when=CompiledMatch.build(r.when),
            any=tuple(CompiledMatch.build(m) for m in r.any),
            target=r.route,
            require=frozenset(r.require),
            target_kind=r.route.kind,
            target_value=r.route.model or r.route.tier or r.route.cascade or "",
            target_desc=r.route.describe(),
        )
        for i, r in enumerate(rules)
    )
