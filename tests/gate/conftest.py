"""Gate fixtures: a real gate dataset built from data/raw, and a real small gate bundle (int8 encoder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RAW = REPO / "data" / "raw"
LABELS = REPO / "data" / "gate" / "refusal_labels.csv"
TRAIN_ROWS = 700


@pytest.fixture(scope="session")
def gate_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gate.parquet rebuilt from the shipped raw data into a temp folder (exercises the builder)."""
    if not (RAW / "coconot").is_dir() or not (RAW / "alpaca_eval_outputs").is_dir():
        pytest.skip("data/raw is missing the gate sources")
    from pipelines.gate_data import build_gate_dataset

    out = tmp_path_factory.mktemp("gate-data") / "gate.parquet"
    build_gate_dataset(RAW, out, LABELS)
    return out


@pytest.fixture(scope="session")
def trained_gate(gate_dataset: Path, session_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real GateTrainResult on a ~700-row hash-stratified slice (no registry)."""
    from pipelines.gate_train import GateTrainConfig, train_gate

    config = GateTrainConfig(
        data=gate_dataset,
        out_dir=tmp_path_factory.mktemp("gate-bundles"),
        encoder_cache=session_cache / "encoder",
        embedding_cache=session_cache / "gate-embeddings",
        limit=TRAIN_ROWS,
        register=False,
        threads=2,
    )
    return train_gate(config, progress=False, echo=lambda _: None)


@pytest.fixture(scope="session")
def gate_bundle(trained_gate: Any) -> Path:
    return Path(trained_gate.bundle_dir)
