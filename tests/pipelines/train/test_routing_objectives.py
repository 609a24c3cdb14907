"""Within-source routing objectives and nested leave-one-source-out selection, on synthetic sources."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from pipelines.train.routing import equal_source_weights
from pipelines.train.routing_objectives import (
    MultiFitScore,
    blend_with_length,
    centre_within,
    centred_logistic,
    centred_ridge,
    nested_loso_select,
    pairwise_logistic,
    within_pairs,
)


def _source(rng: np.random.Generator, name: str, shift: float, n: int = 400) -> tuple[np.ndarray, ...]:
    """One source: x0 = the within-source signal (a row needs the strong model when x0 is above the
    source's own level + 1), shifted by `shift`; x1, x2 = noise. Sources with a high x0 level are
    *easy* sources (few rows need the strong model), so between sources x0 points the wrong way."""
    x0 = rng.normal(shift, 1.0, n)
    X = np.column_stack([x0, rng.normal(size=(n, 2))])
    needs_strong = x0 + rng.normal(0, 0.3, n) > shift + (1.0 if shift > 0 else -1.0)
    return X, needs_strong, np.full(n, name)


@pytest.fixture(scope="module")
def two_sources() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    parts = [_source(rng, "easy", 3.0), _source(rng, "hard", -3.0)]
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def test_pairwise_and_centred_heads_learn_the_within_source_signal_a_pooled_head_misses(
    two_sources: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, needs_strong, src = two_sources
    rng = np.random.default_rng(1)
    X_new, y_new, _ = _source(rng, "new", 0.0)  # a third source at its own level
    pooled = LogisticRegression(C=0.01, max_iter=2000).fit(
        X, needs_strong, sample_weight=equal_source_weights(src)
    )
    pooled_auc = roc_auc_score(y_new, pooled.decision_function(X_new))
    assert pooled.coef_[0, 0] < 0  # the pooled head learned the sources' base rates, backwards
    assert pooled_auc < 0.5
    pair = pairwise_logistic(X, needs_strong, src, C=0.01, max_pairs_per_source=4000)
    centred = centred_logistic(X, ~needs_strong, src, C=0.01)
    ridge = centred_ridge(X, needs_strong.astype(float), src, alpha=10.0)
    for head in (pair, centred, ridge):
        assert head.coef[0] > 0
        assert roc_auc_score(y_new, head.score(X_new)) > 0.9


def test_within_pairs_stay_inside_a_source_and_order_the_target() -> None:
    t = np.array([0, 1, 0, 1, 5, 5, 5, 2.0])
    src = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
    i, j, _ = within_pairs(t, src, 50, seed=3)
    assert i.size > 0
    assert np.all(src[i] == src[j])
    assert np.all(t[j] > t[i])
    assert set(src[i]) == {"a", "b"}
    with pytest.raises(ValueError, match="different targets"):
        within_pairs(np.ones(4), np.array(["a", "a", "b", "b"]), 10)


def test_centre_within_removes_each_source_mean() -> None:
    v = np.array([[1.0, 10], [3, 20], [100, 0], [102, 2]])
    out = centre_within(v, np.array(["a", "a", "b", "b"]))
    np.testing.assert_allclose(out, [[-1, -5], [1, 5], [-1, -1], [1, 1]])


def test_blend_with_length_puts_the_head_in_sd_units_and_inf_is_length_only() -> None:
    head_train = np.array([-10.0, 10.0])  # sd 10
    z = np.array([1.0, -1.0])
    out = blend_with_length(np.array([10.0, -10.0]), head_train, z, (0.0, 2.0, float("inf")))
    np.testing.assert_allclose(out[0.0], [1.0, -1.0])
    np.testing.assert_allclose(out[2.0], [3.0, -3.0])
    np.testing.assert_allclose(out[float("inf")], z)


def _nested_data(
    within_signal_in_embedding: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Four sources. `emb` names the source (one column per source, on/off) and, optionally, carries the
    within-source signal; `length` always does. Source base rates differ, so a head on `emb` alone
    learns which source a row comes from."""
    rng = np.random.default_rng(7)
    names = ["s0", "s1", "s2", "s3"]
    n = 300
    src = np.repeat(names, n)
    length = rng.normal(size=src.size)
    base = np.repeat([0.1, 0.4, 0.6, 0.9], n)  # share of rows that need the strong model
    signal = rng.normal(size=src.size)
    hard = rng.random(src.size) < base
    hard = np.where(rng.random(src.size) < 0.5, hard, signal + 0.5 * length > 0)
    onehot = (src[:, None] == np.array(names)[None, :]).astype(float)
    emb = np.hstack(
        [onehot, signal[:, None] if within_signal_in_embedding else rng.normal(size=(src.size, 1))]
    )
    weak = (~hard).astype(float)
    strong = np.ones(src.size)
    return src, emb, length, hard, weak, strong


def _candidates(src: np.ndarray, emb: np.ndarray, length: np.ndarray, hard: np.ndarray) -> MultiFitScore:
    def fit_scores(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        model = LogisticRegression(C=1.0, max_iter=2000).fit(
            emb[train], hard[train], sample_weight=equal_source_weights(src[train])
        )
        return {"embedding head": model.decision_function(emb[test]), "length only": length[test]}

    return fit_scores


def test_nested_selection_picks_length_when_the_embedding_only_knows_the_source() -> None:
    src, emb, length, hard, weak, strong = _nested_data(within_signal_in_embedding=False)
    train = src != "s3"  # the outer held-out source never takes part
    weak_outer = weak.copy()
    weak_outer[~train] = np.nan  # would raise inside apgr if it were scored
    fit_scores = _candidates(src, emb, length, hard)
    for criterion in ("mean", "worst"):
        sel = nested_loso_select(fit_scores, src, weak_outer, strong, train, criterion=criterion)
        assert sel.chosen == "length only"
        assert set(sel.inner["length only"]) == {"s0", "s1", "s2"}
        assert sel.summary("length only") > sel.summary("embedding head")


def test_nested_selection_picks_the_head_when_it_carries_a_within_source_signal() -> None:
    src, emb, length, hard, weak, strong = _nested_data(within_signal_in_embedding=True)
    sel = nested_loso_select(_candidates(src, emb, length, hard), src, weak, strong, np.ones(src.size, bool))
    assert sel.chosen == "embedding head"
    assert set(sel.inner["embedding head"]) == {"s0", "s1", "s2", "s3"}


def test_nested_selection_refuses_bad_arguments() -> None:
    src, emb, length, hard, weak, strong = _nested_data(within_signal_in_embedding=False)
    fit_scores = _candidates(src, emb, length, hard)
    with pytest.raises(ValueError, match="criterion"):
        nested_loso_select(fit_scores, src, weak, strong, np.ones(src.size, bool), criterion="median")
    with pytest.raises(ValueError, match="enough scored rows"):
        nested_loso_select(fit_scores, src, weak, strong, np.ones(src.size, bool), min_rows=10_000)


def test_routing_head_pairwise_difficulty_objective_ranks_a_new_source_where_logistic_fails(
    two_sources: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    from pipelines.train.routing import LOG_TOKENS, fit_routing_head
    from serving.model.textprep import REQUEST_FEATURE_NAMES

    X, needs_strong, src = two_sources
    rng = np.random.default_rng(2)
    X_new, y_new, _ = _source(rng, "new", 0.0)

    def feats(n: int) -> np.ndarray:
        f = np.zeros((n, len(REQUEST_FEATURE_NAMES)))
        f[:, LOG_TOKENS] = rng.normal(size=n)  # length carries nothing here
        return f

    # graded difficulty for the outcome rows; a `traffic`-like source without one ranks by weak_ok
    difficulty = X[:, 0] + rng.normal(0, 0.3, X.shape[0])
    difficulty[src == "hard"] = np.nan
    logistic = fit_routing_head(
        X, feats(len(X)), ~needs_strong, src, C=0.01, length_coef=0.0, objective="logistic"
    )
    pairwise = fit_routing_head(
        X,
        feats(len(X)),
        ~needs_strong,
        src,
        C=0.01,
        length_coef=0.0,
        objective="pairwise_difficulty",
        difficulty=difficulty,
    )
    f_new = feats(len(X_new))
    assert roc_auc_score(y_new, 1 - logistic.predict(X_new, f_new)) < 0.5
    assert roc_auc_score(y_new, 1 - pairwise.predict(X_new, f_new)) > 0.9
    assert pairwise.describe()["objective"] == "pairwise_difficulty"
    assert pairwise.platt[0] >= 0.05  # Platt keeps the ranking (slope > 0)
    p = pairwise.predict(X, feats(len(X)))
    assert abs(float(p.mean()) - float((~needs_strong).mean())) < 0.1  # calibrated on its rows
    with pytest.raises(ValueError, match="objective"):
        fit_routing_head(X, feats(len(X)), ~needs_strong, src, objective="ranking")
