"""Shared fixtures: the real exported encoder, a real small trained bundle and gate bundle, a fresh
MLflow store.

Everything here is real (the MiniLM encoder from site-packages, onnxruntime, sklearn, MLflow's
sqlite store); fixtures are session-scoped so the suite pays for export and training once.
"""

from __future__ import annotations

import os

from tests.support.env import OFFLINE_ENV

for _k, _v in OFFLINE_ENV.items():
    os.environ.setdefault(_k, _v)

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LABELLED = REPO / "data" / "labelled" / "requests.parquet"
SUBSET_PER_CLASS = 25  # rows per (tier, task) cell, capped; ~600 rows in all
RAW = REPO / "data" / "raw"
GATE_LABELS = REPO / "data" / "gate" / "refusal_labels.csv"
GATE_TRAIN_ROWS = 700


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder shared by the whole session (encoder export, embeddings)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def encoder_artifact(session_cache: Path):  # type: ignore[no-untyped-def]
    from pipelines.train.encoder_export import export_encoder

    return export_encoder(session_cache / "encoder", "fp32")


@pytest.fixture(scope="session")
def small_labelled_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stratified ~600-row slice of the shipped labelled data, all three splits kept."""
    import pandas as pd

    df = pd.read_parquet(LABELLED)
    parts = []
    for split, n in (("train", SUBSET_PER_CLASS), ("validation", 8), ("test", 8)):
        sub = df[df["split"] == split]
        parts.append(sub.sample(frac=1.0, random_state=0).groupby(["tier", "task"]).head(n))
    out = tmp_path_factory.mktemp("data") / "small.parquet"
    pd.concat(parts).reset_index(drop=True).to_parquet(out)
    return out


@pytest.fixture(scope="session")
def small_outcomes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 outcome rows per outcome source (seeded), built from the shipped raw files."""
    from pipelines.data.outcomes import build_outcomes

    df = build_outcomes(RAW, None)
    df = df.sample(frac=1.0, random_state=0).groupby("source").head(120)
    out = tmp_path_factory.mktemp("outcomes") / "outcomes.parquet"
    df.reset_index(drop=True).to_parquet(out)
    return out


@pytest.fixture(scope="session")
def trained(  # type: ignore[no-untyped-def]
    small_labelled_file: Path,
    small_outcomes_file: Path,
    session_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
):
    """A real TrainResult (no registry) on the small slice: heads, routing head, metrics, bundle folder."""
    from pipelines.train.classifier import TrainConfig, train

    config = TrainConfig(
        data=small_labelled_file,
        # fp32, not the int8 default: the reference bundle whose embeddings match torch's to 1e-4 and
        # whose batches run whole; int8 bundles: tests/serving/model/test_int8_bundle.py and the CLI loops
        precision="fp32",
        out_dir=tmp_path_factory.mktemp("bundles"),
        encoder_cache=session_cache / "encoder",
        embedding_cache=session_cache / "embeddings",
        register=False,
        outcomes=small_outcomes_file,
        raw=None,
        loso_n_boot=50,
    )
    return train(config, progress=False, echo=lambda _m: None)


@pytest.fixture(scope="session")
def trained_bundle(trained) -> Path:  # type: ignore[no-untyped-def]
    """Path of a real classifier bundle (model.onnx + tokenizer.json + bundle.json)."""
    return Path(trained.bundle_dir)


@pytest.fixture()
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh embedded MLflow store (sqlite + local artifacts) for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.chdir(tmp_path)
    yield uri


@pytest.fixture(scope="session")
def gate_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gate.parquet rebuilt from the shipped raw data into a temp folder (exercises the builder)."""
    # the gate sources ship with the repository: their absence is a failure, not a skip
    assert (RAW / "coconot").is_dir() and (RAW / "alpaca_eval_outputs").is_dir(), (
        f"{RAW} lacks the gate sources"
    )
    from pipelines.gate.data import build_gate_dataset

    out = tmp_path_factory.mktemp("gate-data") / "gate.parquet"
    build_gate_dataset(RAW, out, GATE_LABELS)
    return out


@pytest.fixture(scope="session")
def trained_gate(gate_dataset: Path, session_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real GateTrainResult on a ~700-row hash-stratified slice (no registry)."""
    from pipelines.gate.train import GateTrainConfig, train_gate

    config = GateTrainConfig(
        data=gate_dataset,
        out_dir=tmp_path_factory.mktemp("gate-bundles"),
        encoder_cache=session_cache / "encoder",
        embedding_cache=session_cache / "gate-embeddings",
        limit=GATE_TRAIN_ROWS,
        register=False,
        threads=2,
    )
    return train_gate(config, progress=False, echo=lambda _: None)


@pytest.fixture(scope="session")
def gate_bundle(trained_gate: Any) -> Path:
    return Path(trained_gate.bundle_dir)


# --- static fast path (pipelines.train.static_encoder, serving.model.two_stage) ---------------------


@pytest.fixture(scope="session")
def trained_static(
    small_labelled_file: Path,
    session_cache: Path,
    trained_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
):  # type: ignore[no-untyped-def]
    """A real static-encoder TrainResult (model2vec distilled from the real MiniLM, once per session)
    on the small slice, with a two-stage bundle whose full stage is `trained_bundle`."""
    from pipelines.train.classifier import TrainConfig, train
    from serving.model.textprep import TruncationSpec

    config = TrainConfig(
        data=small_labelled_file,
        spec=TruncationSpec(max_tokens=512),
        encoder="static",
        full_bundle=trained_bundle,
        out_dir=tmp_path_factory.mktemp("static-bundles"),
        encoder_cache=session_cache / "encoder",
        embedding_cache=session_cache / "embeddings",
        register=False,
    )
    return train(config, progress=False, echo=lambda _m: None)


# Fixtures that train a model, export the encoder or start a server: a test using any of them is
# `slow` (so `make test-fast` leaves it out) whether or not its module says so.
SLOW_FIXTURES = frozenset(
    {
        "encoder_artifact",
        "trained",
        "trained_bundle",
        "trained_gate",
        "gate_bundle",
        "gate_dataset",
        "serving_bundle",
        "server",
        "mlflow_server",
        "eval_bundle",
        "scored_pool",
        "trained_static",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
