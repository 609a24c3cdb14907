"""The label ablation: masks only the candidate's (source, head) labels on the rows a head fits on, and scores
every candidate on the same test rows with the labels as built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evals.eval.label_ablation import (
    HAND_SOURCE,
    Candidate,
    Setup,
    _labels_for,
    batch_grid,
    default_grid,
    fit_cache_key,
    score_grid,
    with_request_features,
)
from pipelines.data.labels import DEFAULT_LABEL_SETS, TASKS, TIERS


def _frame(n: int = 240) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    sources = np.array(["proxy_a", "proxy_b", HAND_SOURCE])[np.arange(n) % 3]
    tier = np.array(TIERS)[(np.arange(n) // 3) % 3]
    task = np.array(TASKS)[(np.arange(n) // 9) % len(TASKS)]
    # proxy_b's tier contradicts the text (a wrong rule): its rows say "simple" whatever they look like
    X = rng.normal(size=(n, 8))
    X[:, 0] += 3 * (np.arange(n) // 3 % 3)  # tier is readable from dimension 0
    X[np.arange(n), 1 + (np.arange(n) // 9) % 7] += 3  # task from dimensions 1-7
    tier_b = np.where(sources == "proxy_b", "simple", tier)
    split = np.array(["train"] * 6 + ["validation"] * 2 + ["test"] * 2)[np.arange(n) // 3 % 10]
    df = pd.DataFrame({"source": sources, "tier": tier_b, "task": task, "split": split})
    return df, X


def _setup(df: pd.DataFrame, X: np.ndarray) -> Setup:
    """The frame's rows with 3 placeholder sanity rows; only proxy_a is untouched for tier."""
    return Setup(
        df=df,
        X=X,
        sanity_X=X[:3],
        sanity=[{"text": "t", "tier": "simple", "task": "code"}] * 3,
        label_sets=dict(DEFAULT_LABEL_SETS),
        common_sources={"tier": ["proxy_a"], "task": ["proxy_a", "proxy_b"]},
        digest="d",
    )


def test_labels_for_masks_only_the_named_source_and_head_outside_the_test_split() -> None:
    df, _ = _frame()
    y = _labels_for(df, "tier", Candidate("x", (("proxy_b", "tier"),)))
    masked = (df["source"] == "proxy_b") & (df["split"] != "test")
    assert y[masked].isna().all() and y[~masked].notna().all()
    assert (y[~masked] == df["tier"][~masked]).all()
    assert _labels_for(df, "task", Candidate("x", (("proxy_b", "tier"),))).equals(df["task"])


def test_dropping_a_contradicting_proxy_label_helps_on_the_same_hand_rows() -> None:
    df, X = _frame()
    setup = _setup(df, X)
    grid = [Candidate("baseline", hand_weight=1.0), Candidate("-b", (("proxy_b", "tier"),), hand_weight=1.0)]
    base, dropped = score_grid(setup, grid, echo=lambda _: None)
    assert dropped["hand_tier"] > base["hand_tier"]  # proxy_b's wrong "simple" no longer pulls the head
    assert dropped["f1_tier_common"] >= base["f1_tier_common"]
    assert dropped["hand_task"] == base["hand_task"]  # the task head did not change
    assert {"sanity_tier", "sanity_task", "f1_tier_all", "f1_task_all"} <= set(base)


def test_default_grid_starts_with_the_baseline_and_names_are_unique() -> None:
    grid = default_grid()
    assert grid[0] == Candidate("baseline")
    assert len({c.name for c in grid}) == len(grid)


def test_request_features_beside_the_embedding_reach_a_signal_the_embedding_lacks() -> None:
    df, X = _frame()
    tier_index = (np.arange(len(df)) // 3) % 3
    X = X.copy()
    X[:, 0] = np.random.default_rng(1).normal(size=len(df))  # the embedding no longer shows the tier
    features = np.stack([tier_index * 5.0 + 100.0, np.ones(len(df))], axis=1)  # a feature does
    setup = _setup(df, X)
    probe = with_request_features(setup, 1.0, features, features[:3])
    assert probe.X.shape == (len(df), X.shape[1] + 2) and probe.sanity_X.shape == (3, X.shape[1] + 2)
    train = (df["split"] == "train").to_numpy()
    assert abs(float(probe.X[train, -2].mean())) < 1e-4  # standardised on the train split
    assert probe.digest != setup.digest  # a separate fit cache key
    grid = [Candidate("baseline", (("proxy_b", "tier"),), hand_weight=1.0)]
    (base,) = score_grid(setup, grid, echo=lambda _: None)
    (with_features,) = score_grid(probe, grid, echo=lambda _: None)
    assert with_features["hand_tier"] > base["hand_tier"] + 0.2


def test_a_hand_batch_is_masked_for_the_without_candidate_and_scored_apart() -> None:
    df, X = _frame()
    hand = (df["source"] == HAND_SOURCE).to_numpy()
    own = np.where(hand, [f"tr-{i:04d}" for i in range(len(df))], [str(i) for i in range(len(df))])
    df["id"] = [f"{s}:{o}" for s, o in zip(df["source"], own, strict=True)]
    batch = hand & (np.arange(len(df)) >= 120)  # the later half of the hand rows: ids tr-0120...
    without = batch_grid("tr-0120")[0]
    y = _labels_for(df, "tier", without)
    masked = batch & (df["split"] != "test").to_numpy()
    assert y[masked].isna().all() and y[~masked].notna().all()  # only the batch, only outside the test split
    grid = [without, Candidate("baseline")]
    base, with_batch = score_grid(_setup(df, X), grid, echo=lambda _: None, batch_from="tr-0120")
    test = (df["split"] == "test").to_numpy()
    n_before, n_batch = int((test & hand & ~batch).sum()), int((test & batch).sum())
    assert n_before > 0 and n_batch > 0
    for row in (base, with_batch):  # the two parts partition the held-out hand rows
        for head in ("tier", "task"):
            parts = n_before * row[f"hand_before_{head}"] + n_batch * row[f"hand_batch_{head}"]
            assert abs(parts / (n_before + n_batch) - row[f"hand_{head}"]) < 1e-9
    assert [c.hand_weight for c in batch_grid("tr-0120")] == [10.0, 10.0, 5.0, 20.0]
    assert "hand_batch_tier" not in score_grid(_setup(df, X), [Candidate("baseline")], echo=lambda _: None)[0]


def test_the_fit_cache_key_changes_with_anything_the_fit_depends_on(tmp_path: Path) -> None:
    df, X = _frame()
    setup = _setup(df, X)
    y = df["tier"]
    key = fit_cache_key(setup, "tier", y, 10.0)
    assert key == fit_cache_key(_setup(df.copy(), X.copy()), "tier", y.copy(), 10.0)  # deterministic
    other_encoder = _setup(df, X * 1.01)  # same rows and labels, other embeddings
    other_sanity = _setup(df, X)
    other_sanity.sanity_X = X[3:6]
    other_split = _setup(df.assign(split=df["split"].iloc[::-1].to_numpy()), X)
    variants = {
        fit_cache_key(other_encoder, "tier", y, 10.0),
        fit_cache_key(other_sanity, "tier", y, 10.0),
        fit_cache_key(other_split, "tier", y, 10.0),
        fit_cache_key(setup, "tier", y.where(df["source"] != "proxy_b"), 10.0),
        fit_cache_key(setup, "tier", y, 5.0),
        fit_cache_key(setup, "task", y, 10.0),
    }
    assert key not in variants and len(variants) == 6
    # a cached fit is reused only under the same key: new embeddings refit (and score differently)
    grid = [Candidate("baseline")]
    (first,) = score_grid(setup, grid, echo=lambda _: None, cache=tmp_path)
    fitted: list[str] = []
    shuffled = _setup(df, np.random.default_rng(5).normal(size=X.shape))  # embeddings that carry nothing
    (second,) = score_grid(shuffled, grid, echo=fitted.append, cache=tmp_path)
    assert sum(m.strip().startswith("fitted") for m in fitted) == 2  # tier and task refitted
    assert second["hand_tier"] < first["hand_tier"]
    reused: list[str] = []
    (again,) = score_grid(setup, grid, echo=reused.append, cache=tmp_path)
    assert not any(m.strip().startswith("fitted") for m in reused) and again == first
