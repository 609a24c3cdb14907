"""Build the default labelled request set: data/raw/ -> data/labelled/requests.parquet + summary.json.

Job: run every label map of `pipelines.data.sources`, drop exact duplicates (normalised text), sample each
source down to its caps, group near-duplicates and assign train/validation/test per group, then write a
compact, byte-for-byte reproducible Parquet file and a summary the data card is generated from.

Design choices and trade-offs:
- Dedup key: casefold, punctuation removed, whitespace collapsed. The first row in `SOURCES` order
  wins; rows of the same text with different labels are counted as conflicts in the report.
- Near-duplicate groups (so no passage, stem or template variant straddles splits): two rows are
  linked when the word 8-grams (of normalised text) they share cover >= `MIN_CONTAINMENT` of the
  shorter row's 8-grams. Only 8-grams found in at most `MAX_SHINGLE_DF` rows count, and never
  *boilerplate*: an 8-gram present in >= `BOILERPLATE_SHARE` of the rows of one prompt family (a P3
  template, an MMLU subject, otherwise the source), so template wording does not chain unrelated rows
  while one passage reused by many templates still does (131 P3 prompts quote one DuoRC plot).
  Groups are the connected components over the whole deduplicated pool; rows shorter than 8 words
  group only by exact normalised text. Containment, not a single shared 8-gram, keeps shared answer
  options or stock phrases from merging thousands of rows into one group. The group key is the
  smallest row id of the component, computed over the pool *before* sampling, so a row's split does
  not move when caps change. It is shipped as column `group` so training-time cross-validation can
  keep groups together too (GroupKFold).
- Split = sha256("tierroute-split-v1:" + group key) -> 70/15/15. Stable across rebuilds; adding data
  can only move rows whose group gains a smaller id.
- Sampling: within each source cell, keep the `cap` rows with the smallest sha256("tierroute-sample-v1:"
  + id): seeded, stable, independent of file order.
- Determinism: rows sorted by id, no timestamps in any output; Parquet written with zstd by pyarrow.
  `dataset_digest` (content hash, library-independent) is what MLflow records.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
import time
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.data.dataset import dataset_digest
from pipelines.data.labels import TASKS, TIERS, UNLABELLED
from pipelines.data.sources import SOURCES, RowLabel, SourceSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BOILERPLATE_SHARE",
    "COLUMNS",
    "MAX_SHINGLE_DF",
    "MIN_CONTAINMENT",
    "SHINGLE_WORDS",
    "SPLIT_FRACTIONS",
    "BuildReport",
    "assign_split",
    "build_dataset",
    "dataset_digest",
    "load_built",
    "near_duplicate_groups",
    "normalise_text",
]

COLUMNS = (
    "id",
    "text",
    "source",
    "tier",
    "task",
    "weak_ok",
    "split",
    "group",
    "licence",
    "commercial",
    "label_kind",
)
_BOOL_COLUMNS = ("weak_ok", "commercial")
SHINGLE_WORDS = 8
MAX_SHINGLE_DF = 200
BOILERPLATE_SHARE = 0.8
MIN_CONTAINMENT = 0.3
SPLIT_FRACTIONS = (("train", 0.70), ("validation", 0.15), ("test", 0.15))
PARQUET_NAME = "requests.parquet"
SUMMARY_NAME = "summary.json"

_ASCII_PUNCT = {cp: " " for cp in range(128) if unicodedata.category(chr(cp)).startswith("P")}
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@functools.lru_cache(maxsize=65536)
def _non_ascii_sub(char: str) -> str:
    return " " if unicodedata.category(char).startswith("P") else char


def normalise_text(text: str) -> str:
    """Dedup key: casefold, Unicode punctuation (category P*) -> space, whitespace collapsed and stripped."""
    folded = text.casefold()
    if not folded.isascii():
        folded = _NON_ASCII.sub(lambda m: _non_ascii_sub(m.group()), folded)
    return " ".join(folded.translate(_ASCII_PUNCT).split())


def _sha_int(prefix: str, value: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{prefix}:{value}".encode()).digest()[:8], "big")


def assign_split(group_key: str) -> str:
    """train/validation/test for a near-duplicate group, from a hash of its key (70/15/15)."""
    bucket = _sha_int("tierroute-split-v1", group_key) % 10_000 / 10_000
    cumulative = 0.0
    for name, fraction in SPLIT_FRACTIONS:
        cumulative += fraction
        if bucket < cumulative:
            return name
    return SPLIT_FRACTIONS[-1][0]


def _shingles(normalised: Sequence[str], n: int) -> tuple[Any, Any, dict[str, list[int]]]:
    """Unique (n-gram hash, row) pairs sorted by hash, and rows grouped by identical normalised text.

    Word ids are assigned in order of first appearance and n-grams hashed with a fixed polynomial
    (uint64, wrapping), so the result is the same in every process.
    """
    import numpy as np

    exact: dict[str, list[int]] = {}
    vocab: dict[str, int] = {}
    word_ids = array("Q")  # compact: the pool has ~3M words
    lengths = array("q")
    for doc, norm in enumerate(normalised):
        exact.setdefault(norm, []).append(doc)
        split = norm.split(" ")
        word_ids.extend([vocab.setdefault(word, len(vocab) + 1) for word in split])
        lengths.append(len(split))
    words = np.frombuffer(word_ids, dtype=np.uint64)
    docs = np.repeat(np.arange(len(normalised), dtype=np.int64), np.frombuffer(lengths, dtype=np.int64))
    if len(words) < n:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), exact
    windows = len(words) - n + 1
    prime = np.uint64(0x100000001B3)
    hashes = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            hashes = hashes * prime + words[offset : offset + windows]
    start_doc = docs[:windows]
    inside = start_doc == docs[n - 1 : n - 1 + windows]  # the window lies inside one row
    hashes, start_doc = hashes[inside], start_doc[inside]
    order = np.lexsort((start_doc, hashes))
    hashes, start_doc = hashes[order], start_doc[order]
    keep = np.ones(len(hashes), dtype=bool)
    keep[1:] = (hashes[1:] != hashes[:-1]) | (start_doc[1:] != start_doc[:-1])
    return hashes[keep], start_doc[keep], exact


def near_duplicate_groups(
    ids: Sequence[str],
    texts: Sequence[str],
    families: Sequence[str] | None = None,
    *,
    n: int = SHINGLE_WORDS,
    max_df: int = MAX_SHINGLE_DF,
    boilerplate_share: float = BOILERPLATE_SHARE,
    min_containment: float = MIN_CONTAINMENT,
    pre_normalised: bool = False,
) -> list[str]:
    """Group key (the smallest id of its connected component) for every row.

    An n-gram (of normalised words) is *boilerplate* when one family (a template, an MMLU subject, a
    source) has it in >= max(3, `boilerplate_share` x family size) rows: template wording, not content.
    Two rows are linked when the non-boilerplate n-grams they share, each found in at most `max_df`
    rows, cover >= `min_containment` of the shorter row's distinct n-grams; identical normalised texts
    are always linked. Groups are connected components of these links. `pre_normalised=True` says
    `texts` already went through `normalise_text` (the build normalises once for dedup and grouping).
    """
    # Over 60 lines: one union-find pass over the shingle index; its phases share the same index arrays.
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = len(ids)
    if len(texts) != count or (families is not None and len(families) != count):
        raise ValueError("ids, texts and families differ in length")
    if count == 0:
        return []
    normalised = list(texts) if pre_normalised else [normalise_text(t) for t in texts]
    hashes, docs, exact = _shingles(normalised, n)
    edge_a: list[Any] = []
    edge_b: list[Any] = []
    for members in exact.values():
        if len(members) > 1:
            edge_a.append(np.full(len(members) - 1, members[0], dtype=np.int64))
            edge_b.append(np.asarray(members[1:], dtype=np.int64))
    if len(hashes):
        family_names = list(families) if families is not None else [""] * count
        family_index = {name: i for i, name in enumerate(sorted(set(family_names)))}
        family_of = np.asarray([family_index[name] for name in family_names], dtype=np.int64)
        family_size = np.bincount(family_of, minlength=len(family_index))
        total = np.bincount(docs, minlength=count)  # distinct n-grams per row

        run_start = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
        run_len = np.diff(np.r_[run_start, len(hashes)])
        run_of = np.repeat(np.arange(len(run_start)), run_len)
        # boilerplate: too frequent inside one family
        fam = family_of[docs]
        keys, per_family = np.unique(run_of * len(family_index) + fam, return_counts=True)
        key_family = keys % len(family_index)
        limit = np.maximum(3, np.ceil(boilerplate_share * family_size[key_family]))
        boilerplate = np.zeros(len(run_start), dtype=bool)
        boilerplate[(keys // len(family_index))[per_family >= limit]] = True
        content = (run_len[run_of] >= 2) & (run_len[run_of] <= max_df) & ~boilerplate[run_of]
        c_docs, c_runs = docs[content], run_of[content]
        pair_a: list[Any] = []
        pair_b: list[Any] = []
        for offset in range(1, max_df):
            same = c_runs[:-offset] == c_runs[offset:]
            if not same.any():
                break
            pair_a.append(c_docs[:-offset][same])
            pair_b.append(c_docs[offset:][same])
        if pair_a:
            a = np.concatenate(pair_a)
            b = np.concatenate(pair_b)  # a < b: rows are sorted within each run
            pair_keys, shared = np.unique(a * count + b, return_counts=True)
            a, b = pair_keys // count, pair_keys % count
            linked = shared >= min_containment * np.minimum(total[a], total[b])
            edge_a.append(a[linked])
            edge_b.append(b[linked])
    rows = np.concatenate(edge_a) if edge_a else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(edge_b) if edge_b else np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    smallest: dict[int, str] = {}
    for label, row_id in zip(labels.tolist(), ids, strict=True):
        if label not in smallest or row_id < smallest[label]:
            smallest[label] = row_id
    return [smallest[label] for label in labels.tolist()]


@dataclass
class BuildReport:
    """What a build did: paths, digest, row counts and what was dropped (and why)."""

    path: Path
    summary_path: Path
    rows: int
    digest: str
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)

    def counts(self, column: str) -> dict[str, int]:
        """Rows per value of `source`, `tier`, `task` or `split`."""
        return dict(self.summary[f"by_{column}"])


@dataclass
class _Row:
    id: str
    source: str
    stratum: str
    family: str
    label: RowLabel
    spec: SourceSpec


def _collect(raw_dir: Path, sources: Iterable[SourceSpec]) -> tuple[list[_Row], dict[str, dict[str, int]]]:
    rows: list[_Row] = []
    skipped: dict[str, dict[str, int]] = {}
    for spec in sources:
        folder_reasons: Counter[str] = Counter()
        for key, raw in spec.read(raw_dir):
            result = spec.label(raw)
            if isinstance(result, RowLabel):
                row_id, family = f"{spec.name}:{key}", f"{spec.name}/{spec.family(raw)}"
                rows.append(_Row(row_id, spec.name, spec.stratum(raw, result), family, result, spec))
            else:
                folder_reasons[result.reason] += 1
        if folder_reasons:
            skipped[spec.name] = dict(sorted(folder_reasons.items()))
    return rows, skipped


def _dedup(rows: list[_Row]) -> tuple[list[_Row], list[str], dict[str, int]]:
    """First row per normalised text (in `SOURCES` order), the kept rows' normalised texts, and stats."""
    kept: dict[str, _Row] = {}
    dropped: Counter[str] = Counter()
    conflicts = 0
    for row in rows:
        key = normalise_text(row.label.text)
        first = kept.get(key)
        if first is None:
            kept[key] = row
            continue
        dropped[row.source] += 1
        if (first.label.tier, first.label.task) != (row.label.tier, row.label.task):
            conflicts += 1
    stats = {f"dropped_{source}": n for source, n in sorted(dropped.items())}
    stats["dropped_total"] = sum(dropped.values())
    stats["label_conflicts"] = conflicts
    return list(kept.values()), list(kept), stats


def _sample(rows: list[_Row], sources: Sequence[SourceSpec]) -> list[_Row]:
    specs = {spec.name: spec for spec in sources}
    cells: dict[tuple[str, str], list[_Row]] = {}
    for row in rows:
        cells.setdefault((row.source, row.stratum), []).append(row)
    selected: list[_Row] = []
    for (source, stratum), members in cells.items():
        cap = specs[source].cap_for(stratum)
        if cap is not None and len(members) > cap:
            members = sorted(members, key=lambda r: _sha_int("tierroute-sample-v1", r.id))[:cap]
        selected.extend(members)
    return selected


def _label(row: _Row, head: str, keep_proxy_labels: bool) -> str | None:
    """The row's `tier`/`task` as written: empty for a source's `empty_heads` unless they are kept."""
    if head in row.spec.empty_heads and not keep_proxy_labels:
        return None
    return str(getattr(row.label, head))


def _count(df: pd.DataFrame, column: str) -> dict[str, int]:
    counts = {str(k): int(v) for k, v in sorted(df[column].value_counts().items())}
    missing = int(df[column].isna().sum())
    if missing:
        counts[UNLABELLED] = missing
    return counts


def _summary(df: pd.DataFrame, extra: dict[str, Any]) -> dict[str, Any]:
    weak = df["weak_ok"]
    summary: dict[str, Any] = {
        "rows": len(df),
        "digest": dataset_digest(df),
        "by_source": _count(df, "source"),
        "by_tier": {t: int((df["tier"] == t).sum()) for t in TIERS},
        "by_task": {t: int((df["task"] == t).sum()) for t in TASKS},
        "by_split": {s: int((df["split"] == s).sum()) for s, _ in SPLIT_FRACTIONS},
        "weak_ok": {
            "true": int((weak == True).sum()),  # noqa: E712  (nullable boolean)
            "false": int((weak == False).sum()),  # noqa: E712
            "null": int(weak.isna().sum()),
        },
        "source_tier": {s: _count(g, "tier") for s, g in sorted(df.groupby("source"))},
        "source_task": {s: _count(g, "task") for s, g in sorted(df.groupby("source"))},
        "split_tier": {s: _count(df[df["split"] == s], "tier") for s, _ in SPLIT_FRACTIONS},
        "split_task": {s: _count(df[df["split"] == s], "task") for s, _ in SPLIT_FRACTIONS},
    }
    summary.update(extra)
    return summary


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.bool_() if c in _BOOL_COLUMNS else pa.string()) for c in COLUMNS])
    table = pa.Table.from_pandas(df[list(COLUMNS)], schema=schema, preserve_index=False)
    table = table.replace_schema_metadata(None)  # no pandas/version metadata: bytes depend on content
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", compression_level=9, use_dictionary=True)
    return bytes(sink.getvalue().to_pybytes())


def build_dataset(
    raw_dir: Path = Path("data/raw"),
    out_dir: Path = Path("data/labelled"),
    *,
    sources: Sequence[SourceSpec] = SOURCES,
    commercial_only: bool = False,
    keep_proxy_labels: bool = False,
) -> BuildReport:
    """Build data/labelled/requests.parquet (columns `COLUMNS`) and summary.json from `raw_dir`.

    Columns: id, text, source, tier, task, weak_ok (nullable bool), split, group (near-duplicate group
    key), licence, commercial (bool), label_kind (`outcome`/`hand`/`proxy`). `commercial_only=True` leaves out
    every source whose licence forbids commercial use (before dedup, so other sources keep their rows).
    A source's `empty_heads` labels are written empty (null) unless `keep_proxy_labels=True` (the same rows,
    splits and groups either way: sampling and grouping never read them; the label ablation scores on the
    kept labels).
    `sources` defaults to every registered source (tests pass small fake ones). Reads only
    `raw_dir`; raises FileNotFoundError naming the missing file when a raw source is absent.
    Both outputs are written atomically (temp file + rename).
    """
    # Over 60 lines: the build's steps in order (read, label, dedup, split, write), each a named call.
    import pandas as pd

    started = time.perf_counter()
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"raw data folder not found: {raw_dir}")
    if commercial_only:
        sources = [spec for spec in sources if spec.commercial]
    collected, skipped = _collect(raw_dir, sources)
    unique, normalised, dedup_stats = _dedup(collected)
    groups = dict(
        zip(
            (r.id for r in unique),
            near_duplicate_groups(
                [r.id for r in unique], normalised, [r.family for r in unique], pre_normalised=True
            ),
            strict=True,
        )
    )
    selected = sorted(_sample(unique, sources), key=lambda r: r.id)
    df = pd.DataFrame(
        {
            "id": [r.id for r in selected],
            "text": [r.label.text for r in selected],
            "source": [r.source for r in selected],
            "tier": [_label(r, "tier", keep_proxy_labels) for r in selected],
            "task": [_label(r, "task", keep_proxy_labels) for r in selected],
            "weak_ok": pd.array([r.label.weak_ok for r in selected], dtype="boolean"),
            "split": [assign_split(groups[r.id]) for r in selected],
            "group": [groups[r.id] for r in selected],
            "licence": [r.spec.licence for r in selected],
            "commercial": [r.spec.commercial for r in selected],
            "label_kind": [r.spec.label_kind for r in selected],
        }
    )
    group_sizes = Counter(groups[r.id] for r in selected)
    extra = {
        "raw_rows": len(collected),
        "skipped": skipped,
        "deduplication": dedup_stats,
        "near_duplicate_groups": {
            "groups": len(group_sizes),
            "rows_in_multi_row_groups": sum(n for n in group_sizes.values() if n > 1),
            "largest_group": max(group_sizes.values(), default=0),
        },
        "columns": list(COLUMNS),
        "commercial_only": commercial_only,
        "keep_proxy_labels": keep_proxy_labels,
        "empty_heads": {
            s.name: list(s.empty_heads) for s in sources if s.empty_heads and not keep_proxy_labels
        },
        "by_licence": dict(sorted(Counter(r.spec.licence for r in selected).items())),
        "by_label_kind": dict(sorted(Counter(r.spec.label_kind for r in selected).items())),
    }
    summary = _summary(df, extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    path, summary_path = out_dir / PARQUET_NAME, out_dir / SUMMARY_NAME
    _atomic_write_bytes(path, _parquet_bytes(df))
    _atomic_write_bytes(summary_path, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
    return BuildReport(
        path=path,
        summary_path=summary_path,
        rows=len(df),
        digest=summary["digest"],
        seconds=time.perf_counter() - started,
        summary=summary,
    )


def load_built(path: Path = Path("data/labelled") / PARQUET_NAME) -> pd.DataFrame:
    """The built table as a DataFrame (`weak_ok` as nullable boolean)."""
    import pandas as pd

    df = pd.read_parquet(path)
    df["weak_ok"] = df["weak_ok"].astype("boolean")
    return df
