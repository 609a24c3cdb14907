"""Classification metrics and the two plots every head gets.

Job: turn (true labels, predicted probabilities) into the numbers and PNGs that are logged to
MLflow and printed: accuracy, macro-F1, per-class precision/recall/F1, log-loss, expected
calibration error, a confusion matrix and a reliability diagram. Pure functions; plotting uses
matplotlib's Agg backend (no display needed). `evals` builds its intervals on top of these.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

from pipelines.train.calibration import expected_calibration_error, top_label


def classification_metrics(
    y_true: Sequence[str], proba: np.ndarray, labels: Sequence[str]
) -> dict[str, float]:
    """Headline and per-class metrics; keys are flat so they log straight to MLflow."""
    labels = list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    y_idx = np.array([index[v] for v in y_true], dtype=np.int64)
    pred = proba.argmax(axis=1)
    ks = list(range(len(labels)))
    out: dict[str, float] = {
        "accuracy": float(accuracy_score(y_idx, pred)),
        "macro_f1": float(f1_score(y_idx, pred, labels=ks, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y_idx, _renormalised(proba), labels=ks)),
        "ece": expected_calibration_error(*top_label(proba, y_idx)),
        "n": float(len(y_idx)),
    }
    p, r, f, s = precision_recall_fscore_support(y_idx, pred, labels=ks, zero_division=0)
    for i, lab in enumerate(labels):
        out[f"{lab}_precision"] = float(p[i])
        out[f"{lab}_recall"] = float(r[i])
        out[f"{lab}_f1"] = float(f[i])
        out[f"{lab}_support"] = float(s[i])
    return out


def plot_confusion_matrix(
    y_true: Sequence[str], proba: np.ndarray, labels: Sequence[str], path: Path, title: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    cm = confusion_matrix([index[v] for v in y_true], proba.argmax(axis=1), labels=list(range(len(labels))))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2.5, 1.0 * len(labels) + 2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j, i, str(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black"
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reliability(
    y_true: Sequence[str], proba: np.ndarray, labels: Sequence[str], path: Path, title: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = {lab: i for i, lab in enumerate(labels)}
    y_idx = np.array([index[v] for v in y_true])
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_idx
    edges = np.linspace(0, 1, 11)
    mids, accs, counts = [], [], []
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            mids.append(conf[m].mean())
            accs.append(correct[m].mean())
            counts.append(int(m.sum()))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.plot(mids, accs, "o-", label=f"ECE={expected_calibration_error(*top_label(proba, y_idx)):.3f}")
    for x, y, c in zip(mids, accs, counts, strict=True):
        ax.annotate(str(c), (x, y), fontsize=7, textcoords="offset points", xytext=(3, -9))
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _renormalised(proba: np.ndarray) -> np.ndarray:
    """float64 rows summing to 1 (float32 ONNX outputs are off by ~1e-7, which sklearn warns about)."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    return p / p.sum(axis=1, keepdims=True)
