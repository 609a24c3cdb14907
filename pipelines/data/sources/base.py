"""Shared vocabulary of the label maps: what a mapped row is, how raw files are read.

Job: the types every per-source label map returns (`RowLabel` or `Skip`), the `SourceSpec` that ties a
reader, a label map and a sampling cap together, and tiny readers for the raw file formats
(JSONL, gzipped JSONL, CSV, JSON list). Trade-off: readers load a whole file into memory; every shipped
raw file is < 5 MB, so simplicity wins over streaming.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.data.labels import TASKS, TIERS

RawRow = dict[str, Any]


@dataclass(frozen=True)
class RowLabel:
    """One labelled request: the text a user would send and the labels we derive for it."""

    text: str
    tier: str
    task: str
    weak_ok: bool | None = None

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"tier {self.tier!r} is not one of {TIERS}")
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {TASKS}")
        if not self.text.strip():
            raise ValueError("text is empty")


@dataclass(frozen=True)
class Skip:
    """A raw row we deliberately do not use, with the reason (counted in the build report)."""

    reason: str


LabelResult = RowLabel | Skip


@dataclass(frozen=True)
class SourceSpec:
    """How one raw source becomes labelled rows.

    `read(raw_dir)` yields `(key, raw_row)` pairs; `key` is unique and stable within the source and
    becomes part of the row id. `label(raw_row)` is the documented label map. `stratum(raw_row, label)`
    names the sampling cell; `caps[cell]` (or `caps["*"]`) bounds the rows kept per cell, chosen by a
    seeded hash of the id so the choice is stable across rebuilds. No cap -> every row is kept.
    `family(raw_row)` names the prompt family (a P3 template, an MMLU subject; default: the whole
    source): wording shared by a large share of one family is template boilerplate, not evidence that
    two rows are near-duplicates. `licence` (SPDX-style) and `commercial` (commercial use allowed) are
    copied onto every row; `label_kind` says where its tier comes from: `outcome` (measured model
    outcomes), `hand` (a person's label for this very request, per a written guideline) or `proxy` (a
    per-source rule). `empty_heads` names the label columns (`tier`, `task`) the build leaves empty for
    this source: its rule's label contradicts the hand guideline too often to train on (the label map
    still computes it, for sampling cells and for `build_dataset(keep_proxy_labels=True)`, which the
    label ablation `evals.eval.label_ablation` scores against).
    """

    name: str
    read: Callable[[Path], Iterator[tuple[str, RawRow]]]
    label: Callable[[RawRow], LabelResult]
    caps: Mapping[str, int] = field(default_factory=dict)
    stratum: Callable[[RawRow, RowLabel], str] = lambda raw, lab: lab.tier
    family: Callable[[RawRow], str] = lambda raw: ""
    licence: str = "unknown"
    commercial: bool = True
    label_kind: str = "proxy"
    empty_heads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.empty_heads) - {"tier", "task"})
        if unknown:
            raise ValueError(f"source {self.name!r}: empty_heads {unknown} are not tier/task")

    def cap_for(self, cell: str) -> int | None:
        """The row budget of sampling cell `cell`, or None when uncapped."""
        if cell in self.caps:
            return self.caps[cell]
        return self.caps.get("*")


def read_jsonl(path: Path) -> list[RawRow]:
    """Rows of a JSONL file (gzipped when the name ends in .gz); blank lines are ignored."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_csv(path: Path) -> list[RawRow]:
    """Rows of a CSV file with a header line, every value a string."""
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_json_list(path: Path) -> list[RawRow]:
    """Rows of a JSON file holding one list of objects."""
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of objects")
    return data
