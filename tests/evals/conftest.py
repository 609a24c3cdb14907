"""Fixtures for the evaluation tests: a held-out pool scored once with the real trained bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

POOL_ROWS = 1200


@pytest.fixture(scope="session")
def heldout_df(repo_root: Path) -> Any:
    """Test-split rows of the shipped labelled data (never seen by the trained fixture's heads)."""
    import pandas as pd

    df = pd.read_parquet(repo_root / "data" / "labelled" / "requests.parquet")
    return df[df["split"] == "test"].reset_index(drop=True)


@pytest.fixture(scope="session")
def eval_bundle(trained_bundle: Path) -> Any:
    from serving.model.bundle import Bundle

    return Bundle.load(trained_bundle, threads=2)


@pytest.fixture(scope="session")
def scored_pool(eval_bundle: Any, heldout_df: Any) -> Any:
    """POOL_ROWS held-out rows scored once: probabilities, embeddings, token counts."""
    from evals.drift.bench import make_pool

    return make_pool(eval_bundle, heldout_df, POOL_ROWS, seed=0)
