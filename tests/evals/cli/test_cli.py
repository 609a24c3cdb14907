"""End to end through the `tierroute` app: eval, drift, calibrate with the real trained bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from evals.cli import build_app

pytestmark = pytest.mark.slow
runner = CliRunner()


def _invoke(*args: object) -> Any:
    return runner.invoke(build_app(), [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def small_test_set(heldout_df: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 held-out rows, every source kept, as CSV (the format users most often bring)."""
    df = heldout_df.groupby("source").head(20).reset_index(drop=True)
    path = tmp_path_factory.mktemp("sets") / "heldout.csv"
    df.to_csv(path, index=False)
    return path


def test_help_texts() -> None:
    for cmd in ("eval", "drift", "calibrate"):
        res = _invoke(cmd, "--help")
        assert res.exit_code == 0 and "--model" in res.output


def test_eval_writes_report_with_intervals_and_routing(
    trained_bundle: Path, small_test_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    res = _invoke(
        "eval",
        "--model",
        trained_bundle,
        "--data",
        small_test_set,
        "--out",
        out,
        "--no-mlflow",
        "--bootstrap",
        "200",
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    heads = {h["head"]: h for h in summary["heads"]}
    assert set(heads) == {"tier", "task"}
    for h in heads.values():
        assert h["macro_f1"]["low"] <= h["macro_f1"]["estimate"] <= h["macro_f1"]["high"]
    assert {s["column"] for s in summary["slices"]} == {"source"}
    assert summary["routing"] is not None  # the shipped data carries weak_ok
    names = [r["name"] for r in summary["routing"]["routers"]]
    assert names[0].startswith("model") and "prompt length (tokens)" in names
    for png in ("confusion_tier.png", "reliability_task.png", "routing_curve.png"):
        assert (out / "plots" / png).is_file()
    assert "Routing value" in (out / "report.md").read_text()


def test_drift_against_itself_is_clean_and_shifted_set_drifts(
    trained_bundle: Path, small_test_set: Path, heldout_df: Any, tmp_path: Path
) -> None:
    res = _invoke(
        "drift",
        "--reference",
        small_test_set,
        "--model",
        trained_bundle,
        "--current",
        small_test_set,
        "--out",
        tmp_path / "same",
        "--no-mlflow",
        "--bootstrap",
        "200",
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "same" / "summary.json").read_text())["drift"] is False

    from evals.drift.synthetic import to_other_script, truncate_words

    shifted = truncate_words(to_other_script(heldout_df.sample(150, random_state=3), 0.5, seed=3), 5)
    cur = tmp_path / "shifted.jsonl"
    shifted.to_json(cur, orient="records", lines=True)
    res = _invoke(
        "drift",
        "--reference",
        small_test_set,
        "--model",
        trained_bundle,
        "--current",
        cur,
        "--out",
        tmp_path / "shifted",
        "--no-mlflow",
        "--bootstrap",
        "200",
    )
    assert res.exit_code == 1, res.output
    summary = json.loads((tmp_path / "shifted" / "summary.json").read_text())
    assert {"language", "token_length", "embedding"} <= set(summary["flagged"])
    assert (tmp_path / "shifted" / "report.html").read_text().count("<img") >= 5


def test_eval_split_without_split_column_and_warnings(
    trained_bundle: Path, small_labelled_file: Path, repo_root: Path, tmp_path: Path
) -> None:
    """`--split test` on a file without a 'split' column uses the split `train` would derive (and says
    so); a small set and the model's own training file are flagged."""
    from evals.eval.run import eval_warnings
    from pipelines.data.dataset import derived_splits

    shipped = pd.read_parquet(repo_root / "data" / "labelled" / "requests.parquet")
    shipped = shipped[shipped["tier"].notna() & shipped["task"].notna()]  # some sources leave one empty
    rows = shipped.sample(300, random_state=4).reset_index(drop=True)
    derived = derived_splits(rows["text"].tolist(), rows["id"].tolist())
    expected = derived.count("test")
    plain = tmp_path / "plain.csv"
    rows.drop(columns=["split"]).to_csv(plain, index=False)
    res = _invoke(
        "eval", "--model", trained_bundle, "--data", plain, "--split", "test", "--out", tmp_path / "e",
        "--no-mlflow", "--bootstrap", "100",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "has no 'split' column" in flat and "hash of the id" in flat
    assert 0 < expected < 100 and f"only {expected} rows" in flat
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["heads"][0]["n"] == expected

    own = eval_warnings(trained_bundle, small_labelled_file, None, 1000)
    assert len(own) == 1 and "trained on" in own[0] and "--split test" in own[0]
    assert eval_warnings(trained_bundle, small_labelled_file, "test", 1000) == []


def test_drift_refuses_a_current_set_too_small_to_have_power(
    trained_bundle: Path, heldout_df: Any, tmp_path: Path
) -> None:
    """5 rows used to report "no drift", exit 0: no test has power there, so it is bad input (exit 2)."""
    from evals.drift.run import MIN_CURRENT_ROWS

    tiny = tmp_path / "tiny.csv"
    heldout_df.head(5).to_csv(tiny, index=False)
    res = _invoke(
        "drift", "--reference", trained_bundle, "--current", tiny, "--out", tmp_path / "r", "--no-mlflow"
    )
    assert res.exit_code == 2, res.output
    assert "too few" in res.output and f"minimum {MIN_CURRENT_ROWS}" in " ".join(res.output.split())
    assert not (tmp_path / "r" / "summary.json").exists()


def test_training_stores_reference_stats_that_drift_reads(
    trained_bundle: Path, small_labelled_file: Path, tmp_path: Path
) -> None:
    """`train` summarises its test split into the bundle; `drift --reference BUNDLE` needs nothing else."""
    from pipelines.train.reference_stats import ReferenceStats
    from serving.model.bundle import read_manifest

    manifest = read_manifest(trained_bundle)  # verifies the new file's sha256 too
    test_rows = pd.read_parquet(small_labelled_file).query("split == 'test'").reset_index(drop=True)
    assert manifest["reference_stats"]["split"] == "test"
    assert manifest["reference_stats"]["rows"] == len(test_rows)
    stats = ReferenceStats.load(trained_bundle / "reference_stats.npz")
    assert stats.meta["training_data_digest"] == manifest["training_data"]["digest"]
    assert stats.token_counts is not None and stats.embeddings is not None
    assert stats.embeddings.shape == (len(test_rows), 384)
    assert int(stats.heads["tier"].label_counts.sum()) == len(test_rows)

    same = tmp_path / "same.csv"
    test_rows.to_csv(same, index=False)
    res = _invoke(
        "drift",
        "--reference",
        trained_bundle,
        "--current",
        same,
        "--out",
        tmp_path / "a",
        "--no-mlflow",
        "--bootstrap",
        "200",
    )
    assert res.exit_code == 0, res.output

    from evals.drift.synthetic import to_other_script

    shifted = tmp_path / "shifted.csv"
    to_other_script(test_rows, 1.0).to_csv(shifted, index=False)
    res = _invoke(
        "drift",
        "--reference",
        trained_bundle,
        "--current",
        shifted,
        "--out",
        tmp_path / "b",
        "--no-mlflow",
        "--bootstrap",
        "200",
    )
    assert res.exit_code == 1, res.output
    assert "language" in json.loads((tmp_path / "b" / "summary.json").read_text())["flagged"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prompt,tier\nhello,simple\n", "no 'text' column"),
        ("text,tier\nhello,legendary\n", "labels the model does not know"),
        ("text,tier\n,simple\n", "empty or non-string"),
    ],
)
def test_drift_bad_input_exits_2(
    trained_bundle: Path, small_test_set: Path, tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    res = _invoke(
        "drift",
        "--reference",
        small_test_set,
        "--model",
        trained_bundle,
        "--current",
        bad,
        "--out",
        tmp_path / "r",
        "--no-mlflow",
    )
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_drift_missing_files_exit_2(trained_bundle: Path, tmp_path: Path) -> None:
    res = _invoke(
        "drift", "--reference", tmp_path / "nope.npz", "--current", tmp_path / "x.csv", "--no-mlflow"
    )
    assert res.exit_code == 2
    res = _invoke("eval", "--model", tmp_path / "no-bundle", "--data", tmp_path / "x.csv", "--no-mlflow")
    assert res.exit_code == 2


def test_prediction_log_as_unlabelled_current(
    trained_bundle: Path, small_test_set: Path, eval_bundle: Any, tmp_path: Path
) -> None:
    from evals.io.models import predict_in_batches
    from pipelines.train.reference_stats import compute_reference_stats
    from serving.prediction_log import PredictionLog

    df = pd.read_csv(small_test_set)
    heads = {h.name: h.labels for h in eval_bundle.heads}
    ref = compute_reference_stats(predict_in_batches(eval_bundle, df["text"].tolist()), df, heads=heads)
    ref_path = ref.save(tmp_path / "reference_stats.npz")
    texts = df["text"].tolist()[:80]
    log = PredictionLog(tmp_path / "preds.jsonl", include_text=False)
    log.write(
        {"name": "t", "version": "1", "alias": None},
        [p.to_result() for p in eval_bundle.predict(texts)],
        texts,
    )
    log.close()
    res = _invoke(
        "drift",
        "--reference",
        ref_path,
        "--current",
        tmp_path / "preds.jsonl",
        "--out",
        tmp_path / "r",
        "--no-mlflow",
        "--bootstrap",
        "200",
    )
    assert res.exit_code == 0, res.output  # 80 rows of the reference set itself: no drift
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    ran = {c["name"] for c in summary["checks"]}
    assert {"prediction_mix/tier", "confidence/task", "token_length"} <= ran
    assert "embedding" in summary["skipped"] and "performance/tier" in summary["skipped"]


def test_calibrate_writes_new_bundle_and_keeps_source(
    trained_bundle: Path, small_test_set: Path, tmp_path: Path
) -> None:
    from serving.model.bundle import Bundle, read_manifest

    before = (trained_bundle / "bundle.json").read_text()
    target = tmp_path / "calibrated"
    res = _invoke(
        "calibrate",
        "--model",
        trained_bundle,
        "--data",
        small_test_set,
        "--target-share",
        "0.3",
        "--bundle-out",
        target,
        "--weak-cost",
        "0.2",
        "--strong-cost",
        "5",
        "--bootstrap",
        "200",
    )
    assert res.exit_code == 0, res.output
    assert (trained_bundle / "bundle.json").read_text() == before
    routing = read_manifest(target)["thresholds"]["routing"]
    assert routing["score"] == "complexity" and routing["objective"] == "target_share"
    assert routing["expected_strong_share"]["estimate"] <= 0.3
    assert "expected_gap_recovered" in routing and "expected_cost_per_1k" in routing
    Bundle.load(target).self_check()
    again = _invoke(
        "calibrate",
        "--model",
        trained_bundle,
        "--data",
        small_test_set,
        "--quality-floor",
        "0.8",
        "--bundle-out",
        target,
    )
    assert again.exit_code == 2 and "already exists" in again.output
    res = _invoke(
        "calibrate",
        "--model",
        trained_bundle,
        "--data",
        small_test_set,
        "--target-share",
        "0.3",
        "--quality-floor",
        "0.5",
    )
    assert res.exit_code == 2 and "exactly one objective" in res.output


@pytest.mark.parametrize(
    ("objective", "value", "expected"),
    [
        ("--target-share", "1.5", "--target-share must be in [0, 1]"),
        ("--quality-floor", "-0.1", "--quality-floor must be in [0, 1]"),
        ("--budget", "3", "--budget needs --weak-cost and --strong-cost"),
    ],
)
def test_calibrate_rejects_impossible_objective_before_loading_anything(
    tmp_path: Path, objective: str, value: str, expected: str
) -> None:
    """The objective is checked before the model is resolved or a row scored: a model path that does
    not exist is never reached, so the message is about the objective."""
    data = tmp_path / "d.csv"
    data.write_text("text\nhello\n")
    res = _invoke("calibrate", "--model", tmp_path / "nowhere", "--data", data, objective, value)
    assert res.exit_code == 2, res.output
    assert expected in " ".join(res.output.split())
    assert "nowhere" not in res.output


def test_python_dash_m_runs_the_root_app() -> None:
    """`tierroute demo` starts the service as `python -m evals.cli serve`: that entry must exist."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "evals.cli", "serve", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "--model" in done.stdout and "--reload-interval" in done.stdout
