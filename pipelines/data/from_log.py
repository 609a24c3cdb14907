"""Labelled `weak_ok` rows from the service's own traffic: a prediction/outcome log in, training rows out.

Job: `rows_from_log(paths)` reads logs written by `serving.prediction_log` (the service's
`--prediction-log`, with `TIERROUTE_PREDICTION_LOG_TEXTS=1`) and returns rows in the labelled-data schema of
`pipelines.data.dataset` (the columns of the shipped `data/labelled/requests.parquet`), plus a report
of what was kept and why the rest was skipped. `merge_frames` concatenates two labelled tables so
`tierroute train` can learn from the default data and the traffic together.

The label, per routed request whose cascade ran stage 1 and gated it:
- `weak_ok = True`  when the gate accepted stage 1's answer and no feedback on it says "bad";
- `weak_ok = False` when the gate rejected it (whatever the feedback: the user then judged the
  stage-2 answer, which says nothing about stage 1's), or the gate accepted it and the user said
  "bad" (feedback overrides the gate: it saw what the gate missed).
The last feedback record for an id wins. Skipped and counted: records without text (hashed:
nothing to embed), routed requests without a cascade or whose stage 1 was skipped (alarm) or
failed at the provider (no verdict on its quality), and plain `/v1/classify` records.

Other columns: `id` = `traffic:<request id>`, `source` = "traffic", `licence` = the deployment's
(`--licence`), `commercial` as given, `label_kind` = `traffic_gate` or `traffic_feedback` (a verdict
changed by feedback), `group` = a hash of the text (repeats share it), `split` = a seeded hash of
the text (70/15/15; repeats of a text land in one split, so a memorised request cannot leak from
train into test). `tier`/`task` are left empty by default: the served model's own predictions carry
no new information and training on them only reinforces its mistakes (`tierroute train` fits each head
on the rows labelled for it, so these rows train the `weak_ok` head and the routing head, where they
count as source `traffic`); `labels="predicted"` copies them anyway.

Trade-off: the whole log is read into memory (one dict per kept row), fine for the tens of
thousands of requests a retrain uses; larger logs can be cut with the usual tools first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipelines.data.build import COLUMNS
from serving.prediction_log import FEEDBACK_KIND, read_log

if TYPE_CHECKING:
    import pandas as pd

SOURCE = "traffic"
DEFAULT_LICENCE = "own-traffic"
Labels = Literal["none", "predicted"]


@dataclass
class FromLogReport:
    """What `rows_from_log` read, kept and skipped."""

    records: int = 0
    routed: int = 0
    rows: int = 0
    weak_ok_true: int = 0
    weak_ok_false: int = 0
    skipped_no_text: int = 0
    skipped_no_verdict: int = 0
    skipped_not_routed: int = 0
    feedback: int = 0
    feedback_unmatched: int = 0
    feedback_overrides: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def split_of(text: str, seed: int) -> str:
    """train / validation / test (70/15/15) from a seeded hash of the text."""
    digest = hashlib.sha256(f"tierroute-traffic-split:{seed}:{text}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") % 10_000 / 10_000
    return "train" if fraction < 0.70 else ("validation" if fraction < 0.85 else "test")


def _feedback(paths: Sequence[Path]) -> dict[str, str]:
    verdicts: dict[str, str] = {}
    for path in paths:
        for rec in read_log(path):
            if rec["kind"] == FEEDBACK_KIND and isinstance(rec.get("id"), str):
                verdicts[rec["id"]] = str(rec.get("verdict"))
    return verdicts


def rows_from_log(
    paths: Path | Iterable[Path],
    *,
    licence: str = DEFAULT_LICENCE,
    commercial: bool = True,
    labels: Labels = "none",
    seed: int = 0,
) -> tuple[pd.DataFrame, FromLogReport]:
    """Labelled rows (see the module doc for the rule) and the report; raises
    `serving.prediction_log.PredictionLogError` for an unreadable or corrupt log."""
    import pandas as pd

    if labels not in ("none", "predicted"):
        raise ValueError(f"labels must be 'none' or 'predicted', got {labels!r}")
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    verdicts = _feedback(files)
    report = FromLogReport(feedback=len(verdicts))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in files:
        for rec in read_log(path):
            if rec["kind"] == FEEDBACK_KIND:
                continue
            report.records += 1
            route = rec.get("route")
            rid = rec.get("id")
            if not isinstance(route, dict) or not isinstance(rid, str):
                report.skipped_not_routed += 1
                continue
            report.routed += 1
            seen.add(rid)
            gate = route.get("gate")
            if not route.get("cascade") or not isinstance(gate, dict) or "ok" not in gate:
                report.skipped_no_verdict += 1
                continue
            text = rec.get("text")
            if not isinstance(text, str) or not text.strip():
                report.skipped_no_text += 1
                continue
            verdict = verdicts.get(rid)
            accepted = bool(gate["ok"])
            weak_ok = accepted and verdict != "bad"
            overridden = accepted and verdict == "bad"
            report.feedback_overrides += int(overridden)
            predicted = rec.get("labels") or {}
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
            rows.append(
                {
                    "id": f"{SOURCE}:{rid}",
                    "text": text,
                    "source": SOURCE,
                    "tier": predicted.get("tier") if labels == "predicted" else None,
                    "task": predicted.get("task") if labels == "predicted" else None,
                    "weak_ok": weak_ok,
                    "split": split_of(text, seed),
                    "group": f"{SOURCE}:{digest}",
                    "licence": licence,
                    "commercial": commercial,
                    "label_kind": "traffic_feedback" if overridden else "traffic_gate",
                }
            )
    report.feedback_unmatched = sum(1 for rid in verdicts if rid not in seen)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["weak_ok"] = df["weak_ok"].astype(object)
    report.rows = len(df)
    report.weak_ok_true = int((df["weak_ok"] == True).sum())  # noqa: E712 (object column)
    report.weak_ok_false = report.rows - report.weak_ok_true
    return df, report


def merge_frames(frames: Sequence[pd.DataFrame], *, require: Sequence[str] = ()) -> tuple[pd.DataFrame, int]:
    """Concatenate labelled tables (union of columns, missing cells empty); rows whose `require`
    columns are empty are dropped. Returns the table and the number of rows dropped. Raises
    ValueError for a table without `text` or an id used twice."""
    import pandas as pd

    for i, df in enumerate(frames):
        if "text" not in df.columns:
            raise ValueError(f"input {i + 1} has no 'text' column")
    merged = pd.concat([df.astype(object) for df in frames], ignore_index=True, sort=False)
    merged = merged.astype(object).where(merged.notna(), None)
    for column in merged.columns:
        merged[column] = _harmonise(merged[column].tolist())
    missing = [c for c in require if c not in merged.columns]
    if missing:
        raise ValueError(f"--require column(s) {missing} are in no input")
    before = len(merged)
    for column in require:
        merged = merged[merged[column].notna()]
    merged = merged.reset_index(drop=True)
    if "id" in merged.columns:
        dupes = merged["id"].dropna()
        dupes = dupes[dupes.duplicated()]
        if len(dupes):
            raise ValueError(f"{len(dupes)} id(s) used in more than one input, e.g. {dupes.iloc[0]!r}")
    return merged, before - len(merged)


_BOOL_TEXT = {"true": True, "false": False}


def _harmonise(values: list[Any]) -> list[Any]:
    """One type per column for the file writers: booleans stay booleans (a CSV's "True"/"false" text
    becomes one too), a column mixing other types becomes text; empty cells stay None."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in _BOOL_TEXT) for v in present):
        return [v if v is None or isinstance(v, bool) else _BOOL_TEXT[v.strip().lower()] for v in values]
    if len({type(v) for v in present}) > 1:
        return [None if v is None else str(v) for v in values]
    return values


def write_frame(df: pd.DataFrame, out: Path) -> Path:
    """Write a labelled table as Parquet, CSV or JSONL by the suffix of `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df.to_parquet(out, index=False)
    elif suffix == ".csv":
        df.to_csv(out, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        df.to_json(out, orient="records", lines=True, force_ascii=False)
    else:
        raise ValueError(
            f"{out}: unsupported output type {suffix or '(none)'!r}; use .parquet, .csv or .jsonl"
        )
    return out
