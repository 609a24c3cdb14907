"""Promotion across different training data, and rollback (issue #12 item 1).

Stored test metrics of versions trained on different files come from different test sets: they are
shown, never deciding; a same-rows check must decide, and without one the promotion is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.registry import (
    ComparisonRow,
    PromotionContext,
    RegistryError,
    log_and_register,
    promote,
    resolve,
    rollback,
)

NAME = "tierroute-classifier"


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_different_data_needs_a_same_rows_comparison(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(tier_f1=0.62, task_f1=0.60), tiny_bundle)
    assert promote(NAME).promoted
    # a toy model with perfect scores on its own tiny test split
    log_and_register(make_record(tier_f1=1.0, task_f1=1.0, dataset_digest="0ther"), tiny_bundle)
    result = promote(NAME)
    assert not result.promoted, result.reason
    assert "same rows" in result.reason and "different data" in result.reason
    stored = next(r for r in result.rows if r.metric == "test_tier_macro_f1")
    assert stored.ok and "informational" in stored.note  # shown, not deciding

    seen: list[PromotionContext] = []

    def worse_on_champion_rows(ctx: PromotionContext) -> list[ComparisonRow]:
        seen.append(ctx)
        return [
            ComparisonRow("champion rows: tier_macro_f1", 0.62, 0.28, -0.34, False, "worse"),
            ComparisonRow("candidate rows: tier_macro_f1", 0.40, 1.0, 0.60, True, ""),
        ]

    result = promote(NAME, same_rows_check=worse_on_champion_rows)
    assert not result.promoted and "champion rows: tier_macro_f1" in result.reason
    assert not seen[0].same_data and seen[0].champion is not None and seen[0].champion.version == 1
    assert resolve(f"models:/{NAME}@champion").version == 1

    result = promote(
        NAME, same_rows_check=lambda ctx: [ComparisonRow("champion rows", 0.6, 0.61, 0.01, True)]
    )
    assert result.promoted and resolve(f"models:/{NAME}@champion").version == 2


def test_same_data_does_not_run_the_same_rows_check(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(), tiny_bundle)
    promote(NAME)
    log_and_register(make_record(tier_f1=0.81), tiny_bundle)

    def must_not_run(ctx: PromotionContext) -> list[ComparisonRow]:
        raise AssertionError("same data: the stored metrics are comparable")

    result = promote(NAME, same_rows_check=must_not_run)
    assert result.promoted, result.reason


def test_rollback_moves_champion_back_and_records_it(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    with pytest.raises(RegistryError):  # nothing registered yet
        rollback(NAME)
    log_and_register(make_record(), tiny_bundle)
    with pytest.raises(RegistryError, match="no 'champion' to roll back"):
        rollback(NAME)
    promote(NAME)
    with pytest.raises(RegistryError, match="records no earlier"):
        rollback(NAME)
    log_and_register(make_record(tier_f1=0.81), tiny_bundle)
    promote(NAME)
    assert resolve(f"models:/{NAME}@champion").version == 2
    result = rollback(NAME)
    assert result.promoted and result.forced and result.champion_version == 1
    assert "rolled champion back to v1 from v2" in result.reason
    assert resolve(f"models:/{NAME}@champion").version == 1
    tags = _client(tracking_uri).get_model_version(NAME, "1").tags
    assert tags["promoted_by_force"] == "true" and tags["rolled_back_from"] == "2"
    assert tags["promoted_from"] == "2" and tags["promoted_at"].endswith("+00:00")
    assert rollback(NAME, to_version=2).champion_version == 2
    assert "nothing to do" in rollback(NAME, to_version=2).reason
    with pytest.raises(RegistryError):
        rollback(NAME, to_version=9)
