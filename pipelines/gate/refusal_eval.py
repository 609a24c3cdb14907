"""Refusal detection on the hand labels: the phrase list, the learned gate, and the two combined.

Job: read `data/gate/refusal_labels.csv` (R = refuses or deflects, Q = only asks for clarification,
C = answers; U = unsure, left out) with the CoCoNoT responses they label, keep the rows whose prompt
sits in a held-out split of the gate data, and score four refusal detectors against the labels:
- `phrase`: the phrase list alone (`serving.gate.refusals.is_refusal`);
- `model`: the learned gate alone: it rejects the answer, its reason head's top class is `refusal`
  and P(refusal) >= `refusal_min`;
- `combined`: what the served gate does: the checks' refusal call first (the phrase list less
  hedge-then-help answers, `serving.gate.refusals.check_refusal_match`), then the model;
- `gate_rejects`: the served gate rejects the answer for any reason (what a cascade sees; it also
  rejects wrong answers, which the labels count as answers, so it is not a refusal detector).
Refusals and clarification requests count as positives.

`refusal_min` (stored in the gate bundle as `thresholds.reason_refusal`; the served gate names a
model rejection `refusal` only above it) is chosen on the hand labels whose prompt is in the
validation split (`pick_refusal_min`: best `combined` accuracy, ties to the stricter value) and
reported on the test split: with ~100 refusals in all, a model that adds false refusals to the
phrase list's true ones must be kept out of the refusal call, not averaged in.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.gate.refusals import is_refusal

POSITIVE = frozenset({"R", "Q"})
LABELS = frozenset({"R", "Q", "C"})


def hand_labelled_pairs(raw_dir: Path, labels_csv: Path) -> list[dict[str, Any]]:
    """[{prompt, response, label, refusal}] for every hand label R/Q/C, in file order."""
    if not labels_csv.is_file():
        return []
    with labels_csv.open(newline="", encoding="utf-8") as fh:
        labels = [r for r in csv.DictReader(fh) if r["label"] in LABELS]
    pairs: dict[tuple[str, str], tuple[str, str]] = {}
    with (raw_dir / "coconot" / "data_coconot_pref.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                for field in ("chosen", "rejected"):
                    pairs[(r["id"], field)] = (r["prompt"], r[field])
    out = []
    for lab in labels:
        key = (lab["id"], lab["field"])
        if key in pairs and pairs[key][1].strip():
            prompt, response = pairs[key]
            out.append(
                {
                    "prompt": prompt,
                    "response": response,
                    "label": lab["label"],
                    "refusal": lab["label"] in POSITIVE,
                }
            )
    return out


def detector_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    t = np.asarray(truth).astype(bool)
    p = np.asarray(predicted).astype(bool)
    tp, fp, fn = float(np.sum(p & t)), float(np.sum(p & ~t)), float(np.sum(~p & t))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "rows": float(len(t)),
        "refusals": float(np.sum(t)),
        "accuracy": float(np.mean(p == t)) if len(t) else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }


def refusal_detectors(
    responses: Sequence[str],
    p_acceptable: np.ndarray,
    reason_top: Sequence[str] | None,
    check_refusal: np.ndarray,
    check_fails: np.ndarray,
    threshold: float,
    p_refusal: np.ndarray | None = None,
    refusal_min: float = 0.0,
) -> dict[str, np.ndarray]:
    """Each detector's refusal predictions for aligned rows (see the module docstring)."""
    phrase = np.array([is_refusal(r) for r in responses], dtype=bool)
    rejects = np.asarray(p_acceptable) < threshold
    top = np.array(list(reason_top) if reason_top is not None else ["refusal"] * len(responses))
    model = rejects & (top == "refusal")
    if p_refusal is not None:
        model &= np.asarray(p_refusal) >= refusal_min
    served_rejects = np.asarray(check_fails, dtype=bool) | rejects
    return {
        "phrase": phrase,
        "model": model,
        "combined": np.asarray(check_refusal, dtype=bool) | (~np.asarray(check_fails, dtype=bool) & model),
        "gate_rejects": served_rejects,
    }


def evaluate_refusals(
    pairs: list[dict[str, Any]],
    split_of_prompt: Callable[[str], str | None],
    predict: Callable[[list[str], list[str]], dict[str, np.ndarray]],
    splits: Sequence[str] = ("test",),
) -> dict[str, Any]:
    """Detector metrics on the hand-labelled rows whose prompt is in `splits` (unknown split: skipped)."""
    keep = [p for p in pairs if split_of_prompt(p["prompt"]) in splits]
    if not keep:
        return {"rows": 0}
    preds = predict([p["prompt"] for p in keep], [p["response"] for p in keep])
    truth = np.array([p["refusal"] for p in keep])
    return {
        "rows": len(keep),
        "splits": list(splits),
        **{k: detector_metrics(truth, v) for k, v in preds.items()},
    }


REFUSAL_MIN_GRID: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.01)
"""Candidate `refusal_min` values; 1.01 = the model never calls a refusal (the phrase list alone)."""


def pick_refusal_min(
    truth: np.ndarray,
    detectors_at: Callable[[float], dict[str, np.ndarray]],
    grid: Sequence[float] = REFUSAL_MIN_GRID,
) -> tuple[float, dict[str, float]]:
    """The `refusal_min` with the best `combined` accuracy against `truth` (ties: the larger value), and
    the accuracy at every grid value (for the report)."""
    scores = {f"{v:g}": detector_metrics(truth, detectors_at(v)["combined"])["accuracy"] for v in grid}
    best = max(grid, key=lambda v: (scores[f"{v:g}"], v))
    return float(best), scores
