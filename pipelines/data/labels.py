"""The default label sets: tiers and task types.

Job: one place that names the labels the shipped data uses, so label maps, validation and
documentation agree. Trade-off: users may train on their own label sets (`--label-columns`);
these constants are defaults, not a closed world. The tier order matters: `complexity` is the
expected tier index / 2, so TIERS must stay ordered from cheapest to strongest.
"""

from __future__ import annotations

TIERS: tuple[str, ...] = ("simple", "complex", "reasoning")
"""simple -> cheap fast model; complex -> capable model; reasoning -> strongest model."""

TASKS: tuple[str, ...] = (
    "code",
    "math",
    "summarization",
    "extraction",
    "classification",
    "factual_qa",
    "writing",
    "chat",
)

DEFAULT_LABEL_SETS: dict[str, tuple[str, ...]] = {"tier": TIERS, "task": TASKS}
"""Declared label sets for the default heads; a label outside these is a validation error."""

UNLABELLED = "unlabelled"
"""Count key, in the build summary and the data card, of rows a source leaves without a label (its
`SourceSpec.empty_heads`): each head trains and is scored only on its labelled rows."""
