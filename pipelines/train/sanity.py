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
