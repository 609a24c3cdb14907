"""Generate the count tables of the data card (data/README.md) from data/labelled/summary.json.

Job: the hand-written card explains sources, licences and label rules; the numbers in it are never
typed by hand. `render_tables(summary)` gives the Markdown block, `update_card(path, summary)` replaces
the block between the two marker comments (and nothing else). Trade-off: the card must keep the
markers; a card without them is left untouched and the caller is told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.data.labels import TASKS, TIERS, UNLABELLED

BEGIN = "<!-- BEGIN GENERATED TABLES: `tierroute data build` rewrites this block from summary.json -->"
END = "<!-- END GENERATED TABLES -->"
SPLITS = ("train", "validation", "test")


def _n(value: int) -> str:
    return f"{value:,}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _cross(
    title: str, by: Mapping[str, Mapping[str, int]], keys: Sequence[str], columns: Sequence[str]
) -> list[str]:
    if any(UNLABELLED in by.get(key, {}) for key in keys):  # a source's empty_heads: its own column
        columns = [*columns, UNLABELLED]
    rows = []
    for key in keys:
        counts = by.get(key, {})
        rows.append([key, *(_n(counts.get(c, 0)) for c in columns), _n(sum(counts.values()))])
    totals = [sum(by.get(k, {}).get(c, 0) for k in keys) for c in columns]
    rows.append(["**total**", *(f"**{_n(t)}**" for t in totals), f"**{_n(sum(totals))}**"])
    return _table([title, *columns, "rows"], rows)


def _tier_shares(tiers: Mapping[str, int], rows: int) -> str:
    """Shares of the rows that carry a tier (a source's `empty_heads` rows have none)."""
    labelled = sum(tiers.get(t, 0) for t in TIERS)
    shares = ", ".join(f"{t} {tiers.get(t, 0) / max(labelled, 1):.1%}" for t in TIERS)
    if labelled == rows:
        return f"Tier shares: {shares}."
    return f"Tier shares of the {_n(labelled)} rows with a tier: {shares}."


def render_tables(summary: Mapping[str, Any]) -> str:
    """The generated Markdown block (markers included) for a build summary."""
    rows = int(summary["rows"])
    splits = summary["by_split"]
    tiers = summary["by_tier"]
    lines = [
        BEGIN,
        "",
        f"**{_n(rows)} rows**: "
        + ", ".join(f"{s} {_n(splits.get(s, 0))} ({splits.get(s, 0) / rows:.1%})" for s in SPLITS)
        + f". Dataset digest `{summary['digest'][:16]}`.",
        "",
        _tier_shares(tiers, rows),
        "",
        "### Rows per source and tier",
        "",
        *_cross("source", summary["source_tier"], sorted(summary["source_tier"]), TIERS),
        "",
        "### Rows per source and task",
        "",
        *_cross("source", summary["source_task"], sorted(summary["source_task"]), TASKS),
        "",
        "### Rows per split",
        "",
        *_cross("split", summary["split_tier"], SPLITS, TIERS),
        "",
        *_cross("split", summary["split_task"], SPLITS, TASKS),
        "",
        "### weak_ok",
        "",
        *_table(
            ["weak_ok", "rows"],
            [[k, _n(v)] for k, v in summary["weak_ok"].items()],
        ),
        "",
        "### What the build dropped",
        "",
        f"- exact duplicates after normalisation: {_n(summary['deduplication']['dropped_total'])} "
        f"({_n(summary['deduplication']['label_conflicts'])} with different labels; the first source in "
        "build order wins)",
        f"- raw rows mapped: {_n(summary['raw_rows'])}; skipped by a label map: "
        + (
            "; ".join(
                f"{src}: " + ", ".join(f"{reason} ({_n(n)})" for reason, n in reasons.items())
                for src, reasons in summary["skipped"].items()
            )
            or "none"
        ),
        f"- near-duplicate groups: {_n(summary['near_duplicate_groups']['groups'])} "
        f"({_n(summary['near_duplicate_groups']['rows_in_multi_row_groups'])} rows share a group with "
        f"another row; largest group {_n(summary['near_duplicate_groups']['largest_group'])} rows)",
        "",
        END,
    ]
    return "\n".join(lines)


def update_card(path: Path, summary: Mapping[str, Any]) -> bool:
    """Replace the generated block of the card at `path`; False when the card or its markers are missing."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return False
    updated = text[:start] + render_tables(summary) + text[end + len(END) :]
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return True
