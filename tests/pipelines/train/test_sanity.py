"""Sanity-set agreement: the shipped set's shape, and agreement counted per head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.data.labels import TASKS, TIERS
from pipelines.train.sanity import agreement, read_sanity

REPO = Path(__file__).resolve().parents[3]
DEMO_EXAMPLES_PATH = REPO / "pipelines" / "cli" / "demo.py"


def test_shipped_sanity_set_has_varied_labelled_requests_and_the_demo_examples() -> None:
    rows = read_sanity(REPO / "data" / "sanity" / "requests.jsonl")
    assert len(rows) >= 60
    assert {r["tier"] for r in rows} == set(TIERS)
    assert {r["task"] for r in rows} <= set(TASKS) and len({r["task"] for r in rows}) == len(TASKS)
    texts = {r["text"] for r in rows}
    from pipelines.cli.demo import EXAMPLES

    assert set(EXAMPLES) <= texts
    assert read_sanity(REPO / "absent.jsonl") == []


@dataclass
class _Head:
    name: str
    labels: tuple[str, ...]
    picks: list[int]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), len(self.labels)))
        out[np.arange(len(X)), self.picks] = 1.0
        return out


def test_agreement_counts_hits_and_lists_misses() -> None:
    rows = [
        {"text": "hi", "tier": "simple", "task": "chat"},
        {"text": "prove it", "tier": "reasoning", "task": "math"},
    ]
    tier = _Head("tier", TIERS, [0, 1])  # second row wrong
    task = _Head("task", TASKS, [TASKS.index("chat"), TASKS.index("math")])
    other = _Head("domain", ("a", "b"), [0, 0])  # not labelled in the rows: ignored
    out = agreement(rows, [tier, task, other], lambda texts: np.zeros((len(texts), 4)))
    assert out["rows"] == 2 and out["tier_agreement"] == 0.5 and out["task_agreement"] == 1.0
    assert out["tier_misses"] == [{"text": "prove it", "expected": "reasoning", "got": "complex"}]
    assert "domain_agreement" not in out
    assert agreement([], [tier], lambda texts: np.zeros((0, 4))) == {}
