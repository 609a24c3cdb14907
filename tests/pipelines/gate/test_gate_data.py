"""The gate dataset builder on the real shipped raw data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.gate.data import (
    REASONS,
    build_rows,
    load_gate_dataset,
    truncate_mid_sentence,
    truncate_response,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def df(gate_dataset: Path) -> pd.DataFrame:
    return load_gate_dataset(gate_dataset)


def test_columns_labels_and_reasons(df: pd.DataFrame) -> None:
    assert set(df["reason"]) <= set(REASONS)
    assert set(df["split"]) == {"train", "validation", "test"}
    assert (df.loc[df["reason"] == "ok", "acceptable"]).all()
    assert not (df.loc[df["reason"] != "ok", "acceptable"]).any()
    assert df["id"].is_unique


def test_gamed_generators_unacceptable_by_construction(df: pd.DataFrame) -> None:
    gamed = df[
        df["generator"].isin(["NullModel", "gpt4_gamed"]) & (df["source"] == "alpaca_eval:by_construction")
    ]
    assert len(gamed) > 900
    assert not gamed["acceptable"].any()
    assert set(gamed["reason"]) == {"garbage", "truncated"}


def test_prompt_groups_never_straddle_splits(df: pd.DataFrame) -> None:
    per_prompt = df.groupby("prompt")["split"].nunique()
    assert per_prompt.max() == 1
    per_group = df.groupby("group")["split"].nunique()
    assert per_group.max() == 1


def test_synthetic_rows_are_labelled_and_derived(df: pd.DataFrame) -> None:
    trunc = df[df["source"] == "synthetic:truncate"]
    swap = df[df["source"] == "synthetic:swap"]
    assert len(trunc) > 100 and len(swap) > 100
    assert set(trunc["reason"]) == {"truncated"} and set(swap["reason"]) == {"off_instruction"}
    good = df[df["acceptable"]]
    # every swapped response is a real acceptable response of ANOTHER prompt in the same split
    lookup = good.groupby("response")["prompt"].apply(set)
    for _, row in swap.head(50).iterrows():
        assert row["response"] in lookup.index
        assert row["prompt"] not in lookup[row["response"]]


def test_build_is_deterministic(gate_dataset: Path) -> None:
    rows_a, _ = build_rows(REPO / "data" / "raw", REPO / "data" / "gate" / "refusal_labels.csv")
    rows_b, _ = build_rows(REPO / "data" / "raw", REPO / "data" / "gate" / "refusal_labels.csv")
    assert [r["id"] for r in rows_a] == [r["id"] for r in rows_b]
    assert len(rows_a) == len(load_gate_dataset(gate_dataset))


def test_truncate_mid_sentence() -> None:
    text = "The sun rose over the hills. Birds began to sing as the village woke up and bakers lit ovens."
    cut = truncate_mid_sentence(text, 0.6)
    assert text.startswith(cut) and len(cut) < len(text)
    assert cut[-1] not in ".!?:;"


def test_truncation_styles_cut_inside_a_word_or_a_code_block() -> None:
    text = (
        "Here is how:\n\n```python\ndef add(a, b):\n    return a + b\n\nprint(add(1, 2))\n```\n\n"
        "This prints 3."
    )
    mid = truncate_response(text, 0.5, "mid_word")
    assert text.startswith(mid) and mid[-1].isalnum() and text[len(mid)].isalnum()  # ends inside a word
    code = truncate_response(text, 0.5, "code")
    assert text.startswith(code) and code.count("```") == 1  # the fence stays open
    prose = "No code here, only a sentence that goes on for a while and then some more words at the end."
    assert truncate_response(prose, 0.5, "code") == truncate_mid_sentence(prose, 0.5)  # fallback


def test_missing_raw_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="copy the raw data"):
        build_rows(tmp_path, tmp_path / "labels.csv")


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_gate_dataset(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    pd.DataFrame(
        {"prompt": ["a"], "response": ["b"], "acceptable": [True], "reason": ["ok"], "split": ["dev"]}
    ).to_parquet(bad)
    with pytest.raises(ValueError, match="unknown split"):
        load_gate_dataset(bad)


def test_acceptable_means_returnable_not_as_good_as_gpt4(df: pd.DataFrame) -> None:
    # no relative-preference labels any more
    assert not set(df["reason"]) & {"low_quality", "dispreferred"}
    strong = df[df["source"] == "alpaca_eval:strong"]
    assert set(strong["generator"]) == {"gpt4_1106_preview", "claude-2.1"} and strong["acceptable"].all()
    assert df.loc[df["source"] == "alpaca_eval:competent", "acceptable"].all()


def test_short_correct_answers_are_acceptable_and_wrong_ones_are_not(df: pd.DataFrame) -> None:
    short_ok = df[df["acceptable"] & (df["response"].str.len() < 40)]
    assert len(short_ok) > 1000
    assert {"nq_open:gold", "truthfulqa:best", "mmlu_pro:gold"} <= set(short_ok["source"])
    wrong = df[df["source"].isin(["truthfulqa:incorrect", "mmlu_pro:wrong_option"])]
    assert len(wrong) > 1000 and set(wrong["reason"]) == {"incorrect"} and not wrong["acceptable"].any()
    # every TruthfulQA question has its best answer and a listed incorrect one in the same split
    tqa = df[df["source"].str.startswith("truthfulqa")]
    assert (tqa.groupby("prompt")["acceptable"].nunique() == 2).all()
    assert (tqa.groupby("prompt")["split"].nunique() == 1).all()


def test_licences_and_non_commercial_rows(df: pd.DataFrame) -> None:
    alpaca = df[df["source"].str.startswith("alpaca_eval")]
    assert alpaca["non_commercial"].all() and alpaca["licence"].str.contains("CC-BY-NC-4.0").all()
    other = df[df["source"].str.startswith(("coconot", "truthfulqa", "nq_open", "mmlu_pro"))]
    assert not other["non_commercial"].any() and (other["licence"] != "").all()
    synthetic = df[df["source"].str.startswith("synthetic")]
    assert (synthetic["licence"] != "").all()


def test_truthfulqa_right_answers_that_restate_the_question_are_acceptable(
    df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second listed CORRECT TruthfulQA answer per question: short sentences restating the question
    are on both sides, so "restates the question" is not a proxy for "listed wrong answer"."""
    import csv

    extra = df[df["source"] == "truthfulqa:correct"]
    assert len(extra) > 600 and extra["acceptable"].all() and set(extra["reason"]) == {"ok"}
    assert not extra["response"].str.lower().str.contains("no comment").any()
    best = df[df["source"] == "truthfulqa:best"].set_index("prompt")["response"]
    assert all(best.get(p) != r for p, r in zip(extra["prompt"], extra["response"], strict=True))
    with (REPO / "data/raw/truthfulqa/TruthfulQA.csv").open(newline="", encoding="utf-8") as fh:
        listed = {
            r["Question"].strip(): {a.strip().rstrip(".") for a in r["Correct Answers"].split(";")}
            for r in csv.DictReader(fh)
        }
    for p, r in zip(extra["prompt"].head(200), extra["response"].head(200), strict=True):
        assert r.rstrip(".") in listed[p]
    # they seed no synthetic rows: every truncation and off-topic swap is the same as without them
    import pipelines.gate.data as gate_data

    monkeypatch.setattr(gate_data, "TRUTHFULQA_EXTRA_CORRECT", False)
    without, _ = build_rows(REPO / "data/raw", REPO / "data/gate/refusal_labels.csv")
    synthetic = set(df.loc[df["source"].str.startswith("synthetic"), "id"])
    assert synthetic == {r["id"] for r in without if r["source"].startswith("synthetic")}
    assert {r["id"] for r in without} == set(df["id"]) - set(extra["id"])
