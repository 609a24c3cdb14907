"""The gate's acceptability head: a one-hidden-layer MLP on the gate features, temperature-calibrated.

Job: fit `sklearn.neural_network.MLPClassifier` (ReLU, one hidden layer, L2 `alpha`, early stopping
on a slice of the training split) on the gate features, then calibrate it on the validation split
by temperature scaling folded into the output layer (dividing the last layer's weights and bias by
T divides the logits by T), so the exported ONNX graph (skl2onnx converts MLPClassifier as is)
returns the calibrated probabilities.

Why not the logistic head the classifier uses: "acceptable" is a conjunction (on topic AND complete
AND not a refusal AND ...) over features that interact (a 5-character answer is fine for "What is
the capital of France?" and not for "Write a cover letter"); a linear head on [prompt, response,
product] cannot express that and rejected one good strong-model answer in six on held-out prompts.
On the same features the MLP lifts held-out ROC-AUC from ~0.82 to ~0.88 (evals/RESULTS.md, "Response gate").
Cost: a 1,165 x H + H x 1 matrix product at serving time (microseconds next to the encoder) and a
few seconds to tens of seconds of training on 2 cores.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from sklearn.neural_network import MLPClassifier

from pipelines.train.heads import FittedHead, encode_labels, fit_head, fit_temperature


def _logits(model: MLPClassifier, X: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(model.predict_proba(X), dtype=np.float64), 1e-12, 1.0)
    if p.shape[1] == 2:  # logistic output: one logit z, softmax over (0, z) is the same sigmoid
        z = np.log(p[:, 1]) - np.log(p[:, 0])
        return np.stack([np.zeros_like(z), z], axis=1)
    return np.log(p)  # softmax output: log-probabilities are the logits up to a per-row constant


def fit_mlp_head(
    name: str,
    X_train: np.ndarray,
    y_train: Sequence[str],
    X_val: np.ndarray,
    y_val: Sequence[str],
    labels: Sequence[str],
    *,
    hidden: int = 128,
    alpha: float = 1e-2,
    max_iter: int = 60,
    seed: int = 0,
    seeds: int = 1,
    sample_weight: np.ndarray | None = None,
) -> FittedHead:
    """An MLP head over `labels` (column order = `labels`), temperature-calibrated on (X_val, y_val);
    `sample_weight` weighs the training rows (validation rows are unweighted). `seeds` > 1 fits that
    many MLPs (random states seed, seed + 1, ...) and averages their logits (`merge_mlps`)."""
    labels = tuple(labels)
    yt = encode_labels(y_train, labels)
    yv = encode_labels(y_val, labels)
    missing = [labels[i] for i in range(len(labels)) if not np.any(yt == i)]
    if missing:
        raise ValueError(f"head {name!r}: no training rows for labels {missing}")
    members = []
    for k in range(max(1, seeds)):
        member = MLPClassifier(
            hidden_layer_sizes=(hidden,),
            alpha=alpha,
            max_iter=max_iter,
            early_stopping=True,
            n_iter_no_change=6,
            random_state=seed + k,
        )
        member.fit(X_train, yt, sample_weight=sample_weight)
        members.append(member)
    model = merge_mlps(members)
    temperature = fit_temperature(_logits(model, X_val), yv) if len(yv) else 1.0
    model.coefs_[-1] = model.coefs_[-1] / temperature
    model.intercepts_[-1] = model.intercepts_[-1] / temperature
    scores = {
        "iterations": float(np.mean([m.n_iter_ for m in members])),
        "early_stopping_accuracy": float(np.mean([m.best_validation_score_ or 0.0 for m in members])),
        "seeds": float(len(members)),
    }
    return FittedHead(name, labels, model, alpha, temperature, scores)


def merge_mlps(members: Sequence[MLPClassifier]) -> MLPClassifier:
    """One MLP whose output logit is the MEAN of the members' logits (one hidden layer each, same
    inputs and classes): their hidden layers side by side, output weights / len(members), output bias
    the members' mean. Seed averaging without a new graph: skl2onnx exports the result as any MLP,
    and the serving cost is one wider matrix product."""
    if len(members) == 1:
        return members[0]
    first = members[0]
    if any(len(m.coefs_) != 2 or len(first.coefs_) != 2 for m in members):
        raise ValueError("merge_mlps needs one-hidden-layer MLPs")
    k = float(len(members))
    merged = copy.deepcopy(first)
    merged.coefs_ = [
        np.concatenate([m.coefs_[0] for m in members], axis=1),
        np.concatenate([m.coefs_[1] for m in members], axis=0) / k,
    ]
    merged.intercepts_ = [
        np.concatenate([m.intercepts_[0] for m in members]),
        np.mean([m.intercepts_[1] for m in members], axis=0),
    ]
    merged.hidden_layer_sizes = (int(merged.coefs_[0].shape[1]),)
    return merged


def fit_logistic_head(
    name: str,
    X_train: np.ndarray,
    y_train: Sequence[str],
    X_val: np.ndarray,
    y_val: Sequence[str],
    labels: Sequence[str],
    *,
    Cs: Sequence[float] = (0.25, 1.0, 4.0),
    cv_folds: int = 2,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> FittedHead:
    """The logistic head for small training sets (`head="logistic"` / `"auto"` below the MLP's row
    count): the classifier's recipe (`pipelines.train.heads.fit_head`: balanced class weights times
    `sample_weight`, C by stratified CV, temperature-calibrated on the unweighted validation rows) with
    the gate's smaller C grid and two folds."""
    return fit_head(
        name,
        X_train,
        y_train,
        X_val,
        y_val,
        labels,
        Cs=Cs,
        cv_folds=cv_folds,
        seed=seed,
        sample_weight=sample_weight,
    )
