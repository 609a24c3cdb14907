"""The opt-in prediction log: records, thread safety, torn lines, and reading it back as arrays."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from evals.io.tables import InputError, is_log, read_logged_predictions
from serving.prediction_log import PredictionLog, PredictionLogError, read_prediction_log

MODEL = {"name": "tierroute-classifier", "version": "3", "alias": "champion"}


def _result(p_simple: float) -> dict[str, object]:
    rest = (1 - p_simple) / 2
    return {
        "tier": "simple" if p_simple > rest else "complex",
        "tier_probs": {"simple": p_simple, "complex": rest, "reasoning": rest},
        "task": "chat",
        "task_probs": {"chat": 0.9, "code": 0.1},
        "complexity": rest * 1.5,
        "confidence": max(p_simple, rest),
        "tokens": 12,
        "truncated": False,
    }


def test_text_only_when_enabled(tmp_path: Path) -> None:
    with PredictionLog(tmp_path / "a.jsonl") as log:
        log.write(MODEL, [_result(0.8)], ["secret text"])
    with PredictionLog(tmp_path / "b.jsonl", include_text=True) as log:
        log.write(MODEL, [_result(0.8)], ["secret text"])
    a = (tmp_path / "a.jsonl").read_text()
    assert "secret text" not in a
    rec = json.loads(a)
    assert rec["labels"] == {"tier": "simple", "task": "chat"}
    assert rec["model"]["version"] == "3" and rec["tokens"] == 12
    assert json.loads((tmp_path / "b.jsonl").read_text())["text"] == "secret text"


def test_concurrent_writers_produce_whole_lines(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "c.jsonl")

    def work() -> None:
        for _ in range(50):
            log.write(MODEL, [_result(0.6)] * 4)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    records = list(read_prediction_log(tmp_path / "c.jsonl"))
    assert len(records) == 8 * 50 * 4 == log.records_written


def test_torn_last_line_skipped_but_corrupt_middle_line_raises(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with PredictionLog(path) as log:
        log.write(MODEL, [_result(0.7), _result(0.2)])
    with path.open("a") as fh:
        fh.write('{"kind": "tierroute.predic')  # crash mid-write
    assert len(list(read_prediction_log(path))) == 2
    path.write_text(path.read_text().replace('"kind":"tierroute.prediction"', "garbage", 1))
    with pytest.raises(PredictionLogError, match=":1:"):
        list(read_prediction_log(path))


def test_read_as_arrays_in_model_label_order(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    with PredictionLog(path, include_text=True) as log:
        log.write(MODEL, [_result(0.7), _result(0.1)], ["a", "b"])
    assert is_log(path)
    heads = {"tier": ("reasoning", "complex", "simple")}
    logged = read_logged_predictions(path, heads)
    assert logged.n == 2
    np.testing.assert_allclose(logged.probs["tier"][0], [0.15, 0.15, 0.7])
    assert logged.texts == ["a", "b"]
    assert logged.token_counts is not None and list(logged.token_counts) == [12, 12]
    with pytest.raises(InputError, match="no probabilities for head"):
        read_logged_predictions(path, {"tier": ("simple", "complex")})


def test_routed_and_feedback_records_share_the_log_and_drift_reads_the_classified_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "routed.jsonl"
    route = {"decided_by": "explicit", "rule": None, "cascade": None, "stage1": None, "gate": None}
    with PredictionLog(path) as log:
        log.write(MODEL, [_result(0.7)])
        log.write_routed(
            "a" * 32, {**route, "decided_by": "classifier"}, "text", result=_result(0.2), model=MODEL
        )
        log.write_routed("b" * 32, route, "no classifier here")  # explicit route: no probabilities
        log.write_feedback("a" * 32, "bad")
    assert [r.get("id") for r in read_prediction_log(path)] == [None, "a" * 32, "b" * 32]
    logged = read_logged_predictions(path, {"tier": ("simple", "complex", "reasoning")})
    assert logged.n == 2  # the classify record and the routed one the classifier decided
    with pytest.raises(ValueError, match="verdict"):
        log.write_feedback("c" * 32, "meh")
