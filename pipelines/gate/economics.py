"""The gate's operating point by cascade economics (`tierroute gate calibrate`, the training report).

Job: for a cheap/strong price pair and the cheap model's pass rate (share of its answers that are
acceptable), turn the gate's measured accept rates on held-out rows into, per threshold:
- expected cost per 1,000 requests: every request pays the cheap call, every escalated one also
  pays the strong call;
- expected bad answers served per 1,000 requests: unacceptable cheap answers the gate accepts
  (the strong model's answers are assumed acceptable; `strong_bad_rate` says otherwise);
and pick the threshold that minimises cost + `bad_answer_cost` x bad answers.

With q the pass rate, TPR(t) = P(accept | acceptable) and FAR(t) = P(accept | unacceptable):
P(accept) = q TPR + (1 - q) FAR; cost = 1000 (c_cheap + (1 - P(accept)) c_strong);
bad = 1000 ((1 - q) FAR + (1 - P(accept)) strong_bad_rate).

Trade-off: TPR and FAR come from labelled held-out rows whose mix of reasons is the data set's, not
production's; the pass rate is a parameter (measure it on your own traffic) rather than inferred.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CHEAP_COST = 0.26
"""$ per 1,000 requests on the cheap model (gpt-4o-mini prices, ~500 tokens in / 300 out)."""
DEFAULT_STRONG_COST = 4.25
"""$ per 1,000 requests on the strong model (gpt-4o prices, same tokens)."""
DEFAULT_PASS_RATE = 0.7
"""Share of cheap-model answers that are acceptable (set it from your own traffic)."""
DEFAULT_BAD_ANSWER_COST = 0.02
"""$ one bad answer served costs you (support, churn): about five strong calls."""


@dataclass(frozen=True)
class CascadePrices:
    cheap_cost: float = DEFAULT_CHEAP_COST
    strong_cost: float = DEFAULT_STRONG_COST
    pass_rate: float = DEFAULT_PASS_RATE
    bad_answer_cost: float = DEFAULT_BAD_ANSWER_COST
    strong_bad_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.pass_rate <= 1.0 or not 0.0 <= self.strong_bad_rate <= 1.0:
            raise ValueError("pass_rate and strong_bad_rate must be in [0, 1]")
        if min(self.cheap_cost, self.strong_cost, self.bad_answer_cost) < 0:
            raise ValueError("costs must be >= 0")


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    accept_good: float  # TPR: acceptable answers accepted
    false_accept: float  # FAR: unacceptable answers accepted
    escalated: float  # share of all requests escalated
    cost_per_1000: float
    bad_per_1000: float
    objective: float  # cost + bad_answer_cost x bad, per 1,000


def cascade_point(threshold: float, tpr: float, far: float, prices: CascadePrices) -> CurvePoint:
    q = prices.pass_rate
    p_accept = q * tpr + (1 - q) * far
    escalated = 1.0 - p_accept
    cost = 1000 * (prices.cheap_cost / 1000 + escalated * prices.strong_cost / 1000)
    bad = 1000 * ((1 - q) * far + escalated * prices.strong_bad_rate)
    return CurvePoint(
        threshold=float(threshold),
        accept_good=float(tpr),
        false_accept=float(far),
        escalated=float(escalated),
        cost_per_1000=float(cost),
        bad_per_1000=float(bad),
        objective=float(cost + prices.bad_answer_cost * bad),
    )


def cost_curve(
    scores: np.ndarray, acceptable: np.ndarray, prices: CascadePrices, thresholds: np.ndarray | None = None
) -> list[CurvePoint]:
    """One point per threshold (accept iff score >= threshold); default grid 0.00..1.00 by 0.01, plus
    1.0 + epsilon (escalate everything)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(acceptable).astype(bool)
    if not y.any() or y.all():
        raise ValueError("the cost curve needs both acceptable and unacceptable rows")
    grid = np.round(np.linspace(0.0, 1.0, 101), 2) if thresholds is None else np.asarray(thresholds)
    grid = np.append(grid, np.nextafter(1.0, 2.0)) if thresholds is None else grid
    out = []
    for t in grid:
        accept = s >= t
        out.append(cascade_point(float(t), float(np.mean(accept[y])), float(np.mean(accept[~y])), prices))
    return out


def best_point(curve: list[CurvePoint]) -> CurvePoint:
    """The threshold minimising cost + bad_answer_cost x bad answers (ties: the lower threshold)."""
    return min(curve, key=lambda c: (round(c.objective, 9), c.threshold))


def baselines(prices: CascadePrices) -> dict[str, dict[str, float]]:
    """Always cheap (no gate), always strong (no cascade) and a perfect gate, per 1,000 requests."""
    q = prices.pass_rate
    return {
        "always_cheap": asdict(cascade_point(0.0, 1.0, 1.0, prices)),
        "always_strong": {
            "cost_per_1000": 1000 * prices.strong_cost / 1000,
            "bad_per_1000": 1000 * prices.strong_bad_rate,
        },
        "perfect_gate": asdict(cascade_point(0.5, 1.0, 0.0, prices)),
        "pass_rate": {"value": q},
    }


def plot_cost_curve(curve: list[CurvePoint], chosen: CurvePoint, prices: CascadePrices, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [c for c in curve if c.threshold <= 1.0]
    t = [c.threshold for c in pts]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(t, [c.cost_per_1000 for c in pts], color="tab:blue", label="cost $ / 1,000 requests")
    ax.axhline(prices.strong_cost, color="tab:blue", ls=":", lw=1, label="always strong")
    ax.set_xlabel("threshold on P(acceptable) (accept if >=)")
    ax.set_ylabel("$ per 1,000 requests")
    ax2 = ax.twinx()
    ax2.plot(t, [c.bad_per_1000 for c in pts], color="tab:red", label="bad answers served / 1,000")
    ax2.set_ylabel("bad answers served per 1,000")
    ax.axvline(chosen.threshold, color="grey", ls="--", lw=1)
    ax.set_title(
        f"cascade: cheap ${prices.cheap_cost}/k, strong ${prices.strong_cost}/k, pass rate {prices.pass_rate}"
    )
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="upper center", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curve_table(curve: list[CurvePoint], every: float = 0.1) -> list[dict[str, Any]]:
    """The curve thinned to thresholds on a coarse grid, for printing and the report."""
    keep = {round(k * every, 2) for k in range(round(1 / every) + 1)}
    return [asdict(c) for c in curve if round(c.threshold, 2) in keep and c.threshold <= 1.0]
