"""Sanity-set agreement: does the classifier call everyday requests what a careful person would?

Job: score fitted heads on `data/sanity/requests.jsonl` (about 60 hand-written, realistic requests plus
`tierroute demo`'s examples, each with the tier and task a careful person would expect) and report the
share of rows where the head's top label agrees. A smoke test, not a benchmark: 62 rows, one
person's judgement; the targets are >= 85% tier and >= 90% task agreement.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SANITY_PATH = Path("data/sanity/requests.jsonl")


def read_sanity(path: Path = SANITY_PATH) -> list[dict[str, str]]:
    """The sanity rows (`text`, `tier`, `task`); an empty list when the file is absent."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def agreement(
    rows: Sequence[dict[str, str]],
    heads: Sequence[Any],
    embed: Callable[[list[str]], np.ndarray],
) -> dict[str, Any]:
    """Per head present in the rows: `<head>_agreement` and the disagreeing rows (text, expected, got)."""
    if not rows:
        return {}
    X = embed([r["text"] for r in rows])
    out: dict[str, Any] = {"rows": len(rows)}
    for head in heads:
        if head.name not in rows[0]:
            continue
        predicted = [head.labels[i] for i in np.argmax(head.predict_proba(X), axis=1)]
        expected = [r[head.name] for r in rows]
        hits = [p == e for p, e in zip(predicted, expected, strict=True)]
        out[f"{head.name}_agreement"] = float(np.mean(hits))
        out[f"{head.name}_misses"] = [
            {"text": r["text"][:80], "expected": e, "got": p}
            for r, p, e, ok in zip(rows, predicted, expected, hits, strict=True)
            if not ok
        ]
    return out


HAND_SOURCE = "tierroute_requests"


def heldout_hand_report(
    df: Any, X: np.ndarray, heads: Sequence[Any], source: str = HAND_SOURCE
) -> dict[str, float]:
    """Test-split numbers that separate the hand-labelled rows from the rest (empty without them).

    `heldout_hand_<head>_agreement`: share of `source`'s test rows (held out by the build's group split,
    never trained on) where the head's top label is the annotator's; less optimistic than the sanity set,
    though written by the same person. `test_<head>_macro_f1_without_hand`: macro-F1 on every other test
    row, comparable with a model trained before `source` existed.
    """
    from sklearn.metrics import f1_score

    if "source" not in df.columns:
        return {}
    test = (df["split"] == "test").to_numpy()
    hand = (df["source"] == source).to_numpy()
    if not (test & hand).any():
        return {}
    out: dict[str, float] = {"heldout_hand_rows": float((test & hand).sum())}
    for head in heads:
        if head.name not in df.columns:
            continue
        labelled = df[head.name].notna().to_numpy()
        predicted = np.asarray(head.labels)[np.argmax(head.predict_proba(X), axis=1)]
        truth = df[head.name].astype(str).to_numpy()
        held = test & hand & labelled
        out[f"heldout_hand_{head.name}_agreement"] = float(np.mean(predicted[held] == truth[held]))
        rest = test & ~hand & labelled
        if rest.any():
            out[f"test_{head.name}_macro_f1_without_hand"] = float(
                f1_score(
                    truth[rest], predicted[rest], labels=list(head.labels), average="macro", zero_division=0
                )
            )
    return out
