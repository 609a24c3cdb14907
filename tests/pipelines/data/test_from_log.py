"""`data from-log` / `data merge`: the weak_ok rule (gate, feedback overriding it), what is skipped and
counted, the schema the trainer validates, old log records, and the merge for training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.data.dataset import load_labelled_file
from pipelines.data.from_log import merge_frames, rows_from_log, split_of
from serving.prediction_log import PredictionLog, PredictionLogError
from tests.pipelines.data.conftest import make_app

runner = CliRunner()
MODEL = {"name": "tierroute-classifier", "version": "3", "alias": "champion"}
RESULT = {
    "tier": "simple",
    "tier_probs": {"simple": 0.7, "complex": 0.2, "reasoning": 0.1},
    "task": "chat",
    "task_probs": {"chat": 0.9, "code": 0.1},
    "complexity": 0.2,
    "confidence": 0.7,
    "tokens": 5,
    "truncated": False,
}


def _route(ok: bool | None, *, cascade: str | None = "loop", skipped: bool = False) -> dict[str, Any]:
    gate = None if ok is None else {"ok": ok, "reasons": [] if ok else ["refusal"], "p_acceptable": None}
    return {
        "decided_by": "classifier",
        "rule": "ask",
        "cascade": cascade,
        "stage1": None if skipped else "cheap",
        "gate": gate,
        "escalated": not ok,
        "final": "cheap" if ok else "strong",
    }


def _id(i: int) -> str:
    return f"{i:032x}"


def _write_log(path: Path) -> None:
    with PredictionLog(path, include_text=True) as log:
        log.write(MODEL, [RESULT], ["a plain /v1/classify text"])  # not routed
        log.write_routed(_id(1), _route(True), "accepted, no feedback", result=RESULT, model=MODEL)
        log.write_routed(_id(2), _route(True), "accepted, then marked bad", result=RESULT, model=MODEL)
        log.write_routed(_id(3), _route(False), "rejected, then marked good", result=RESULT, model=MODEL)
        log.write_routed(_id(4), _route(None), "stage 1 failed at the provider", result=RESULT, model=MODEL)
        log.write_routed(_id(5), _route(None, cascade=None), "no cascade")
        log.write_routed(_id(6), _route(True), "accepted, good then bad", result=RESULT, model=MODEL)
        log.write_feedback(_id(2), "bad")
        log.write_feedback(_id(3), "good")
        log.write_feedback(_id(6), "good")
        log.write_feedback(_id(6), "bad")  # the last verdict wins
        log.write_feedback(_id(99), "bad")  # an id the log does not hold
    with PredictionLog(path, include_text=False) as log:
        log.write_routed(_id(7), _route(False), "hashed: cannot train", result=RESULT, model=MODEL)


def test_weak_ok_rule_feedback_overrides_the_gate_and_skips_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    _write_log(path)
    df, report = rows_from_log(path, licence="acme-internal")
    by_text = dict(zip(df["text"], df["weak_ok"], strict=True))
    assert by_text == {
        "accepted, no feedback": True,
        "accepted, then marked bad": False,
        "rejected, then marked good": False,
        "accepted, good then bad": False,
    }
    kinds = dict(zip(df["text"], df["label_kind"], strict=True))
    assert kinds["accepted, then marked bad"] == "traffic_feedback"
    assert kinds["rejected, then marked good"] == "traffic_gate"
    assert report.to_dict() == {
        "records": 8,
        "routed": 7,
        "rows": 4,
        "weak_ok_true": 1,
        "weak_ok_false": 3,
        "skipped_no_text": 1,
        "skipped_no_verdict": 2,
        "skipped_not_routed": 1,
        "feedback": 4,
        "feedback_unmatched": 1,
        "feedback_overrides": 2,
    }
    assert set(df["source"]) == {"traffic"} and set(df["licence"]) == {"acme-internal"}
    assert df["tier"].isna().all() and df["task"].isna().all()  # empty by default
    assert df["id"].iloc[0] == f"traffic:{_id(1)}"
    assert list(df["split"]) == [split_of(t, 0) for t in df["text"]]
    predicted, _ = rows_from_log(path, labels="predicted")
    assert set(predicted["tier"]) == {"simple"} and set(predicted["task"]) == {"chat"}


def test_split_is_seeded_and_shared_by_repeats() -> None:
    texts = [f"request number {i}" for i in range(400)]
    splits = [split_of(t, 0) for t in texts]
    assert splits == [split_of(t, 0) for t in texts]
    assert {s: splits.count(s) for s in set(splits)}["train"] in range(240, 320)
    assert [split_of(t, 1) for t in texts] != splits


def test_v1_records_still_parse_and_a_future_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    old = {"kind": "tierroute.prediction", "v": 1, "ts": "2025-01-01T00:00:00Z", "model": MODEL}
    path.write_text(json.dumps({**old, "labels": {}, "probs": {}, "text": "old"}) + "\n")
    df, report = rows_from_log(path)
    assert df.empty and report.records == 1 and report.skipped_not_routed == 1
    path.write_text(json.dumps({**old, "v": 3}) + "\n")
    with pytest.raises(PredictionLogError, match="v3"):
        rows_from_log(path)


def test_cli_from_log_writes_rows_the_trainer_accepts_and_merge_combines(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    _write_log(log)
    out = tmp_path / "traffic.parquet"
    result = runner.invoke(
        make_app(), ["data", "from-log", str(log), "--out", str(out), "--labels", "predicted"]
    )
    assert result.exit_code == 0, result.output
    assert "rows written" in result.stdout and "no text (hashed" in result.stdout
    rows = pd.read_parquet(out)
    assert len(rows) == 4
    # the labelled-data schema: the trainer's own validation passes on a weak_ok head
    data = load_labelled_file(out, ["weak_ok"], {"weak_ok": ["false", "true"]}, min_rows_per_class=1)
    assert set(data.df["weak_ok"]) == {"true", "false"}

    default = tmp_path / "default.csv"
    pd.DataFrame(
        {
            "id": ["d1", "d2", "d3"],
            "text": ["x", "y", "z"],
            "tier": ["simple", "complex", "simple"],
            "weak_ok": [True, None, False],
        }
    ).to_csv(default, index=False)
    merged = tmp_path / "merged.parquet"
    args = ["data", "merge", str(default), str(out), "--require", "weak_ok", "--out", str(merged)]
    result = runner.invoke(make_app(), args)
    assert result.exit_code == 0, result.output
    assert "1 rows without weak_ok dropped" in result.stdout
    both = pd.read_parquet(merged)
    assert len(both) == 2 + 4 and set(both["id"]) >= {"d1", "d3", f"traffic:{_id(1)}"}

    clash = runner.invoke(
        make_app(), ["data", "merge", str(out), str(out), "--out", str(tmp_path / "x.parquet")]
    )
    assert clash.exit_code == 2 and "more than one input" in clash.output


def test_cli_from_log_bad_input_exits_2(tmp_path: Path) -> None:
    missing = runner.invoke(make_app(), ["data", "from-log", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "not found" in missing.output
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text("not json\nnot json either\n")
    result = runner.invoke(
        make_app(), ["data", "from-log", str(corrupt), "--out", str(tmp_path / "o.parquet")]
    )
    assert result.exit_code == 2 and "corrupt.jsonl:1" in result.output
    hashed = tmp_path / "hashed.jsonl"
    with PredictionLog(hashed) as log:
        log.write_routed(_id(1), _route(True), "no text here", result=RESULT, model=MODEL)
    result = runner.invoke(
        make_app(), ["data", "from-log", str(hashed), "--out", str(tmp_path / "o.parquet")]
    )
    assert result.exit_code == 2 and "no labelled rows" in result.output
    assert not (tmp_path / "o.parquet").exists()


def test_merge_frames_requires_text() -> None:
    with pytest.raises(ValueError, match="no 'text' column"):
        merge_frames([pd.DataFrame({"id": ["a"]})])
