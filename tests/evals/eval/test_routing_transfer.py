"""Round-6 routing grids: the in-source ceiling, the oracles and the transfer levers on synthetic sources."""

from __future__ import annotations

import numpy as np
import pytest

from evals.eval.loso import leave_one_source_out, mean_apgr
from evals.eval.routing_transfer import (
    ceiling_baselines,
    ceiling_grid,
    consistent_corr_score,
    difficulty_bins,
    in_source_kfold,
    knn_mean,
    near_duplicate_share,
    paired_apgr_diff,
    per_source_ensemble,
    sign_consistent_columns,
    split_half_selection,
    tier_prior_grid,
    tier_prior_router,
    transfer_grid,
    within_source_corr,
)
from pipelines.train.routing_value import apgr
from serving.model.textprep import REQUEST_FEATURE_NAMES

LOG = list(REQUEST_FEATURE_NAMES).index("log_tokens")


def _sources(
    rng: np.random.Generator, names: tuple[str, ...], n: int, sign: dict[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Sources where difficulty follows embedding column 0 (sign per source) and the cheap model fails
    the hard rows; length carries nothing."""
    src = np.repeat(np.array(names), n)
    m = src.size
    emb = rng.normal(size=(m, 6))
    s = np.array([(sign or {}).get(x, 1.0) for x in src])
    difficulty = 1 / (1 + np.exp(-(2.0 * s * emb[:, 0] + rng.normal(0, 0.3, m))))
    ok = rng.random(m) > difficulty
    feats = rng.normal(size=(m, len(REQUEST_FEATURE_NAMES)))
    return {
        "src": src,
        "emb": emb,
        "feats": feats,
        "difficulty": difficulty,
        "ok": ok,
        "weak": ok.astype(float),
        "strong": np.ones(m),
        "log_tokens": feats[:, LOG],
    }


def test_in_source_kfold_keeps_groups_together_and_never_looks_outside_the_source() -> None:
    test = np.zeros(60, dtype=bool)
    test[20:50] = True
    groups = np.repeat(np.arange(30), 2)  # pairs of rows share a group
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def inner(train: np.ndarray, held: np.ndarray) -> np.ndarray:
        seen.append((train.copy(), held.copy()))
        return np.flatnonzero(held).astype(float)

    score = in_source_kfold(inner, folds=5, groups=groups)(~test, test)
    assert len(seen) == 5
    covered = np.zeros(60, dtype=int)
    for train, held in seen:
        assert not np.any((train | held) & ~test)  # only the held-out source's rows
        assert not set(groups[train]) & set(groups[held])  # a group never straddles folds
        covered += held
    assert np.array_equal(covered, test.astype(int))  # every row scored exactly once
    assert np.array_equal(score, np.flatnonzero(test).astype(float))  # scores land on their own rows


def test_ceiling_grid_learns_a_source_its_recipes_can_see_and_the_oracles_bound_it() -> None:
    rng = np.random.default_rng(0)
    # difficulty follows column 0 with opposite signs in the two sources: LOSO cannot transfer it,
    # in-source CV can
    d = _sources(rng, ("a", "b"), 300, sign={"b": -1.0})
    routers = ceiling_grid(
        d["emb"],
        d["feats"],
        d["ok"],
        d["src"],
        d["difficulty"],
        d["log_tokens"],
        folds=3,
        gap=d["strong"] - d["weak"],
    )
    assert any("ridge gap" in n for n in routers) and any("true difficulty" in n for n in routers)
    baselines = ceiling_baselines(d["difficulty"], d["weak"], d["strong"], d["log_tokens"])
    results = leave_one_source_out(d["src"], d["weak"], d["strong"], routers, baselines, n_boot=20)
    by = {(r.router, r.source): r.value.apgr.estimate for r in results}
    for s in ("a", "b"):
        m = d["src"] == s
        oracle_difficulty = by[("oracle by difficulty (true difficulty as the score)", s)]
        assert oracle_difficulty == pytest.approx(apgr(d["difficulty"][m], d["weak"][m], d["strong"][m]))
        assert by[("oracle (strong - weak quality)", s)] >= oracle_difficulty - 1e-12
        for name in routers:
            if "feat (C=0.1)" in name:  # request features are noise here
                continue
            # the length prior adds noise here (length carries nothing), so a lower bar with it
            floor = 0.53 if "z(len)" in name else 0.6
            assert floor < by[(name, s)] <= by[("oracle (strong - weak quality)", s)] + 1e-12, name
        assert abs(by[("prompt length", s)] - 0.5) < 0.1


def test_difficulty_bins_find_the_intermediate_difficulty_a_monotone_oracle_misses() -> None:
    # IRT-like: the strong model solves items up to difficulty 0.6, the weak one up to 0.2, so the gain
    # sits at intermediate difficulty and ranking by difficulty itself sends unsolvable items first
    rng = np.random.default_rng(5)
    d = rng.random(1000)
    weak = (d < 0.2).astype(float)
    strong = (d < 0.6).astype(float)
    test = np.zeros(d.size, dtype=bool)
    test[500:] = True
    monotone = apgr(d[test], weak[test], strong[test])
    binned = apgr(difficulty_bins(d, strong - weak)(~test, test), weak[test], strong[test])
    assert monotone < 0.45  # 40% unsolvable rows first: PGR 0 up to a 0.4 share
    oracle = apgr(strong[test] - weak[test], weak[test], strong[test])  # 0.8: 40% of rows gain
    assert binned > oracle - 0.02  # 10 quantile bins of width ~0.1 almost isolate (0.2, 0.6)
    # few distinct values: one bin per value, so the score is the value's mean gain on the training rows
    levels = np.repeat([0.0, 0.5, 1.0], 4)
    gain = np.array([0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0], dtype=float)
    train = np.arange(12) % 2 == 0
    assert difficulty_bins(levels, gain)(train, ~train) == pytest.approx([0, 0, 0.5, 0.5, 0, 0])


def test_knn_mean_averages_the_nearest_rows_by_cosine() -> None:
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    value = np.array([1.0, 3.0, 10.0, 100.0])
    query = np.array([[2.0, 0.0], [0.0, 5.0]])  # the scale does not matter, the direction does
    assert knn_mean(train, value, query, 2) == pytest.approx([2.0, 6.5])
    assert knn_mean(train, value, query, 1) == pytest.approx([1.0, 10.0])
    # scored against itself without itself: row 0's nearest other row is row 1 and vice versa
    assert knn_mean(train, value, train, 1, exclude_self=True)[:2] == pytest.approx([3.0, 1.0])
    # near-duplicates skipped: for [2, 0] rows 0 (cosine 1) and 1 (0.994), for [0, 5] row 2 (cosine 1)
    assert knn_mean(train, value, query, 1, max_sim=0.99) == pytest.approx([10.0, 3.0])


def test_near_duplicate_share_counts_rows_with_a_twin_in_another_source() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01], [-1.0, 0.0], [0.0, 1.0]])
    src = np.array(["a", "a", "b", "b", "a"])  # row 4 twins row 1, but in the same source
    out = near_duplicate_share(emb, src, np.array([0, 1, 2, 3]))
    assert out == {"a": 0.5, "b": 0.5}  # a: row 0 has row 2; b: row 2 has row 0, row 3 none


def test_sign_consistency_keeps_what_every_source_agrees_on() -> None:
    rng = np.random.default_rng(1)
    n = 400
    src = np.repeat(np.array(["a", "b"]), n // 2)
    flip = np.where(src == "a", 1.0, -1.0)
    target = rng.normal(size=n)
    X = np.column_stack(
        [
            target + rng.normal(0, 0.5, n),  # agrees in both
            flip * target + rng.normal(0, 0.5, n),  # opposite signs
            rng.normal(size=n),  # noise
            -target + rng.normal(0, 2.0, n),  # agrees (negative), weakly
        ]
    )
    r = within_source_corr(X, target, src)
    assert r.shape == (2, 4)
    assert r[0, 1] > 0.5 and r[1, 1] < -0.5
    keep = sign_consistent_columns(X, target, src)
    assert keep[0] and keep[3] and not keep[1]
    assert not sign_consistent_columns(X, target, src, min_abs=0.6)[3]  # too weak for that bar
    score = consistent_corr_score(X, target, src)
    assert score.coef[1] == 0.0 and score.coef[0] > 0 > score.coef[3]
    assert np.corrcoef(score.score(X), target)[0, 1] > 0.7


def test_per_source_ensemble_ranks_by_the_shared_signal() -> None:
    rng = np.random.default_rng(2)
    d = _sources(rng, ("a", "b", "c"), 200)
    X = np.hstack([d["emb"], d["feats"]])
    head = per_source_ensemble(X, d["difficulty"], d["src"], C=0.1)
    assert np.corrcoef(head.score(X), d["difficulty"])[0, 1] > 0.8


def test_paired_apgr_diff_is_zero_against_itself_and_positive_for_a_better_router() -> None:
    rng = np.random.default_rng(3)
    weak: dict[str, np.ndarray] = {}
    strong: dict[str, np.ndarray] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for s in ("a", "b"):
        gain = rng.random(300) < 0.4
        weak[s] = (~gain).astype(float)
        strong[s] = np.ones(300)
        scores.setdefault("ref", {})[s] = rng.normal(size=300)
        scores.setdefault("good", {})[s] = gain + rng.normal(0, 0.3, 300)
    out = paired_apgr_diff(scores, weak, strong, "ref", n_boot=50)
    assert out["ref"] == (0.0, 0.0, 0.0, 0.0)
    d, lo, hi, worst = out["good"]
    assert 0 < lo <= d <= hi and worst > 0.1


def test_transfer_grid_all_rows_use_the_pool_beyond_the_cap() -> None:
    rng = np.random.default_rng(4)
    d = _sources(rng, ("a", "b", "c"), 400)
    n = d["src"].size
    # the capped rows (the evaluation rows) carry shuffled difficulties: only the rows beyond the cap
    # teach the signal, so "all rows" must beat "2k/source" on the held-out rows
    in_cap = np.zeros(n, dtype=bool)
    for s in ("a", "b", "c"):
        in_cap[np.flatnonzero(d["src"] == s)[:150]] = True
    eval_index = np.flatnonzero(in_cap)
    difficulty = d["difficulty"].copy()
    difficulty[eval_index] = rng.permutation(difficulty[eval_index])
    ok = d["ok"].copy()
    ok[eval_index] = rng.permutation(ok[eval_index])
    routers = transfer_grid(
        d["emb"], d["feats"], ok, d["src"], difficulty, d["log_tokens"], eval_index, in_cap, knn_k=(10,)
    )
    src = d["src"][eval_index]
    weak, strong = d["weak"][eval_index], d["strong"][eval_index]
    results = leave_one_source_out(src, weak, strong, routers, n_boot=10)
    assert {r.router for r in results} == {"random", *routers}
    all_rows = mean_apgr(results, "[all rows] pairwise difficulty C=0.01, no length prior")
    capped = mean_apgr(results, "[2k/source] pairwise difficulty C=0.01, no length prior")
    assert all_rows > 0.65 and all_rows > capped + 0.1
    assert mean_apgr(results, "[all rows] kNN difficulty (k=10)") > 0.6


def test_split_half_selection_flatters_noise_and_keeps_a_real_gain() -> None:
    rng = np.random.default_rng(6)
    weak: dict[str, np.ndarray] = {}
    strong: dict[str, np.ndarray] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for s in ("a", "b"):
        gain = rng.random(400) < 0.4
        weak[s], strong[s] = (~gain).astype(float), np.ones(400)
        scores.setdefault("ref", {})[s] = gain + rng.normal(0, 1.0, 400)
        for k in range(8):  # as good as the reference in expectation: only noise to pick from
            scores.setdefault(f"noise{k}", {})[s] = gain + rng.normal(0, 1.0, 400)
    picked, fresh = split_half_selection(scores, weak, strong, "ref", n_splits=20)
    assert picked > 0.004 and picked - fresh > 0.004  # the pick looks better where it was picked
    for s in ("a", "b"):
        scores.setdefault("real", {})[s] = np.asarray(1 - weak[s]) + rng.normal(0, 0.3, 400)
    picked, fresh = split_half_selection(scores, weak, strong, "ref", n_splits=20)
    assert fresh > 0.1  # a real gain is picked and holds on the other half


def _tier_rows(rng: np.random.Generator, n: int, sign: float) -> tuple[np.ndarray, list[str]]:
    """Tier rows whose tier follows embedding column 0 (reversed with a negative `sign`)."""
    emb = rng.normal(size=(n, 6))
    x = sign * emb[:, 0]
    return emb, ["simple" if v < -0.5 else "reasoning" if v > 0.5 else "complex" for v in x]


def test_tier_prior_never_sees_the_held_out_sources_own_tier_rows() -> None:
    rng = np.random.default_rng(7)
    # "other" says column 0 up = harder; "leak" (the held-out source "a"'s own ladder tiers, 3x as many
    # rows) says the reverse: the prior for "a" must follow "other"; for "b" the majority "leak" wins
    e1, t1 = _tier_rows(rng, 200, 1.0)
    e2, t2 = _tier_rows(rng, 600, -1.0)
    tier_emb, tiers = np.vstack([e1, e2]), t1 + t2
    tier_src = np.array(["other"] * 200 + ["leak"] * 600)
    hand = np.zeros(800, dtype=bool)
    probe = np.zeros((4, 6))
    probe[:, 0] = [-2.0, 2.0, -2.0, 2.0]
    src = np.array(["a", "a", "b", "b"])
    args = (tier_emb, tiers, hand, tier_src, {"a": "leak"}, probe, src)
    prior = tier_prior_router(*args)
    a_scores = prior(src != "a", src == "a")
    b_scores = prior(src != "b", src == "b")
    assert a_scores[1] > a_scores[0] + 0.3  # column 0 up -> harder, as "other" says
    assert b_scores[1] < b_scores[0] - 0.3  # nothing excluded: the reversed majority decides
    # hand rows only: the "other" rows marked hand decide even for "b"
    hand_only = tier_prior_router(*args[:2], np.arange(800) < 200, *args[3:], hand_only=True)
    b_hand = hand_only(src != "b", src == "b")
    assert b_hand[1] > b_hand[0] + 0.3


def test_tier_prior_grid_blends_in_standard_deviation_units() -> None:
    rng = np.random.default_rng(8)
    d = _sources(rng, ("a", "b"), 150)
    length = d["log_tokens"]

    def as_length(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return 3.0 * length[test] + 1.0  # a prior on another scale: the blend standardises it

    routers = tier_prior_grid(
        d["emb"], d["feats"], d["ok"], d["src"], d["difficulty"], length, {"p": as_length}, blends=(0.5,)
    )
    assert set(routers) == {"default recipe", "p", "p + 1 x z(len)", "default recipe + 0.5 x p"}
    test = d["src"] == "a"
    z = (length[test] - length[test].mean()) / length[test].std()
    np.testing.assert_allclose(routers["p + 1 x z(len)"](~test, test), 2 * z, atol=1e-9)
    default = routers["default recipe"](~test, test)
    zd = (default - default.mean()) / default.std()
    np.testing.assert_allclose(routers["default recipe + 0.5 x p"](~test, test), zd + 0.5 * z, atol=1e-9)
    # the default recipe learns the shared signal (difficulty follows column 0 in both sources)
    assert apgr(default, d["weak"][test], d["strong"][test]) > 0.6
