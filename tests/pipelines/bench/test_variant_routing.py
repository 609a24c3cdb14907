"""`bench variants` scores routing value with the definition `evals` uses, and picks variants by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals.eval.routing_value import apgr as evals_apgr
from pipelines.bench.variants import DEFAULT_VARIANTS, apgr, routing_value, select_variants


def test_apgr_matches_the_evals_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 300))
        score = np.round(rng.random(n), int(rng.integers(1, 4)))  # rounding makes tie groups
        weak = (rng.random(n) < 0.6).astype(float)
        strong = np.maximum(weak, (rng.random(n) < 0.9).astype(float))
        if strong.mean() <= weak.mean():
            continue
        assert apgr(score, weak, strong) == pytest.approx(evals_apgr(score, weak, strong), abs=1e-12)


def test_routing_value_reads_weak_ok_strings_and_skips_rows_without_outcome() -> None:
    test = pd.DataFrame({"weak_ok": pd.array(["false", "true", None, "true", "false"], dtype="string")})
    # the two not-ok rows score highest: an oracle order, so APGR is above random
    complexity = np.array([0.9, 0.1, 0.5, 0.2, 0.8])
    value, rows = routing_value(complexity, test)
    assert rows == 4 and value > 0.5
    reversed_value, _ = routing_value(1.0 - complexity, test)
    assert reversed_value < 0.5
    assert routing_value(complexity, pd.DataFrame({"text": list("abcde")})) == (
        pytest.approx(np.nan, nan_ok=True),
        0,
    )


def test_select_variants_by_name() -> None:
    assert select_variants(None) == DEFAULT_VARIANTS
    picked = select_variants("head_tail 128, head_tail 128 int8-static")
    assert [v[0] for v in picked] == ["head_tail 128 (default)", "head_tail 128 int8-static"]
    assert picked[1][2] == "int8-static"
    with pytest.raises(ValueError, match="no variant named"):
        select_variants("head_tail 999")
