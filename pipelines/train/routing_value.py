"""Routing value: the quality-vs-strong-share curve, APGR, and the share needed to close the gap.

Job: score a router (any per-row score where higher means "send to the strong model") on rows that
carry both models' quality, the way RouteLLM evaluates routers.

Definitions (n rows, weak quality w_i, strong quality s_i, router score r_i):
- Routing the top-k rows by score to the strong model gives mean quality
  Q(k/n) = (sum_i w_i + sum_{top k} (s_i - w_i)) / n.  Q(0) = all-weak, Q(1) = all-strong.
- PGR(share) = (Q(share) - Q(0)) / (Q(1) - Q(0)): the performance gap recovered.
- APGR = area under PGR over share in [0, 1]. Routing at random recovers the gap linearly, so its
  APGR is exactly 0.5; an oracle that knows s_i - w_i does better than any real router.
- share_for(p): the smallest strong share whose PGR reaches p (0.5 and 0.8 reported).

Ties in the score are routed together; between two tie groups the curve is the straight line that
random tie-breaking yields in expectation, so a constant score scores exactly 0.5 and the result does
not depend on row order. Bootstrap intervals resample rows with multinomial weights on the fixed
sort order (one sort, then matrix cumsums), so 1,000 resamples of a few thousand rows are cheap.
When Q(1) <= Q(0) there is no gap to recover and APGR is undefined (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.train.intervals import Interval, check_interval_args, percentile_interval


@dataclass(frozen=True)
class RoutingCurve:
    """Curve points at tie-group boundaries; `threshold[j]`: route to strong iff score >= threshold[j]."""

    share: np.ndarray
    quality: np.ndarray
    pgr: np.ndarray
    threshold: np.ndarray
    weak_quality: float
    strong_quality: float

    @property
    def gap(self) -> float:
        return self.strong_quality - self.weak_quality


@dataclass(frozen=True)
class RoutingValue:
    name: str
    apgr: Interval
    share_for_50: Interval
    share_for_80: Interval
    curve: RoutingCurve

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "apgr": self.apgr.to_dict(),
            "share_for_50pct_gap": self.share_for_50.to_dict(),
            "share_for_80pct_gap": self.share_for_80.to_dict(),
            "weak_quality": self.curve.weak_quality,
            "strong_quality": self.curve.strong_quality,
        }


def _check(
    score: np.ndarray, weak: np.ndarray, strong: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.asarray(score, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    s = np.asarray(strong, dtype=np.float64)
    if r.ndim != 1 or r.shape != w.shape or r.shape != s.shape or r.size == 0:
        raise ValueError("score, weak and strong quality must be non-empty 1-D arrays of equal length")
    for name, a in (("score", r), ("weak quality", w), ("strong quality", s)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} holds non-finite values")
    return r, w, s


def _sorted_groups(score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, group end positions (exclusive), threshold per group) for rows sorted by score descending."""
    order = np.argsort(-score, kind="stable")
    ss = score[order]
    ends = np.flatnonzero(np.diff(ss) != 0) + 1
    ends = np.append(ends, ss.size)
    return order, ends, ss[ends - 1]


def routing_curve(score: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> RoutingCurve:
    r, w, s = _check(score, weak, strong)
    n = r.size
    order, ends, thr = _sorted_groups(r)
    cum = np.concatenate([[0.0], np.cumsum((s - w)[order])])[np.concatenate([[0], ends])]
    q0 = float(w.mean())
    q1 = float(s.mean())
    quality = q0 + cum / n
    gap = q1 - q0
    pgr = cum / (n * gap) if gap > 0 else np.full(cum.shape, np.nan)
    share = np.concatenate([[0], ends]) / n
    return RoutingCurve(share, quality, pgr, np.concatenate([[np.inf], thr]), q0, q1)


def _area(share: np.ndarray, pgr: np.ndarray) -> np.ndarray:
    """Trapezoid area along the last axis (shares are shared by every row of pgr)."""
    ds = np.diff(share, axis=-1)
    return np.sum(ds * (pgr[..., 1:] + pgr[..., :-1]) / 2.0, axis=-1)


def apgr(score: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    c = routing_curve(score, weak, strong)
    return float(_area(c.share, c.pgr))


def share_for_gap(curve: RoutingCurve, target: float) -> float:
    return float(_share_for_rows(curve.share[None, :], curve.pgr[None, :], target)[0])


def evaluate_router(
    name: str,
    score: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> RoutingValue:
    """APGR and the shares for 50% / 80% of the gap, each with a bootstrap interval."""
    check_interval_args(confidence, n_boot)
    r, w, s = _check(score, weak, strong)
    curve = routing_curve(r, w, s)
    n = r.size
    order, ends, _ = _sorted_groups(r)
    diff_sorted = (s - w)[order]
    idx0 = np.concatenate([[0], ends])
    rng = np.random.default_rng(seed)
    apgrs: list[np.ndarray] = []
    s50: list[np.ndarray] = []
    s80: list[np.ndarray] = []
    per_chunk = max(1, 2_000_000 // n)
    done = 0
    while done < n_boot:
        b = min(per_chunk, n_boot - done)
        # multinomial row weights in sorted order: one bootstrap resample per row of `wts`
        draws = rng.integers(0, n, size=(b, n))
        flat = (draws + (np.arange(b) * n)[:, None]).ravel()
        wts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        cum_w = np.concatenate([np.zeros((b, 1)), np.cumsum(wts, axis=1)], axis=1)[:, idx0]
        cum_d = np.concatenate([np.zeros((b, 1)), np.cumsum(wts * diff_sorted, axis=1)], axis=1)[:, idx0]
        total = cum_d[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            pgr = np.where(total > 0, cum_d / total, np.nan)
        share = cum_w / n
        ds = np.diff(share, axis=1)
        apgrs.append(np.sum(ds * (pgr[:, 1:] + pgr[:, :-1]) / 2.0, axis=1))
        for target, out in ((0.5, s50), (0.8, s80)):
            out.append(_share_for_rows(share, pgr, target))
        done += b
    return RoutingValue(
        name=name,
        apgr=percentile_interval(float(_area(curve.share, curve.pgr)), np.concatenate(apgrs), confidence),
        share_for_50=percentile_interval(share_for_gap(curve, 0.5), np.concatenate(s50), confidence),
        share_for_80=percentile_interval(share_for_gap(curve, 0.8), np.concatenate(s80), confidence),
        curve=curve,
    )


def _share_for_rows(share: np.ndarray, pgr: np.ndarray, target: float) -> np.ndarray:
    """Row-wise first crossing of `target` where every row has its own share grid."""
    reached = pgr >= target - 1e-12
    j = np.argmax(reached, axis=1)
    rows = np.arange(pgr.shape[0])
    ok = reached[rows, j]
    jm = np.maximum(j - 1, 0)
    p0, p1 = pgr[rows, jm], pgr[rows, j]
    s0, s1 = share[rows, jm], share[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where((j > 0) & (p1 > p0), (target - p0) / (p1 - p0), 0.0)
    return np.where(ok, np.where(j > 0, s0 + frac * (s1 - s0), s1), np.nan)


def oracle_score(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """The best possible router's score: the per-row quality gain of the strong model."""
    return np.asarray(strong, dtype=np.float64) - np.asarray(weak, dtype=np.float64)
