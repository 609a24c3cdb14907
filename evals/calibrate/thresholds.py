"""Pick the routing threshold for an objective, and say what to expect from it with intervals.

Job: a router sends a request to the strong model iff `score >= threshold` (score = the
classifier's `complexity` by default). Given a calibration set, choose the threshold for one of:
- `target_share`: the largest strong-model share that does not exceed the target;
- `quality_floor`: the smallest strong share that recovers at least this share of the quality gap
  between all-weak and all-strong (needs per-row outcomes);
- `budget`: the largest strong share whose expected cost per 1,000 requests stays within the
  budget, given the average cost per 1,000 requests of each model.
Then report the expected strong share, quality, share of the gap recovered and cost per 1,000
requests at that fixed threshold, with bootstrap intervals over the calibration rows: the spread
to expect on new traffic like this set.

Trade-offs: thresholds are chosen among the observed score values, so ties move together and the
achieved share on the calibration set can undershoot a target share when many rows share a score.
Costs are per request averages (dollars per 1,000 requests): a per-token model would need output
lengths we do not know at routing time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from evals.eval.routing_value import routing_curve
from evals.stats.bootstrap import Interval, percentile_interval

Objective = Literal["target_share", "quality_floor", "budget"]


@dataclass(frozen=True)
class ThresholdChoice:
    objective: Objective
    target: float
    threshold: float
    n: int
    share: Interval
    quality: Interval | None = None
    gap_recovered: Interval | None = None
    cost_per_1k: Interval | None = None
    weak_cost: float | None = None
    strong_cost: float | None = None
    outcome_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "objective": self.objective,
            "target": self.target,
            "strong_if_at_least": self.threshold,
            "rows": self.n,
            "expected_strong_share": self.share.to_dict(),
        }
        for key, iv in (
            ("expected_quality", self.quality),
            ("expected_gap_recovered", self.gap_recovered),
            ("expected_cost_per_1k", self.cost_per_1k),
        ):
            if iv is not None:
                out[key] = iv.to_dict()
        if self.outcome_rows is not None:
            out["outcome_rows"] = self.outcome_rows
        if self.weak_cost is not None:
            out["weak_cost_per_1k"] = self.weak_cost
            out["strong_cost_per_1k"] = self.strong_cost
        return out


def _check_scores(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError("scores must be a non-empty 1-D array of finite numbers")
    return s


def never_threshold(scores: np.ndarray) -> float:
    """A threshold above every score: nothing goes to the strong model."""
    top = float(np.max(scores))
    return float(np.nextafter(max(top, 1.0), np.inf))


def threshold_for_share(scores: np.ndarray, target_share: float) -> float:
    """The lowest threshold whose strong share on `scores` is <= target_share (ties move together)."""
    if not 0.0 <= target_share <= 1.0:
        raise ValueError(f"target share must be in [0, 1], got {target_share}")
    s = _check_scores(scores)
    values = np.unique(s)[::-1]  # distinct scores, descending
    shares = np.array([np.mean(s >= v) for v in values])
    ok = np.flatnonzero(shares <= target_share + 1e-12)
    if ok.size == 0:
        return never_threshold(s)
    return float(values[ok[-1]])


def threshold_for_quality(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, floor: float) -> float:
    """The highest threshold whose share of the quality gap recovered is >= floor."""
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"quality floor must be in [0, 1], got {floor}")
    s = _check_scores(scores)
    curve = routing_curve(s, weak, strong)
    if curve.gap <= 0:
        raise ValueError("the strong model is not better than the weak one on this set: no gap to recover")
    reached = np.flatnonzero(curve.pgr >= floor - 1e-12)
    j = int(reached[0])
    return never_threshold(s) if j == 0 else float(curve.threshold[j])


def share_for_budget(budget_per_1k: float, weak_cost: float, strong_cost: float) -> float:
    """Largest strong share with share * strong + (1 - share) * weak <= budget (costs per 1,000 requests)."""
    if weak_cost < 0 or strong_cost < 0 or budget_per_1k < 0:
        raise ValueError("costs and budget must be >= 0")
    if strong_cost <= weak_cost:
        raise ValueError(f"strong cost ({strong_cost}) must exceed weak cost ({weak_cost})")
    if budget_per_1k < weak_cost:
        raise ValueError(f"budget {budget_per_1k} per 1k requests is below the all-weak cost {weak_cost}")
    return float(min(1.0, (budget_per_1k - weak_cost) / (strong_cost - weak_cost)))


def expected_at_threshold(
    objective: Objective,
    target: float,
    threshold: float,
    scores: np.ndarray,
    weak: np.ndarray | None = None,
    strong: np.ndarray | None = None,
    *,
    weak_cost: float | None = None,
    strong_cost: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> ThresholdChoice:
    """Share / quality / gap recovered / cost at a fixed threshold, with row-bootstrap intervals."""
    s = _check_scores(scores)
    n = s.size
    strong_row = (s >= threshold).astype(np.float64)
    has_outcomes = weak is not None and strong is not None
    wq = np.asarray(weak, np.float64) if weak is not None else np.zeros(n)
    sq = np.asarray(strong, np.float64) if strong is not None else np.zeros(n)
    routed = np.where(strong_row > 0, sq, wq)
    boot = _bootstrap_means(np.column_stack([strong_row, routed, wq, sq]), n_boot, seed)
    share_b, q_b, lo_b, hi_b = boot.T
    share = percentile_interval(float(strong_row.mean()), share_b, confidence)
    quality = gap = cost = None
    if has_outcomes:
        quality = percentile_interval(float(routed.mean()), q_b, confidence)
        with np.errstate(invalid="ignore", divide="ignore"):
            gap_b = np.where(hi_b > lo_b, (q_b - lo_b) / (hi_b - lo_b), np.nan)
        g0 = float(sq.mean() - wq.mean())
        g_hat = (float(routed.mean()) - float(wq.mean())) / g0 if g0 > 0 else float("nan")
        gap = percentile_interval(g_hat, gap_b, confidence)
    if weak_cost is not None and strong_cost is not None:
        cost = percentile_interval(
            float(share.estimate * strong_cost + (1 - share.estimate) * weak_cost),
            share_b * strong_cost + (1 - share_b) * weak_cost,
            confidence,
        )
    return ThresholdChoice(
        objective, target, float(threshold), n, share, quality, gap, cost, weak_cost, strong_cost
    )


def _bootstrap_means(cols: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Column means of `n_boot` row resamples of `cols` ([n, c] -> [n_boot, c]), in bounded-memory chunks."""
    n = cols.shape[0]
    rng = np.random.default_rng(seed)
    per_chunk = max(1, 2_000_000 // n)
    out = []
    done = 0
    while done < n_boot:
        b = min(per_chunk, n_boot - done)
        out.append(cols[rng.integers(0, n, size=(b, n))].mean(axis=1))
        done += b
    return np.concatenate(out)


def validate_objective(
    objective: str,
    target: float,
    *,
    weak_cost: float | None = None,
    strong_cost: float | None = None,
) -> None:
    """Reject an objective that no data can satisfy before any row is scored (ValueError).

    Shares and quality floors are fractions in [0, 1]; a budget needs both costs, strong > weak,
    and must reach at least the all-weak cost."""
    if not math.isfinite(target):
        raise ValueError(f"{objective.replace('_', ' ')} must be a finite number, got {target}")
    if objective == "target_share" and not 0.0 <= target <= 1.0:
        raise ValueError(f"--target-share must be in [0, 1] (a share of requests), got {target:g}")
    elif objective == "quality_floor" and not 0.0 <= target <= 1.0:
        raise ValueError(f"--quality-floor must be in [0, 1] (a share of the quality gap), got {target:g}")
    elif objective == "budget":
        if weak_cost is None or strong_cost is None:
            raise ValueError("--budget needs --weak-cost and --strong-cost (per 1,000 requests)")
        share_for_budget(target, weak_cost, strong_cost)
    elif objective not in ("target_share", "quality_floor", "budget"):
        raise ValueError(f"unknown objective {objective!r}")


def choose_threshold(
    objective: Objective,
    target: float,
    scores: np.ndarray,
    weak: np.ndarray | None = None,
    strong: np.ndarray | None = None,
    *,
    weak_cost: float | None = None,
    strong_cost: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> ThresholdChoice:
    """Pick the threshold for the objective and report what to expect at it.

    Outcomes may cover only some rows (NaN elsewhere): share and cost use every row, quality and
    gap recovered use the rows with both outcomes."""
    s = _check_scores(scores)
    has_outcomes = weak is not None and strong is not None
    wq = np.asarray(weak, np.float64) if weak is not None else np.full(s.size, np.nan)
    sq = np.asarray(strong, np.float64) if strong is not None else np.full(s.size, np.nan)
    m = ~np.isnan(wq) & ~np.isnan(sq)
    if objective == "target_share":
        thr = threshold_for_share(s, target)
    elif objective == "budget":
        if weak_cost is None or strong_cost is None:
            raise ValueError("a budget objective needs the weak and strong cost per 1,000 requests")
        thr = threshold_for_share(s, share_for_budget(target, weak_cost, strong_cost))
    elif objective == "quality_floor":
        if not has_outcomes:
            raise ValueError(
                "a quality floor needs per-row outcomes (weak_ok, weak_/strong_correct or _score columns)"
            )
        if not m.any():
            raise ValueError("no row carries both outcomes")
        thr = threshold_for_quality(s[m], wq[m], sq[m], target)
    else:
        raise ValueError(f"unknown objective {objective!r}")
    base = expected_at_threshold(
        objective, target, thr, s, weak_cost=weak_cost, strong_cost=strong_cost, n_boot=n_boot, seed=seed
    )
    if not (has_outcomes and m.any()):
        return base
    q = expected_at_threshold(objective, target, thr, s[m], wq[m], sq[m], n_boot=n_boot, seed=seed)
    return ThresholdChoice(
        objective,
        target,
        thr,
        base.n,
        base.share,
        q.quality,
        q.gap_recovered,
        base.cost_per_1k,
        weak_cost,
        strong_cost,
        int(m.sum()),
    )
