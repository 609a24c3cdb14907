"""Per-row training weights of the label heads (`tier`, `task`), by the row's `label_kind`.

Job: one documented rule for how much a row's labels count when a head is fitted. The shipped data mixes
~12,800 `proxy`/`outcome` rows (tier from a per-source rule or a one-model-pair outcome, task from a
source's style) with ~840 `hand` rows (a person's tier and task for that very request,
`data/raw/tierroute_requests`). Unweighted, the hand rows are 3% of the loss and the heads keep learning
which source a text looks like; weighting them `DEFAULT_HAND_WEIGHT` times makes a person's label win
where it exists and leaves the proxy labels in charge only where nothing better covers the input space.
Trade-off: a larger weight moves the heads towards the hand guideline (sanity-set and held-out hand
agreement rise) and away from the proxy sources' own test rows (their macro-F1 falls); evals/RESULTS.md
("Sanity set") reports both at the chosen weight. Rows of a file without `label_kind` (a user's own
data) are unweighted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_HAND_WEIGHT = 10.0
"""Loss weight of a `label_kind == "hand"` row relative to every other row (chosen in evals/RESULTS.md)."""


def label_kind_weights(
    df: Any, mask: np.ndarray, hand_weight: float = DEFAULT_HAND_WEIGHT
) -> np.ndarray | None:
    """Weights of the rows selected by boolean `mask` (in order): `hand_weight` for `hand` rows, else 1.

    None (unweighted) when the frame has no `label_kind` column, no selected row is `hand`, or
    `hand_weight` is 1.
    """
    if hand_weight <= 0:
        raise ValueError(f"hand_weight must be > 0, got {hand_weight}")
    if "label_kind" not in df.columns or hand_weight == 1.0:
        return None
    hand = (df["label_kind"].astype(str) == "hand").to_numpy()[mask]
    if not hand.any():
        return None
    return np.where(hand, float(hand_weight), 1.0)
