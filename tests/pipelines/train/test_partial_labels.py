"""Per-head label masks: a row may leave some heads unlabelled; each head fits (and is scored) on the
rows labelled for it, so `tierroute data from-log` rows (only `weak_ok`) merge with the default data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _train(data: Path, session_cache: Path, out: Path):  # type: ignore[no-untyped-def]
    from pipelines.train.classifier import TrainConfig, train

    config = TrainConfig(
        data=data,
        out_dir=out,
        encoder_cache=session_cache / "encoder",
        embedding_cache=session_cache / "embeddings",
        register=False,
        routing_head=False,
        loso=False,
    )
    messages: list[str] = []
    return train(config, progress=False, echo=messages.append), messages


def test_a_head_with_partial_labels_trains_only_on_its_rows(
    small_labelled_file: Path, session_cache: Path, tmp_path: Path
) -> None:
    df = pd.read_parquet(small_labelled_file)
    unlabelled = np.arange(len(df)) % 3 == 0
    partial = df.copy()
    partial.loc[unlabelled, "task"] = None
    partial.to_parquet(tmp_path / "partial.parquet")
    df[~unlabelled].to_parquet(tmp_path / "dropped.parquet")

    got, messages = _train(tmp_path / "partial.parquet", session_cache, tmp_path / "a")
    ref, _ = _train(tmp_path / "dropped.parquet", session_cache, tmp_path / "b")
    heads = {h.name: h for h in got.heads}
    ref_heads = {h.name: h for h in ref.heads}
    # task: fitted on exactly the rows that carry a task (the same rows as a file without the others)
    np.testing.assert_allclose(heads["task"].model.coef_, ref_heads["task"].model.coef_, atol=1e-9)
    assert heads["task"].temperature == pytest.approx(ref_heads["task"].temperature)
    for key in ("test_task_macro_f1", "test_task_accuracy"):
        assert got.metrics[key] == pytest.approx(ref.metrics[key])  # scored on its labelled rows only
    # tier: every row is labelled for it, so it saw the rows the task head did not
    assert heads["tier"].model.coef_.shape == ref_heads["tier"].model.coef_.shape
    assert not np.allclose(heads["tier"].model.coef_, ref_heads["tier"].model.coef_)
    n_task = int((~unlabelled).sum())
    assert any(m.startswith(f"head task: trains on the {n_task} rows labelled for it") for m in messages)
