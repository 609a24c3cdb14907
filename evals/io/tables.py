"""Read the sets the evaluation commands work on: labelled/unlabelled tables and prediction logs.

Job: one reader with clear errors (an `InputError` message names the file, the column and the first
bad row) for CSV, TSV, JSONL, JSON and Parquet tables with a `text` column, plus the JSONL
prediction log written by `serving.prediction_log`. Labels are optional here: whichever columns
are named like a model head are read as that head's labels (validated against the head's label set
later, by `pipelines.train.reference_stats`). Bad input is the user's to fix, so the commands turn
`InputError` into exit status 2.

Trade-off: the training-side validator (`pipelines.data.dataset`) demands label columns and split
rules; evaluation and drift sets are often unlabelled or partially labelled, so this reader only
insists on what every check needs: non-empty string texts.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.data.dataset import SUPPORTED_SUFFIXES, DataValidationError, derived_splits, read_frame
from pipelines.train.reference_stats import is_missing
from serving.prediction_log import PredictionLogError, is_prediction_log, read_prediction_log

TABLE_SUFFIXES = SUPPORTED_SUFFIXES


class InputError(Exception):
    """A data file the evaluation commands cannot use; the message says why."""


def read_table(path: Path) -> Any:
    """A pandas DataFrame from a CSV/TSV/JSONL/JSON/Parquet file with a non-empty string `text` column
    (read by `pipelines.data.dataset.read_frame`, the reader `train --data` uses too)."""
    path = Path(path)
    try:
        df = read_frame(path)
    except DataValidationError as exc:
        raise InputError(str(exc)) from exc
    if "text" not in df.columns:
        raise InputError(f"{path}: no 'text' column (columns: {', '.join(map(str, df.columns))})")
    bad = [i for i, t in enumerate(df["text"].tolist()) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise InputError(
            f"{path}: column 'text' has {len(bad)} empty or non-string value(s), first at row {bad[0]}"
        )
    return df.reset_index(drop=True)


def select_split(df: Any, split: str | None, path: Path) -> Any:
    """Rows of one split when `split` is given (needs a `split` column)."""
    if split is None:
        return df
    if "split" not in df.columns:
        ids = df["id"].tolist() if "id" in df.columns else None
        if "text" not in df.columns:
            raise InputError(f"{path}: --split {split!r} given but the file has no 'split' column")
        df = df.assign(split=derived_splits(df["text"].tolist(), ids))
        print(
            f"warning: {path} has no 'split' column: --split {split} uses the split `tierroute train` "
            f"derives for such files (a hash of the {'id' if ids is not None else 'text'}, 70/15/15)",
            file=sys.stderr,
        )
    out = df[df["split"] == split].reset_index(drop=True)
    if len(out) == 0:
        raise InputError(
            f"{path}: no rows with split == {split!r} (splits: {sorted(map(str, df['split'].unique()))})"
        )
    return out


def label_columns(df: Any, heads: Mapping[str, Sequence[str]]) -> dict[str, list[Any]]:
    """Head name -> label values (None where missing) for every column named like a head."""
    out: dict[str, list[Any]] = {}
    for name in heads:
        if name in df.columns:
            out[name] = [None if is_missing(v) else _label(v) for v in df[name].tolist()]
    return out


def _label(value: Any) -> Any:
    """A boolean label as the trainer names it (`pipelines.data.dataset`: "true"/"false"), so a
    head trained on a boolean column (e.g. `weak_ok`) is scored on the same file type it was trained on."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return value


@dataclass
class LoggedPredictions:
    """A prediction log as arrays, probabilities ordered like the model's label lists."""

    probs: dict[str, np.ndarray]
    heads: dict[str, tuple[str, ...]]
    token_counts: np.ndarray | None
    truncated: np.ndarray | None
    texts: list[str] | None
    models: dict[str, int] = field(default_factory=dict)
    p_weak_ok: np.ndarray | None = None
    """The routing head's output per record, when every record logged one."""

    @property
    def n(self) -> int:
        return int(next(iter(self.probs.values())).shape[0])


def read_logged_predictions(
    path: Path, heads: Mapping[str, Sequence[str]] | None = None
) -> LoggedPredictions:
    """Parse a prediction log. `heads` fixes the label order (from the model or the reference);
    without it the order of the first record is used. Every record must carry every head."""
    path = Path(path)
    try:
        # routed requests whose classifier was not consulted (or failed) carry no probabilities
        records = [rec for rec in read_prediction_log(path) if rec.get("probs")]
    except PredictionLogError as exc:
        raise InputError(str(exc)) from exc
    if not records:
        raise InputError(f"{path}: the prediction log holds no records")
    first = records[0]["probs"]
    order: dict[str, tuple[str, ...]] = (
        {h: tuple(v) for h, v in heads.items() if h in first}
        if heads
        else {h: tuple(p) for h, p in first.items()}
    )
    if not order:
        raise InputError(f"{path}: no head in the log matches the model's heads ({list(heads or {})})")
    probs = {h: np.zeros((len(records), len(labs))) for h, labs in order.items()}
    tokens: list[int] = []
    truncated: list[bool] = []
    texts: list[str] = []
    p_weak: list[float] = []
    models: dict[str, int] = {}
    for i, rec in enumerate(records):
        for h, labs in order.items():
            p = rec.get("probs", {}).get(h)
            if not isinstance(p, dict) or set(p) != set(labs):
                raise InputError(
                    f"{path}: record {i + 1} has no probabilities for head {h!r} over labels {list(labs)}"
                )
            probs[h][i] = [float(p[lab]) for lab in labs]
        if "tokens" in rec:
            tokens.append(int(rec["tokens"]))
        if "truncated" in rec:
            truncated.append(bool(rec["truncated"]))
        if isinstance(rec.get("text"), str):
            texts.append(rec["text"])
        if isinstance(rec.get("p_weak_ok"), (int, float)):
            p_weak.append(float(rec["p_weak_ok"]))
        m = rec.get("model") or {}
        key = f"{m.get('name')} v{m.get('version')}"
        models[key] = models.get(key, 0) + 1
    n = len(records)
    return LoggedPredictions(
        probs=probs,
        heads=order,
        token_counts=np.array(tokens, dtype=np.int64) if len(tokens) == n else None,
        truncated=np.array(truncated, dtype=bool) if len(truncated) == n else None,
        texts=texts if len(texts) == n else None,
        models=models,
        p_weak_ok=np.array(p_weak, dtype=np.float64) if len(p_weak) == n else None,
    )


def is_log(path: Path) -> bool:
    return Path(path).suffix.lower() in (".jsonl", ".log", ".ndjson") and is_prediction_log(path)
