"""Outcome -> routing targets: class quality, graded weak_ok, outcome ladder, the real outcome table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.data.build import build_dataset, load_built
from pipelines.data.outcomes import (
    LICENCES,
    MODEL_CLASSES,
    OUTCOME_SOURCES,
    ROUTING_PAIRS,
    build_outcomes,
    class_quality,
    item_difficulty,
    ladder_tier,
    p_weak_ok,
)
from tests.pipelines.data.conftest import RAW

CLASSES = {"small": ("s1", "s2"), "mid": ("m1",), "frontier": ("f1", "f2")}


def test_p_weak_ok_is_share_of_pairs_and_reduces_to_the_boolean_rule() -> None:
    q = {"s1": 1.0, "s2": 0.0, "f1": 1.0, "f2": 0.0}
    # pairs (s1,f1) ok, (s1,f2) ok, (s2,f1) not, (s2,f2) ok
    assert p_weak_ok(q, ("s1", "s2"), ("f1", "f2")) == pytest.approx(0.75)
    assert p_weak_ok({"w": 0.0, "s": 0.0}, ("w",), ("s",)) == 1.0  # both wrong: strong is no better
    assert p_weak_ok({"w": 0.0, "s": 1.0}, ("w",), ("s",)) == 0.0
    assert p_weak_ok({"w": 1.0}, ("w",), ("s",)) is None  # strong not measured


def test_item_difficulty_is_one_minus_the_mean_over_every_classed_measured_model() -> None:
    q = {"s1": 1.0, "s2": 0.0, "m1": 1.0, "f1": 1.0, "other": 0.0}  # f2 not measured, other unclassed
    assert item_difficulty(q, CLASSES) == pytest.approx(1 - 3 / 4)
    assert item_difficulty({"other": 1.0}, CLASSES) is None


def test_class_quality_uses_only_measured_models() -> None:
    assert class_quality({"s1": 1.0}, ("s1", "s2")) == 1.0
    assert class_quality({}, ("s1",)) is None


@pytest.mark.parametrize(
    ("quality", "tier"),
    [
        ({"s1": 1, "s2": 1, "m1": 1, "f1": 1, "f2": 1}, "simple"),
        ({"s1": 0, "s2": 0, "m1": 1, "f1": 1, "f2": 1}, "complex"),
        ({"s1": 0, "s2": 1, "m1": 0, "f1": 1, "f2": 1}, "reasoning"),  # small 0.5, mid 0, frontier 1
        (
            {"s1": 0, "s2": 0, "m1": 0, "f1": 0, "f2": 0},
            "reasoning",
        ),  # unsolved: nothing cheaper known to work
        ({"s1": 1, "s2": 1, "m1": 1, "f1": 1}, "simple"),  # f2 missing: class mean over measured models
    ],
)
def test_ladder_tier(quality: dict[str, float], tier: str) -> None:
    assert ladder_tier(quality, CLASSES) == tier


def test_every_source_documents_classes_pair_and_licence() -> None:
    for source in OUTCOME_SOURCES:
        cheap, strong = ROUTING_PAIRS[source]
        assert MODEL_CLASSES[source][cheap] and MODEL_CLASSES[source][strong]
        assert source in LICENCES
    assert LICENCES["alpaca_eval_preferences"] == ("CC-BY-NC-4.0", False)


def test_real_outcome_table() -> None:
    df = build_outcomes(RAW, None)
    counts = df["source"].value_counts()
    assert counts["mmlu_pro_outcomes"] == 12_032 and counts["llmrouter_scores"] == 4_758
    assert counts["alpaca_eval_preferences"] == 473 and counts["routellm_mmlu"] > 14_000
    assert df["id"].is_unique
    assert df["p_weak_ok"].between(0, 1).all() and df["weak_quality"].between(0, 1).all()
    assert set(df["ladder_tier"]) == {"simple", "complex", "reasoning"}
    assert (df["weak_ok"] == (df["p_weak_ok"] >= 0.5)).all()
    assert df["difficulty"].between(0, 1).all()
    # difficulty is graded where a source measured many models (10 on MMLU-Pro), binary-ish on RouteLLM
    assert df.loc[df["source"] == "mmlu_pro_outcomes", "difficulty"].round(9).nunique() >= 11
    assert df.loc[df["source"] == "routellm_mmlu", "difficulty"].nunique() <= 3
    # routellm: one model per class -> the graded target equals the shipped boolean weak_ok
    shipped = load_built(RAW.parent / "labelled" / "requests.parquet")
    shipped = shipped[shipped["source"] == "routellm_mmlu"].set_index("text")["weak_ok"]
    mine = df[df["source"] == "routellm_mmlu"].drop_duplicates("text").set_index("text")["p_weak_ok"]
    common = shipped.index.intersection(mine.index)
    assert len(common) > 2_500
    assert ((mine[common] == 1.0) == shipped[common].astype(bool)).all()
    commercial = build_outcomes(RAW, None, commercial_only=True)
    assert "alpaca_eval_preferences" not in set(commercial["source"])
    assert len(commercial) == len(df) - 473


def test_commercial_only_build_leaves_out_non_commercial_rows(tmp_path: Path) -> None:
    report = build_dataset(RAW, tmp_path, commercial_only=True)
    df = load_built(report.path)
    assert df["commercial"].all()
    assert "alpaca_eval" not in set(df["source"])
    assert report.summary["commercial_only"] is True
    assert set(df["label_kind"]) == {"outcome", "hand", "proxy"}


def test_default_build_marks_licence_and_label_kind(built_df: pd.DataFrame) -> None:
    alpaca = built_df[built_df["source"] == "alpaca_eval"]
    assert (alpaca["licence"] == "CC-BY-NC-4.0").all() and not alpaca["commercial"].any()
    assert (built_df.loc[built_df["source"] == "routellm_mmlu", "label_kind"] == "outcome").all()
    assert (built_df.loc[built_df["source"] == "gsm8k_train", "label_kind"] == "proxy").all()
    assert (built_df["licence"] != "unknown").all()
