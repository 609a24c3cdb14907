"""Expected calibration error and reliability bins: the project's one ECE (training and evals).

Job: measure how far a head's top-class probability is from its hit rate. ECE here is the
standard top-label ECE with equal-width bins on [0, 1]: sum over bins of |hits - confidence sum| / n,
which equals sum_b (n_b / n) * |acc_b - conf_b|. `top_label(proba, y)` gives its inputs from
[n, K] probabilities; `evals.stats.calibration` adds the bootstrap interval.

Trade-offs: equal-width bins (15 by default) are what papers and the training report use, so
numbers line up; they are biased upward on small samples (few rows per bin). Bin edges are
right-closed except the first bin also holds 0.0; a confidence of exactly 1.0 falls in the last bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin counts, mean confidence and accuracy (NaN in empty bins)."""

    edges: np.ndarray
    counts: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray


def _check(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=np.float64)
    h = np.asarray(correct, dtype=np.float64)
    if c.ndim != 1 or c.shape != h.shape or c.size == 0:
        raise ValueError("confidence and correct must be non-empty 1-D arrays of equal length")
    if np.any(~np.isfinite(c)) or c.min() < 0.0 or c.max() > 1.0:
        raise ValueError("confidence must lie in [0, 1]")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    return c, h


def bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width, right-closed bins: (0, 1/n] -> 0 ... ((n-1)/n, 1] -> n-1; 0.0 -> bin 0."""
    c = np.asarray(confidence, dtype=np.float64)
    return np.clip(np.ceil(c * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def top_label(proba: np.ndarray, y_true_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) from [n, K] probabilities and true class indices."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError("proba must be [n, K]")
    t = np.asarray(y_true_idx, dtype=np.int64)
    return p.max(axis=1), (p.argmax(axis=1) == t).astype(np.float64)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    c, h = _check(confidence, correct, n_bins)
    b = bin_index(c, n_bins)
    gap = np.bincount(b, weights=h, minlength=n_bins) - np.bincount(b, weights=c, minlength=n_bins)
    return float(np.abs(gap).sum() / c.size)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> ReliabilityBins:
    c, h = _check(confidence, correct, n_bins)
    b = bin_index(c, n_bins)
    counts = np.bincount(b, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(b, weights=c, minlength=n_bins) / counts
        acc = np.bincount(b, weights=h, minlength=n_bins) / counts
    return ReliabilityBins(np.linspace(0.0, 1.0, n_bins + 1), counts, conf, acc)
