"""Routing-head objectives that cannot learn a source's base rate, and nested leave-one-source-out selection.

Job: the candidates of issue #13's held-out-source experiments beyond the shipped pooled logistic head
(`pipelines.train.routing`), kept here so `evals.eval.routing_experiments --grid within` can rerun them
and `tierroute train` could use them:

- `pairwise_logistic`: a linear ranking head fitted on *pairs of rows of the same source* (one where the
  cheap model was good enough, one where it was not; or, for a graded target, any two rows whose target
  differs): logistic regression without intercept on the feature difference. APGR only ranks rows
  within a source, and a pooled head also learns between-source base rates (which source a text looks
  like); on within-source pairs nothing constant per source is learnable.
- `centred_logistic` / `centred_ridge`: the pooled heads on features centred within each source (ridge:
  target centred too, i.e. a source fixed-effects linear model): the same idea without pairs.
- `nested_loso_select`: chooses among candidate scores (e.g. length-prior weights, including "length
  only") by leave-one-source-out over the *training* sources only, so an outer held-out source never
  takes part in choosing its own router.

All heads return weights over `StandardScaler`-standardised features, so a winner folds into the
bundle's one `StandardScaler + LogisticRegression` graph exactly like the shipped head.

Trade-off: per-source centring/pairs throw away what the sources agree on about levels (a whole
source of hard questions); that information never transferred between sources anyway (evals/RESULTS.md
"Routing value").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.train.routing import equal_source_weights
from pipelines.train.routing_value import apgr

MultiFitScore = Callable[[np.ndarray, np.ndarray], Mapping[str, np.ndarray]]
"""(train mask, test mask) -> {candidate name: test rows' "send to strong" score}: candidates that share
one fit (e.g. one head blended with several length-prior weights) are scored from that single fit."""


@dataclass(frozen=True)
class LinearScore:
    """`score(X) = ((X - mean) / scale) @ coef + intercept`: higher = the cheap model is *less* likely ok."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float = 0.0

    def score(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        return np.asarray(Z @ self.coef + self.intercept, dtype=np.float64)


def _scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale as the exported pipeline's `StandardScaler` computes them (constant
    columns scale by 1), so a head fitted here reads the same standardised inputs as the bundle."""
    from sklearn.preprocessing import StandardScaler

    fitted = StandardScaler().fit(X)
    return np.asarray(fitted.mean_, dtype=np.float64), np.asarray(fitted.scale_, dtype=np.float64)


def centre_within(values: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """`values` (1-D or 2-D, rows first) minus their mean within each source."""
    v = np.asarray(values, dtype=np.float64)
    src = np.asarray(sources).astype(str)
    out = v.copy()
    for name in np.unique(src):
        m = src == name
        out[m] = v[m] - v[m].mean(axis=0)
    return out


def within_pairs(
    target: np.ndarray, sources: np.ndarray, max_pairs_per_source: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random pairs (i, j) of rows of the same source with target[i] != target[j].

    Returns (i, j, source index) with `target[j] > target[i]` in every pair; each source contributes at most
    `max_pairs_per_source` pairs (drawn with replacement among its ordered pairs, ties rejected)."""
    t = np.asarray(target, dtype=np.float64)
    src = np.asarray(sources).astype(str)
    rng = np.random.default_rng(seed)
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    out_s: list[np.ndarray] = []
    for k, name in enumerate(np.unique(src)):
        rows = np.flatnonzero(src == name)
        if rows.size < 2 or np.ptp(t[rows]) == 0:
            continue
        a = rng.choice(rows, size=4 * max_pairs_per_source)
        b = rng.choice(rows, size=4 * max_pairs_per_source)
        keep = t[a] != t[b]
        a, b = a[keep][:max_pairs_per_source], b[keep][:max_pairs_per_source]
        lo = np.where(t[a] < t[b], a, b)
        hi = np.where(t[a] < t[b], b, a)
        out_i.append(lo)
        out_j.append(hi)
        out_s.append(np.full(lo.size, k))
    if not out_i:
        raise ValueError("no source has two rows with different targets")
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)


def pairwise_logistic(
    X: np.ndarray,
    target: np.ndarray,
    sources: np.ndarray,
    *,
    C: float = 0.01,
    max_pairs_per_source: int = 10_000,
    source_weights: Mapping[str, float] | None = None,
    seed: int = 0,
) -> LinearScore:
    """Linear ranking head on within-source pairs: P(target_j > target_i) = sigmoid(w . (z_j - z_i)).

    `target` is what should rank *high* (e.g. `1 - weak_ok`, a quality gap, an item difficulty); the
    result's `score` ranks rows by it. Every source contributes the same number of pairs at most and
    the pairs are weighted so each source has the same total weight (times its `source_weights` factor,
    as in `equal_source_weights`) and all pairs together weigh as much as the rows (so `C` regularises
    as it does in the pooled head). No intercept: a pair's two rows
    share their source, so nothing constant per source can enter the score."""
    from sklearn.linear_model import LogisticRegression

    Xf = np.asarray(X, dtype=np.float64)
    mean, scale = _scaler(Xf)
    Z = (Xf - mean) / scale
    i, j, k = within_pairs(target, sources, max_pairs_per_source, seed)
    d = Z[j] - Z[i]
    flip = np.random.default_rng(seed + 1).random(d.shape[0]) < 0.5
    d[flip] *= -1.0
    y = (~flip).astype(np.int64)
    # every source the same total weight, all pairs together as much as the rows: C means what it
    # means for the pooled head on the same rows
    names = np.unique(np.asarray(sources).astype(str))
    w = equal_source_weights(names[k], source_weights) * (Z.shape[0] / d.shape[0])
    lr = LogisticRegression(C=C, fit_intercept=False, max_iter=3000)
    lr.fit(d, y, sample_weight=w)
    return LinearScore(mean, scale, np.asarray(lr.coef_[0], dtype=np.float64))


def centred_logistic(
    X: np.ndarray, weak_ok: np.ndarray, sources: np.ndarray, *, C: float = 0.01
) -> LinearScore:
    """Pooled logistic `weak_ok` head on features centred within each source (each source weighted
    equally); returns the "strong needed" score (the negated logit, intercept dropped)."""
    from sklearn.linear_model import LogisticRegression

    Xc = centre_within(X, sources)
    _, scale = _scaler(Xc)
    y = np.asarray(weak_ok, dtype=bool).astype(np.int64)
    lr = LogisticRegression(C=C, max_iter=3000)
    lr.fit(Xc / scale, y, sample_weight=equal_source_weights(sources))
    mean = np.asarray(X, dtype=np.float64).mean(axis=0)
    return LinearScore(mean, scale, -np.asarray(lr.coef_[0], dtype=np.float64))


def centred_ridge(
    X: np.ndarray, target: np.ndarray, sources: np.ndarray, *, alpha: float = 1000.0, centre: bool = True
) -> LinearScore:
    """Ridge of `target` (what should rank high) on features, both centred within each source (a source
    fixed-effects linear model; each source weighted equally). `centre=False`: centred over all rows
    instead (the pooled model, for comparison)."""
    from sklearn.linear_model import Ridge

    groups = sources if centre else np.zeros(len(sources))
    Xc = centre_within(X, groups)
    _, scale = _scaler(Xc)
    yc = centre_within(np.asarray(target, dtype=np.float64), groups)
    model = Ridge(alpha=alpha, fit_intercept=False)
    model.fit(Xc / scale, yc, sample_weight=equal_source_weights(sources))
    mean = np.asarray(X, dtype=np.float64).mean(axis=0)
    return LinearScore(mean, scale, np.asarray(model.coef_, dtype=np.float64))


def blend_with_length(
    head: np.ndarray, head_train: np.ndarray, z_len: np.ndarray, weights: Sequence[float]
) -> dict[float, np.ndarray]:
    """`head / sd(head on the training rows) + weight * z_len` for every weight; `inf` = length only.

    Putting the head in standard-deviation units makes a weight mean the same for every head."""
    sd = float(np.std(head_train)) or 1.0
    out: dict[float, np.ndarray] = {}
    for b in weights:
        out[b] = np.asarray(z_len, dtype=np.float64) if np.isinf(b) else head / sd + b * z_len
    return out


@dataclass(frozen=True)
class Selection:
    """What `nested_loso_select` chose, and every candidate's inner APGR per inner held-out source."""

    chosen: str
    inner: dict[str, dict[str, float]]
    criterion: str

    def summary(self, name: str) -> float:
        values = list(self.inner[name].values())
        return float(np.min(values) if self.criterion == "worst" else np.mean(values))


def nested_loso_select(
    fit_scores: MultiFitScore,
    sources: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    train: np.ndarray,
    *,
    criterion: str = "mean",
    min_rows: int = 100,
    prefer: Sequence[str] = (),
) -> Selection:
    """Choose a candidate by leave-one-source-out over the sources of the `train` rows only.

    For every training source with >= `min_rows` scored rows (finite `weak` and `strong`), fit on the
    other training rows and score APGR on that source; the candidate with the best mean (`criterion`
    "mean") or worst-source ("worst") inner APGR wins. Ties go to the earliest name in `prefer`, then to
    the first candidate returned. Rows outside `train` are never touched."""
    if criterion not in ("mean", "worst"):
        raise ValueError(f"criterion must be 'mean' or 'worst', got {criterion!r}")
    src = np.asarray(sources).astype(str)
    w = np.asarray(weak, dtype=np.float64)
    s = np.asarray(strong, dtype=np.float64)
    train = np.asarray(train, dtype=bool)
    scored = train & np.isfinite(w) & np.isfinite(s)
    inner: dict[str, dict[str, float]] = {}
    for source in sorted(set(src[scored].tolist())):
        test = scored & (src == source)
        if int(test.sum()) < min_rows:
            continue
        for name, score in fit_scores(train & (src != source), test).items():
            inner.setdefault(name, {})[source] = apgr(score, w[test], s[test])
    if not inner:
        raise ValueError("nested selection needs a training source with enough scored rows")
    rank = {n: i for i, n in enumerate(prefer)}
    order = sorted(inner, key=lambda n: rank.get(n, len(rank)))
    sel = Selection(order[0], inner, criterion)
    best = max(order, key=sel.summary)  # max keeps the first of equal values
    return Selection(best, inner, criterion)
