"""Promotion: move alias `champion` to the `candidate` version only if no check fails.

Key metrics are compared with an absolute tolerance in each metric's own direction (losses and ECE
lower is better); `extra_checks` callables (e.g. evals' eval-set checks) add rows; any row that is
not ok refuses the move unless forced, which is recorded as a version tag.

Stored test metrics are only comparable when both versions were trained on the same data (equal
`dataset_digest` tags): each was measured on its own test split. When the digests differ (or one is
unknown) the stored rows are shown for information and `same_rows_check` must score both versions on
the champion's test rows and on the candidate's; without it the promotion is refused. `rollback`
moves `champion` back (to the version it was promoted from, or any version) and records it like a
forced promotion.

Held-out routing value: when both versions logged `loso_apgr_mean` (`tierroute train`'s mean
leave-one-source-out APGR of the routing head), the candidate's must not be lower than the champion's by
more than the same tolerance. It is measured on sources the head did not see, so it decides even when
the versions' test splits differ; a version without it (an older champion) is not compared.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.registry.read import VersionInfo, _version_info
from pipelines.registry.store import (
    CANDIDATE_ALIAS,
    CHAMPION_ALIAS,
    DEFAULT_MODEL_NAME,
    DEFAULT_TOLERANCE,
    KEY_METRICS,
    LOWER_IS_BETTER_SUFFIXES,
    MAX_TAG_VALUE,
    RegistryError,
    _aliases,
    _connect,
    _errors,
    _get_version,
    _short,
)


@dataclass(frozen=True)
class ComparisonRow:
    """One checked number: champion vs candidate. `ok` False refuses promotion (unless forced)."""

    metric: str
    champion: float | None
    candidate: float | None
    delta: float | None
    ok: bool
    note: str = ""


@dataclass(frozen=True)
class PromotionContext:
    """What an extra promotion check gets: the two versions and the gate's settings."""

    model_name: str
    candidate: VersionInfo
    champion: VersionInfo | None
    tolerance: float
    tracking_uri: str

    @property
    def same_data(self) -> bool:
        """Both versions carry the same training-data digest, so their stored test metrics are comparable."""
        if self.champion is None:
            return True
        a = self.champion.tags.get("dataset_digest")
        b = self.candidate.tags.get("dataset_digest")
        return bool(a) and a == b


PromotionCheck = Callable[[PromotionContext], Sequence[ComparisonRow]]
"""Plug-in gate: e.g. evaluate both versions on an extra labelled set and return one row per metric."""


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    """True when `champion` points at the candidate after the call."""
    model_name: str
    candidate_version: int
    champion_version: int | None
    """The champion after the call (the candidate when promoted)."""
    previous_champion_version: int | None
    rows: tuple[ComparisonRow, ...]
    reason: str
    forced: bool = False

    @property
    def comparison(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER_SUFFIXES)


def compare_metrics(
    champion: Mapping[str, float] | None,
    candidate: Mapping[str, float],
    keys: Sequence[str],
    tolerance: float,
) -> list[ComparisonRow]:
    """One row per key: ok unless the candidate is worse than the champion by more than `tolerance`
    (absolute, in the metric's own direction). A key the champion lacks is ok (nothing to defend);
    a key the candidate lacks but the champion has is not (the candidate cannot show it holds)."""
    rows: list[ComparisonRow] = []
    for key in keys:
        cand = candidate.get(key)
        champ = champion.get(key) if champion is not None else None
        if cand is None and champ is None:
            rows.append(ComparisonRow(key, None, None, None, True, "absent in both"))
        elif cand is None:
            rows.append(ComparisonRow(key, champ, None, None, False, "candidate lacks this metric"))
        elif champ is None:
            note = "no champion" if champion is None else "champion lacks this metric"
            rows.append(ComparisonRow(key, None, cand, None, True, note))
        else:
            delta = cand - champ
            worse = delta if lower_is_better(key) else -delta
            ok = worse <= tolerance + 1e-12
            direction = "lower is better" if lower_is_better(key) else "higher is better"
            note = direction if ok else f"worse by {worse:.4f} > tolerance {tolerance:g} ({direction})"
            rows.append(ComparisonRow(key, champ, cand, delta, ok, note))
    return rows


LOSO_KEY = "loso_apgr_mean"


def loso_row(
    champion: Mapping[str, float] | None, candidate: Mapping[str, float], tolerance: float
) -> ComparisonRow | None:
    """The held-out routing value row, or None unless both versions logged `loso_apgr_mean`."""
    champ = champion.get(LOSO_KEY) if champion is not None else None
    cand = candidate.get(LOSO_KEY)
    if champ is None or cand is None:
        return None
    return compare_metrics({LOSO_KEY: champ}, {LOSO_KEY: cand}, [LOSO_KEY], tolerance)[0]


def _informational(row: ComparisonRow, ctx: PromotionContext) -> ComparisonRow:
    """A stored-metric row of two versions measured on different test sets: shown, never deciding."""
    if row.champion is None or row.candidate is None:
        return row if row.ok else ComparisonRow(**{**asdict(row), "ok": True})
    a = (ctx.champion.tags.get("dataset_digest") or "unknown")[:12] if ctx.champion else "none"
    b = (ctx.candidate.tags.get("dataset_digest") or "unknown")[:12]
    note = f"informational: each on its own test split (data {a} vs {b}); see the same-rows rows"
    return ComparisonRow(row.metric, row.champion, row.candidate, row.delta, True, note)


def promote(
    model_name: str = DEFAULT_MODEL_NAME,
    *,
    candidate_alias: str = CANDIDATE_ALIAS,
    champion_alias: str = CHAMPION_ALIAS,
    tolerance: float = DEFAULT_TOLERANCE,
    metric_keys: Sequence[str] = KEY_METRICS,
    force: bool = False,
    extra_checks: Sequence[PromotionCheck] = (),
    same_rows_check: PromotionCheck | None = None,
    tracking_uri: str | None = None,
) -> PromotionResult:
    """Move `champion_alias` to the `candidate_alias` version if no check fails (or `force`).

    Checks: each key metric must not be worse than the champion's by more than `tolerance`
    (absolute) when both were measured on the same data; otherwise `same_rows_check` scores both on
    each one's test rows (refused when it is missing); then every `extra_checks` callable adds rows.
    A first promotion (no champion) passes when the candidate carries at least one key metric.
    Tags written on the candidate:
    `promoted_at`, `promoted_from`, `promoted_by_force`, `promotion_comparison` (JSON)."""
    # Over 60 lines: read, compare, then move the alias with tag rollback: one transaction, kept in one place.
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise RegistryError(f"tolerance must be a finite number >= 0, got {tolerance}")
    if candidate_alias == champion_alias:
        raise RegistryError("candidate and champion aliases must differ")
    _, client, uri = _connect(tracking_uri)
    with _errors(f"promoting {model_name!r}", uri):
        cand_mv = _get_version(client, uri, model_name, candidate_alias, None)
        aliases = _aliases(client, model_name)
        keys = [*metric_keys, LOSO_KEY]
        candidate = _version_info(client, cand_mv, aliases, keys)
        champion: VersionInfo | None = None
        if champion_alias in aliases:
            champ_mv = client.get_model_version(model_name, str(aliases[champion_alias]))
            champion = _version_info(client, champ_mv, aliases, keys)
    previous = champion.version if champion else None
    if champion is not None and champion.version == candidate.version:
        return PromotionResult(
            True,
            model_name,
            candidate.version,
            previous,
            previous,
            (),
            f"v{candidate.version} is already {champion_alias}; nothing to do",
        )

    rows = compare_metrics(champion.metrics if champion else None, candidate.metrics, metric_keys, tolerance)
    if all(r.candidate is None for r in rows):
        rows.append(
            ComparisonRow(
                "key metrics", None, None, None, False, f"candidate has none of {list(metric_keys)}"
            )
        )
    ctx = PromotionContext(model_name, candidate, champion, tolerance, uri)
    checks = list(extra_checks)
    if not ctx.same_data:
        rows = [_informational(r, ctx) for r in rows]
        if same_rows_check is None:
            rows.append(
                ComparisonRow(
                    "same rows",
                    None,
                    None,
                    None,
                    False,
                    "the versions were trained on different data and no evaluator is wired in to score "
                    "both on the same rows",
                )
            )
        elif same_rows_check not in checks:
            checks.insert(0, same_rows_check)
    held_out = loso_row(champion.metrics if champion else None, candidate.metrics, tolerance)
    if held_out is not None:
        rows.append(held_out)
    for check in checks:
        name = getattr(check, "__name__", type(check).__name__)
        try:
            rows.extend(check(ctx))
        except Exception as exc:
            rows.append(
                ComparisonRow(f"check {name}", None, None, None, False, f"check raised: {_short(exc)}")
            )

    failed = [r for r in rows if not r.ok]
    versus = f"v{candidate.version} vs {champion_alias} v{previous}" if previous else f"v{candidate.version}"
    if failed and not force:
        return PromotionResult(
            False,
            model_name,
            candidate.version,
            previous,
            previous,
            tuple(rows),
            f"refused {versus}: " + "; ".join(f"{r.metric}: {r.note}" for r in failed),
        )

    comparison = json.dumps([asdict(r) for r in rows], separators=(",", ":"))
    if len(comparison) > MAX_TAG_VALUE:
        comparison = comparison[: MAX_TAG_VALUE - 1] + "…"
    tags = {
        "promoted_by_force": "true" if force and failed else "false",
        "promoted_from": str(previous) if previous else "none",
        "promotion_comparison": comparison,
    }
    with _errors(f"moving {champion_alias} to v{candidate.version}", uri):
        for key, value in tags.items():
            client.set_model_version_tag(model_name, str(candidate.version), key, value)
        try:
            client.set_registered_model_alias(model_name, champion_alias, str(candidate.version))
        except Exception:
            for key in tags:
                with contextlib.suppress(Exception):
                    client.delete_model_version_tag(model_name, str(candidate.version), key)
            raise
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(model_name, str(candidate.version), "promoted_at", stamp)
    if failed:
        reason = f"forced {versus} despite: " + "; ".join(f"{r.metric}: {r.note}" for r in failed)
    elif previous:
        reason = f"promoted {versus}: no key metric worse by more than {tolerance:g}"
    else:
        reason = f"promoted v{candidate.version}: first {champion_alias}"
    return PromotionResult(
        True,
        model_name,
        candidate.version,
        candidate.version,
        previous,
        tuple(rows),
        reason,
        force and bool(failed),
    )


def rollback(
    model_name: str = DEFAULT_MODEL_NAME,
    *,
    to_version: int | None = None,
    champion_alias: str = CHAMPION_ALIAS,
    tracking_uri: str | None = None,
) -> PromotionResult:
    """Move `champion_alias` back to `to_version`, or to the version the current champion was
    promoted from (its `promoted_from` tag). No checks: it is an operator's decision, recorded on the
    target version like a forced promotion (`promoted_by_force=true`, `promoted_from`, `promoted_at`,
    `rolled_back_from`)."""
    _, client, uri = _connect(tracking_uri)
    with _errors(f"rolling back {model_name!r}", uri):
        aliases = _aliases(client, model_name)
        current = aliases.get(champion_alias)
        if to_version is None:
            if current is None:
                raise RegistryError(
                    f"{model_name!r} has no {champion_alias!r} to roll back; pass --to VERSION"
                )
            champ_mv = client.get_model_version(model_name, str(current))
            previous = (getattr(champ_mv, "tags", {}) or {}).get("promoted_from", "none")
            if not previous.isdigit():
                raise RegistryError(
                    f"{champion_alias} v{current} records no earlier {champion_alias} "
                    f"(promoted_from={previous!r}); pass --to VERSION"
                )
            to_version = int(previous)
        target = _get_version(client, uri, model_name, None, to_version)
        target_version = int(target.version)
        if current == target_version:
            return PromotionResult(
                True,
                model_name,
                target_version,
                current,
                current,
                (),
                f"v{target_version} is already {champion_alias}; nothing to do",
            )
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        tags = {
            "promoted_by_force": "true",
            "promoted_from": str(current) if current else "none",
            "rolled_back_from": str(current) if current else "none",
            "promoted_at": stamp,
        }
        for key, value in tags.items():
            client.set_model_version_tag(model_name, str(target_version), key, value)
        client.set_registered_model_alias(model_name, champion_alias, str(target_version))
    reason = f"rolled {champion_alias} back to v{target_version}" + (f" from v{current}" if current else "")
    return PromotionResult(True, model_name, target_version, target_version, current, (), reason, True)
