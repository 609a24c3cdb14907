"""Boolean label columns (e.g. `weak_ok` from `data from-log` or the shipped data) are scored under the
names the trainer gives them ("true"/"false"), so eval and the promotion gate accept such heads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evals.io.tables import label_columns
from pipelines.train.reference_stats import label_indices


def test_boolean_labels_match_the_trainers_names() -> None:
    df = pd.DataFrame(
        {"weak_ok": [True, False, None, np.bool_(True)], "tier": ["simple", None, "complex", "x"]}
    )
    labels = label_columns(df, {"weak_ok": ("false", "true"), "tier": ("simple", "complex")})
    assert labels["weak_ok"] == ["true", "false", None, "true"]
    assert labels["tier"] == ["simple", None, "complex", "x"]
    assert label_indices(labels["weak_ok"], ("false", "true"), "weak_ok").tolist() == [1, 0, -1, 1]
