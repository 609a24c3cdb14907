"""Two-sample tests for categorical mixes and 1-D distributions, plus multiple-testing correction.

Job: the small statistical kernels `tierroute drift` is made of.
- `chi2_homogeneity`: are two category-count vectors draws from the same mix? (label mix, predicted
  mix, confidence histogram, language mix). Categories whose expected count is below 5 are pooled
  into one before testing, the textbook condition for the chi-square approximation; without it a
  rare class seen once in a small current set produces p ~ 0 and a false alarm.
- `psi`: population stability index, the effect size reported next to the chi-square p-value.
  Rule of thumb from credit scoring: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major. PSI alone is
  not a test (it grows with noise on small samples), so drift decisions use p-values and PSI only as
  an optional minimum effect size.
- `ks_two_sample`: token-length shift. Token counts are integers with ties, which makes the KS
  test conservative (true false-alarm rate below alpha), not anti-conservative.
- `holm`: Holm-Bonferroni step-down adjustment: controls the family-wise error rate at alpha under
  any dependence between the tests (ours are correlated: predicted mix and confidence come from the
  same probabilities), and is uniformly more powerful than plain Bonferroni.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class TestResult:
    """A test statistic, its p-value and degrees of freedom (0 when not applicable)."""

    statistic: float
    p_value: float
    dof: int = 0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _counts(a: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    c = np.asarray(a, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D count vector")
    if np.any(c < 0) or np.any(~np.isfinite(c)):
        raise ValueError(f"{name} must hold finite non-negative counts")
    return c


def psi(
    ref_counts: Sequence[float] | np.ndarray, cur_counts: Sequence[float] | np.ndarray, eps: float = 1e-4
) -> float:
    """Population stability index sum((c - r) * ln(c / r)) over category proportions.

    Proportions are floored at `eps` so an empty category gives a large but finite value.
    Symmetric in its arguments, >= 0, and 0 iff the proportions are equal.
    """
    r, c = _counts(ref_counts, "ref_counts"), _counts(cur_counts, "cur_counts")
    if r.shape != c.shape:
        raise ValueError(f"count vectors differ in length: {r.size} vs {c.size}")
    if r.sum() == 0 or c.sum() == 0:
        raise ValueError("count vectors must not be all zero")
    rp = np.maximum(r / r.sum(), eps)
    cp = np.maximum(c / c.sum(), eps)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def pool_sparse(ref: np.ndarray, cur: np.ndarray, min_expected: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge categories with a small expected count (under homogeneity) into one pooled category.

    Empty categories are dropped; every category whose smaller expected count is below
    `min_expected` goes into a pool, and the pool then absorbs the next-smallest categories until it
    is itself large enough (or nothing is left to absorb).
    """
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    tot = ref + cur
    frac = min(ref.sum(), cur.sum()) / tot.sum()
    pooled = tot * frac < min_expected
    if pooled.any():
        for k in np.argsort(tot, kind="stable"):
            if tot[pooled].sum() * frac >= min_expected:
                break
            pooled[k] = True
        ref = np.append(ref[~pooled], ref[pooled].sum())
        cur = np.append(cur[~pooled], cur[pooled].sum())
    return ref, cur


def chi2_homogeneity(
    ref_counts: Sequence[float] | np.ndarray,
    cur_counts: Sequence[float] | np.ndarray,
    min_expected: float = 5.0,
) -> TestResult:
    """Pearson chi-square test that two count vectors come from the same category mix (2 x K table).

    Returns p = 1 (statistic 0) when fewer than two categories remain after pooling.
    """
    r, c = _counts(ref_counts, "ref_counts"), _counts(cur_counts, "cur_counts")
    if r.shape != c.shape:
        raise ValueError(f"count vectors differ in length: {r.size} vs {c.size}")
    if r.sum() == 0 or c.sum() == 0:
        raise ValueError("count vectors must not be all zero")
    r, c = pool_sparse(r, c, min_expected)
    if r.size < 2:
        return TestResult(0.0, 1.0, 0)
    table = np.vstack([r, c])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = r.size - 1
    return TestResult(stat, float(stats.chi2.sf(stat, dof)), dof)


def ks_two_sample(ref_values: np.ndarray, cur_values: np.ndarray) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test (two-sided); statistic = max ECDF gap."""
    r = np.asarray(ref_values, dtype=np.float64)
    c = np.asarray(cur_values, dtype=np.float64)
    if r.size == 0 or c.size == 0:
        raise ValueError("both samples must be non-empty")
    res = stats.ks_2samp(r, c, alternative="two-sided", method="auto")
    return TestResult(float(res.statistic), float(res.pvalue), 0)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1). Reject test i iff adjusted[i] <= alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj_sorted
    return out


def bonferroni(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64)
    return np.minimum(1.0, p * max(p.size, 1))
