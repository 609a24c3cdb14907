"""One calibrated logistic-regression head per label column.

Job: fit a multinomial LogisticRegression on frozen sentence embeddings, with balanced class
weights, C picked by stratified cross-validation on the training split, then calibrate the
probabilities on the validation split.

Calibration is temperature scaling (one scalar T minimising validation log-loss). Because the
head is linear, dividing its logits by T is the same as dividing `coef_` and `intercept_` by T,
so the calibrated head is still a plain LogisticRegression: skl2onnx exports it as is and ONNX
probabilities match the calibrated training-time probabilities exactly. Trade-off: temperature
scaling fixes over/under-confidence but not class-specific miscalibration (isotonic or vector
scaling would, at the cost of a non-linear, harder-to-export head and more validation data).

Labels are encoded as indices into the declared label order, so `predict_proba` columns follow
that order (tier order matters for `complexity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neural_network import MLPClassifier

DEFAULT_CS: tuple[float, ...] = (0.5, 2.0, 8.0, 32.0)


@dataclass
class FittedHead:
    """A trained head: its name, label order, the (calibrated) estimator and how it was chosen."""

    name: str
    labels: tuple[str, ...]
    model: LogisticRegression | MLPClassifier
    """LogisticRegression here; the response gate's acceptability head is an MLP (`pipelines.gate.heads`)."""
    C: float
    temperature: float
    cv_scores: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(X), dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "labels": list(self.labels), "C": self.C, "temperature": self.temperature}


def encode_labels(y: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({v for v in y if v not in index})
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not in the declared set {list(labels)}")
    return np.array([index[v] for v in y], dtype=np.int64)


def _logits(model: LogisticRegression, X: np.ndarray) -> np.ndarray:
    z = np.asarray(model.decision_function(X), dtype=np.float64)
    if z.ndim == 1:  # binary: sklearn keeps one logit; softmax over (0, z) is the same sigmoid
        z = np.stack([np.zeros_like(z), z], axis=1)
    return z


def fit_temperature(logits: np.ndarray, y_idx: np.ndarray) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T)."""

    def nll(log_t: float) -> float:
        lp = log_softmax(logits / np.exp(log_t), axis=1)
        return float(-lp[np.arange(len(y_idx)), y_idx].mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def fit_head(
    name: str,
    X_train: np.ndarray,
    y_train: Sequence[str],
    X_val: np.ndarray,
    y_val: Sequence[str],
    labels: Sequence[str],
    *,
    Cs: Sequence[float] = DEFAULT_CS,
    cv_folds: int = 3,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> FittedHead:
    """Fit, pick C by CV macro-F1, calibrate on validation. `sample_weight` (one per training row, e.g.
    `pipelines.train.label_weights`) scales each row's loss; CV folds slice it, scoring stays unweighted."""
    labels = tuple(labels)
    yt = encode_labels(y_train, labels)
    yv = encode_labels(y_val, labels)
    missing = [labels[i] for i in range(len(labels)) if not np.any(yt == i)]
    if missing:
        raise ValueError(f"head {name!r}: no training rows for labels {missing}")
    min_count = int(np.bincount(yt, minlength=len(labels)).min())
    folds = max(2, min(cv_folds, min_count))
    base = LogisticRegression(class_weight="balanced", max_iter=3000, random_state=seed)
    search = GridSearchCV(
        base,
        {"C": list(Cs)},
        scoring="f1_macro",
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
        n_jobs=1,
        refit=True,
    )
    if sample_weight is None:
        search.fit(X_train, yt)
    else:
        if len(sample_weight) != len(yt):
            raise ValueError(f"head {name!r}: {len(sample_weight)} sample weights for {len(yt)} rows")
        search.fit(X_train, yt, sample_weight=np.asarray(sample_weight, dtype=np.float64))
    model: LogisticRegression = search.best_estimator_
    best_c = float(search.best_params_["C"])
    temperature = fit_temperature(_logits(model, X_val), yv) if len(yv) else 1.0
    model.coef_ = model.coef_ / temperature
    model.intercept_ = model.intercept_ / temperature
    scores = {
        f"cv_f1_macro_C{c:g}": float(s)
        for c, s in zip(search.cv_results_["param_C"], search.cv_results_["mean_test_score"], strict=True)
    }
    return FittedHead(name, labels, model, best_c, temperature, scores)
