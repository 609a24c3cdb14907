"""A vectorised bootstrap interval for the expected calibration error.

Job: the ECE itself, its bins and `top_label` are `pipelines.train.calibration`'s (one definition
for the training report and evals); this module adds the percentile bootstrap interval, which
matters more than the point estimate below a few hundred rows (equal-width bins are biased upward
on small samples).
"""

from __future__ import annotations

import numpy as np

from evals.stats.bootstrap import Interval, check_interval_args, percentile_interval
from pipelines.train.calibration import (
    ReliabilityBins,
    _check,
    bin_index,
    expected_calibration_error,
    reliability_bins,
    top_label,
)

__all__ = [
    "ReliabilityBins",
    "bin_index",
    "bootstrap_ece",
    "expected_calibration_error",
    "reliability_bins",
    "top_label",
]


def bootstrap_ece(
    confidence: np.ndarray,
    correct: np.ndarray,
    *,
    n_bins: int = 15,
    n_boot: int = 1000,
    seed: int = 0,
    confidence_level: float = 0.95,
) -> Interval:
    """ECE with a percentile bootstrap interval; all resamples in one bincount per chunk."""
    check_interval_args(confidence_level, n_boot)
    c, h = _check(confidence, correct, n_bins)
    b = bin_index(c, n_bins)
    n = c.size
    rng = np.random.default_rng(seed)
    per_chunk = max(1, 2_000_000 // n)
    out = []
    done = 0
    while done < n_boot:
        k = min(per_chunk, n_boot - done)
        idx = rng.integers(0, n, size=(k, n))
        flat = (b[idx] + (np.arange(k) * n_bins)[:, None]).ravel()
        gap = np.bincount(flat, weights=(h[idx] - c[idx]).ravel(), minlength=k * n_bins).reshape(k, n_bins)
        out.append(np.abs(gap).sum(axis=1) / n)
        done += k
    return percentile_interval(
        expected_calibration_error(c, h, n_bins), np.concatenate(out), confidence_level
    )
