"""Read and validate a user's labelled file (CSV, TSV, JSONL, JSON or Parquet) before anything else runs.

Job: `load_labelled_file` is the trainer's first call. It reads the file itself (csv module, line-by-line
JSON, pyarrow) so every error can name the file, the column, the row/line number and the bad value, and
raises `DataValidationError` for: unreadable/corrupt files or unknown extensions, missing or misnamed
columns (with close-match suggestions), empty or non-string text, missing labels, labels outside the
declared set, classes with too few rows to split, duplicate ids and bad split values. Only a file that
passes everything becomes a `LabelledData` (DataFrame with `id`, `text`, label columns, `split`).
`read_rows` / `read_frame` are the project's one labelled-file reader: train, eval, drift,
calibrate, promote --eval-set and data validate all accept the same formats with the same errors.

Trade-offs: the whole file is held in memory (fine for the tens of thousands of rows a classifier
needs). Label values are compared as strings (`1` and `"1"` are the same label) so CSV and JSONL
versions of one file give the same labels and the same digest. Without an `id` column, ids are
`t` + sha256(text)[:16] (repeated texts get a `#2`, `#3` suffix and share the split of the first copy);
without a `split` column the split is a hash of the id (of the text for derived ids), 70/15/15. An optional
`group` column (near-duplicate group, as in the shipped data) is kept for grouped cross-validation; rows
without one form their own group.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.data.labels import DEFAULT_LABEL_SETS

if TYPE_CHECKING:
    import pandas as pd

SPLITS = ("train", "validation", "test")
RESERVED_COLUMNS = ("id", "text", "split", "group")
PASSTHROUGH_COLUMNS = ("source", "label_kind")
"""Optional provenance columns kept as strings when present (`label_kind` drives the heads' hand-row weights,
`source` the held-out hand-row report); never validated, never part of the digest."""
SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")
MAX_LISTED = 5
"""How many offending rows an error message lists before saying "and N more"."""


class DataValidationError(ValueError):
    """A user's data file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class LabelledData:
    """A validated labelled file: `df` has `id`, `text`, one column per label head, `split` (and `group`
    when the file has one)."""

    path: Path
    df: pd.DataFrame
    label_columns: tuple[str, ...]
    label_sets: dict[str, tuple[str, ...]]
    digest: str

    def split(self, name: str) -> pd.DataFrame:
        """Rows of one split (`train`, `validation` or `test`)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.df[self.df["split"] == name].reset_index(drop=True)


def _canonical(value: Any) -> Any:
    """A JSON-able Python value for a non-null cell (numpy scalars -> Python, inf -> its string)."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def dataset_digest(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """sha256 of a table's content: rows sorted by `id`, `columns` (default: all) in sorted order.

    Canonical and library-independent (JSON of Python values per row, nulls as null), so the same
    labelled rows give the same digest whatever file format or pandas version they came through.
    MLflow records it as the training-data digest.
    """
    import pandas as pd

    chosen = sorted(columns if columns is not None else [str(c) for c in df.columns])
    if "id" not in df.columns:
        raise ValueError("dataset_digest needs an 'id' column")
    missing = [c for c in chosen if c not in df.columns]
    if missing:
        raise ValueError(f"dataset_digest: unknown columns {missing}")
    digest = hashlib.sha256()
    digest.update(json.dumps(chosen).encode("utf-8") + b"\n")
    ordered = df.sort_values("id", kind="mergesort")
    for values in ordered[chosen].astype(object).itertuples(index=False, name=None):
        row = [None if pd.isna(v) else _canonical(v) for v in values]
        digest.update(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ reading


@dataclass
class _Table:
    columns: list[str]
    rows: list[dict[str, Any]]
    where: list[str]  # "line 7" / "row 7": where each row is in the file


def _csv_delimiter(path: Path) -> str:
    """The delimiter of a .csv file, judged from its header line (column names hold no separators):
    ',' unless the header has none and has ';' (European spreadsheets), a tab or '|' instead."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header = fh.readline()
    except (OSError, UnicodeDecodeError):
        return ","  # the reader reports it
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in (";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv(path: Path, delimiter: str = ",") -> _Table:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            columns = list(reader.fieldnames or [])
            rows: list[dict[str, Any]] = []
            where: list[str] = []
            start = reader.line_num + 1
            for record in reader:
                if None in record:
                    hint = next(
                        (
                            f" (is this CSV separated by {d!r}?)"
                            for d in (";", "\t", "|", ",")
                            if d != delimiter and len(columns) == 1 and d in columns[0]
                        ),
                        "",
                    )
                    raise DataValidationError(
                        f"{path}: line {start}: more values than the {len(columns)} header columns{hint}"
                    )
                rows.append(dict(record))
                where.append(f"line {start}")
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise DataValidationError(f"{path}: unreadable CSV: {exc}") from exc
    return _Table(columns, rows, where)


def _read_json(path: Path) -> _Table:
    """A JSON array of objects, or an object of columns (`{"text": [...], "tier": [...]}`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise DataValidationError(
            f"{path}: line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
        ) from exc
    if isinstance(data, dict) and all(isinstance(v, list | dict) for v in data.values()):
        cols = {k: list(v.values()) if isinstance(v, dict) else v for k, v in data.items()}
        if len({len(v) for v in cols.values()}) > 1:
            raise DataValidationError(f"{path}: columns of different lengths")
        n = len(next(iter(cols.values()), []))
        data = [{k: v[i] for k, v in cols.items()} for i in range(n)]
    if not isinstance(data, list):
        raise DataValidationError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    columns: dict[str, None] = {}
    for number, record in enumerate(data, start=1):
        if not isinstance(record, dict):
            raise DataValidationError(
                f"{path}: item {number}: expected a JSON object, got {type(record).__name__}"
            )
        columns.update(dict.fromkeys(record))
    return _Table(list(columns), list(data), [f"item {i}" for i in range(1, len(data) + 1)])


def _read_jsonl(path: Path) -> _Table:
    rows: list[dict[str, Any]] = []
    where: list[str] = []
    columns: dict[str, None] = {}
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataValidationError(
                        f"{path}: line {number}: invalid JSON ({exc.msg} at column {exc.colno})"
                    ) from exc
                if not isinstance(record, dict):
                    raise DataValidationError(
                        f"{path}: line {number}: expected a JSON object, got {type(record).__name__}"
                    )
                columns.update(dict.fromkeys(record))
                rows.append(record)
                where.append(f"line {number}")
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return _Table(list(columns), rows, where)


def _read_parquet(path: Path) -> _Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataValidationError(f"{path}: unreadable or corrupt Parquet file: {exc}") from exc
    rows = table.to_pylist()
    return _Table(list(table.column_names), rows, [f"row {i}" for i in range(1, len(rows) + 1)])


def read_rows(path: Path) -> _Table:
    """Rows of a CSV/TSV/JSONL/JSON/Parquet file, each with where it is in the file; raises
    DataValidationError naming the file (and the line) for anything unreadable or empty."""
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"{path}: file not found")
    if not path.is_file():
        raise DataValidationError(f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = _read_csv(path, delimiter=_csv_delimiter(path))
    elif suffix == ".tsv":
        table = _read_csv(path, delimiter="\t")
    elif suffix == ".json":
        table = _read_json(path)
    elif suffix in (".jsonl", ".ndjson"):
        table = _read_jsonl(path)
    elif suffix in (".parquet", ".pq"):
        table = _read_parquet(path)
    else:
        raise DataValidationError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not table.rows:
        raise DataValidationError(f"{path}: no data rows")
    return table


def read_frame(path: Path) -> pd.DataFrame:
    """The file as a DataFrame, read by `read_rows` (same formats, same errors). Text formats carry
    no types: in CSV/TSV columns an empty cell is missing and a column whose every value is a number
    becomes numeric, as pandas' CSV reader would make it."""
    import pandas as pd

    path = Path(path)
    table = read_rows(path)
    df = pd.DataFrame(table.rows, columns=table.columns)
    if path.suffix.lower() in (".csv", ".tsv"):
        for col in df.columns:
            values = df[col].mask(df[col] == "")
            numeric = pd.to_numeric(values, errors="coerce")
            df[col] = numeric if numeric.notna().sum() == values.notna().sum() else values
    return df


# --------------------------------------------------------------------------------------- validation


def _listing(items: Sequence[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return f"{shown}; and {more} more" if more > 0 else shown


def _suggest(name: str, columns: Iterable[str]) -> str:
    columns = list(columns)
    lowered = {c.lower().strip(): c for c in columns}
    matches = [lowered[name.lower()]] if name.lower() in lowered else []
    matches += [c for c in difflib.get_close_matches(name, columns, n=3, cutoff=0.6) if c not in matches]
    if not matches:
        folded = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
        matches = [lowered[m] for m in folded]
    return f" (did you mean {', '.join(repr(m) for m in matches)}?)" if matches else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_columns(path: Path, table: _Table, label_columns: Sequence[str]) -> None:
    if not label_columns:
        raise DataValidationError(f"{path}: no label columns given (e.g. --label-columns tier,task)")
    duplicated = [c for c, n in Counter(label_columns).items() if n > 1]
    if duplicated:
        raise DataValidationError(f"{path}: label column(s) listed twice: {', '.join(duplicated)}")
    reserved = [c for c in label_columns if c in RESERVED_COLUMNS]
    if reserved:
        raise DataValidationError(
            f"{path}: {', '.join(map(repr, reserved))} cannot be a label column "
            f"(reserved: {RESERVED_COLUMNS})"
        )
    problems = []
    for name in ("text", *label_columns):
        if name not in table.columns:
            problems.append(f"missing column {name!r}{_suggest(name, table.columns)}")
    if problems:
        found = ", ".join(repr(c) for c in table.columns) or "(none)"
        raise DataValidationError(f"{path}: {'; '.join(problems)}. Columns found: {found}")


def _check_text(path: Path, table: _Table) -> None:
    bad = []
    for record, where in zip(table.rows, table.where, strict=True):
        value = record.get("text")
        if not isinstance(value, str):
            bad.append(f"{where}: text is {type(value).__name__} {_short(value)}, expected a string")
        elif not value.strip():
            bad.append(f"{where}: text is empty or whitespace")
    if bad:
        raise DataValidationError(f"{path}: column 'text': {len(bad)} bad row(s): {_listing(bad)}")


def _label_value(value: Any) -> str | None:
    """A label as a string; None when missing. bool/int/str accepted; 1.0 -> '1'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    raise TypeError(type(value).__name__)


def _group_value(value: Any, row_id: str) -> str:
    """A row's near-duplicate group: the given value as a string, or the row's own id when empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return row_id
    return str(value).strip()


def _passthrough_value(value: Any) -> str:
    """A provenance value as a string ("" when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _text_id(text: str) -> str:
    return "t" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _split_for(key: str) -> str:
    bucket = int.from_bytes(hashlib.sha256(f"tierroute-split-v1:{key}".encode()).digest()[:8], "big")
    fraction = bucket % 10_000 / 10_000
    return "train" if fraction < 0.70 else ("validation" if fraction < 0.85 else "test")


def derived_splits(texts: Sequence[Any], ids: Sequence[Any] | None = None) -> list[str]:
    """The split `load_labelled_file` gives rows of a file without a `split` column: a hash of the
    id when there is an `id` column, else of the text (70/15/15). `eval --split test` uses it on
    such files, so "test" means the rows `train` held out of that same file."""
    if ids is not None:
        return [_split_for(str(i).strip()) for i in ids]
    return [_split_for(_text_id(str(t))) for t in texts]


def load_labelled_file(
    path: Path,
    label_columns: Sequence[str],
    label_sets: Mapping[str, Sequence[str]] | None = None,
    *,
    min_rows_per_class: int = 8,
    allow_missing_labels: bool = False,
) -> LabelledData:
    """Read and validate a labelled file; raise `DataValidationError` with a precise message on any problem.

    - `path`: .csv (header line), .jsonl/.ndjson (one object per line) or .parquet, with a `text`
      column, the `label_columns`, optionally `id` (unique) and `split` (train/validation/test).
    - `label_sets`: declared labels per column. `tier` and `task` default to `DEFAULT_LABEL_SETS`; other
      columns default to the labels observed in the file (sorted). A label outside its declared set is
      an error; so is a declared or observed class with fewer than `min_rows_per_class` rows.
    - `allow_missing_labels`: keep rows whose label is missing (as NA) instead of failing; for heads
      that only some rows have (e.g. `weak_ok`).
    """
    # Over 60 lines: one validation pass in the order its errors are reported; each check needs the previous
    # ones' results.
    import pandas as pd

    path = Path(path)
    label_columns = tuple(label_columns)
    table = read_rows(path)
    _check_columns(path, table, label_columns)
    _check_text(path, table)

    has_id = "id" in table.columns
    ids: list[str] = []
    split_keys: list[str] = []
    if has_id:
        bad = []
        for record, where in zip(table.rows, table.where, strict=True):
            value = record.get("id")
            if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
                bad.append(f"{where}: id is missing")
            elif isinstance(value, bool) or not isinstance(value, str | int):
                bad.append(
                    f"{where}: id {_short(value)} is a {type(value).__name__}, expected a string or integer"
                )
            ids.append(str(value).strip() if value is not None else "")
        if bad:
            raise DataValidationError(f"{path}: column 'id': {_listing(bad)}")
        first_seen: dict[str, str] = {}
        dupes = []
        for row_id, where in zip(ids, table.where, strict=True):
            if row_id in first_seen:
                dupes.append(f"{where}: id {row_id!r} already used at {first_seen[row_id]}")
            else:
                first_seen[row_id] = where
        if dupes:
            raise DataValidationError(f"{path}: column 'id': {len(dupes)} duplicate id(s): {_listing(dupes)}")
        split_keys = ids
    else:
        seen: Counter[str] = Counter()
        for record in table.rows:
            base = _text_id(record["text"])
            seen[base] += 1
            ids.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
            split_keys.append(base)

    labels: dict[str, list[str | None]] = {}
    used_sets: dict[str, tuple[str, ...]] = {}
    declared_sets = {**DEFAULT_LABEL_SETS, **(dict(label_sets) if label_sets else {})}
    for column in label_columns:
        values: list[str | None] = []
        bad = []
        for record, where in zip(table.rows, table.where, strict=True):
            raw = record.get(column)
            try:
                value = _label_value(raw)
            except TypeError:
                bad.append(f"{where}: value {_short(raw)} is a {type(raw).__name__}, expected a string")
                value = None
            else:
                if value is None and not allow_missing_labels:
                    bad.append(f"{where}: label is missing")
            values.append(value)
        if bad:
            raise DataValidationError(f"{path}: column {column!r}: {len(bad)} bad row(s): {_listing(bad)}")
        declared = column in declared_sets
        allowed = (
            tuple(str(v) for v in declared_sets[column])
            if declared
            else tuple(sorted({v for v in values if v is not None}))
        )
        if declared:
            outside = [
                f"{where}: {value!r}"
                for value, where in zip(values, table.where, strict=True)
                if value is not None and value not in allowed
            ]
            if outside:
                raise DataValidationError(
                    f"{path}: column {column!r}: {len(outside)} label(s) outside the declared set "
                    f"{list(allowed)}: {_listing(outside)}"
                )
        counts = Counter(v for v in values if v is not None)
        small = [
            f"{label!r} has {counts.get(label, 0)}"
            for label in allowed
            if counts.get(label, 0) < min_rows_per_class
        ]
        if small:
            raise DataValidationError(
                f"{path}: column {column!r}: too few rows to split into train/validation/test "
                f"(need >= {min_rows_per_class} per class): {_listing(small)}. Add rows, merge classes, or "
                "declare a label set without them"
            )
        if len(allowed) < 2:
            raise DataValidationError(
                f"{path}: column {column!r}: needs at least 2 classes, found {list(allowed)}"
            )
        labels[column] = values
        used_sets[column] = allowed

    if "split" in table.columns:
        splits: list[str] = []
        bad = []
        for record, where in zip(table.rows, table.where, strict=True):
            value = record.get("split")
            name = value.strip().lower() if isinstance(value, str) else None
            if name not in SPLITS:
                bad.append(f"{where}: {_short(value)}")
            splits.append(name or "")
        if bad:
            raise DataValidationError(
                f"{path}: column 'split': {len(bad)} value(s) not in {list(SPLITS)}: {_listing(bad)}"
            )
    else:
        splits = [_split_for(key) for key in split_keys]

    df = pd.DataFrame({"id": ids, "text": [r["text"] for r in table.rows]})
    for column in label_columns:
        df[column] = pd.array(labels[column], dtype="string")
    df["split"] = splits
    if "group" in table.columns:
        df["group"] = [
            _group_value(record.get("group"), row_id) for record, row_id in zip(table.rows, ids, strict=True)
        ]
    for column in PASSTHROUGH_COLUMNS:  # provenance the trainer reads (hand-row weights); not in the digest
        if column in table.columns and column not in df.columns:
            df[column] = [_passthrough_value(record.get(column)) for record in table.rows]
    digest = dataset_digest(df, ["id", "text", *label_columns, "split"])
    return LabelledData(path=path, df=df, label_columns=label_columns, label_sets=used_sets, digest=digest)
