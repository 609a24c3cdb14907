"""Pure parts of the registry: URIs, the comparison rule, digests, input coercion (no MLflow store)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pipelines.registry import (
    RegistryError,
    TrainingRecord,
    artifact_root_for,
    bundle_digest,
    compare_metrics,
    default_tracking_uri,
    find_bundle_dir,
    parse_model_uri,
    sqlite_db_path,
    tagged_metrics,
)


def test_default_uri_is_embedded_sqlite_under_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = default_tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert sqlite_db_path(uri) == tmp_path.resolve() / "mlruns" / "mlflow.db"
    assert artifact_root_for(uri) == tmp_path.resolve() / "mlruns" / "artifacts"
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == uri  # root defaults to the cwd at call time


def test_env_tracking_uri_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert default_tracking_uri(tmp_path) == "http://127.0.0.1:5999"
    assert artifact_root_for("http://127.0.0.1:5999") is None


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/tierroute-classifier@champion", ("tierroute-classifier", "champion", None)),
        ("models:/tierroute-classifier/12", ("tierroute-classifier", None, 12)),
        ("models:/m@candidate/", ("m", "candidate", None)),
    ],
)
def test_parse_model_uri(uri: str, expected: tuple[str, str | None, int | None]) -> None:
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    "uri", ["tierroute-classifier", "models:/x", "models:/x/latest", "runs:/abc/model", ""]
)
def test_parse_model_uri_rejects_other_forms(uri: str) -> None:
    with pytest.raises(RegistryError, match="models:/<name>@<alias>"):
        parse_model_uri(uri)


def test_compare_metrics_applies_tolerance_in_each_metrics_direction() -> None:
    champ = {"test_tier_macro_f1": 0.80, "test_tier_ece": 0.05, "test_task_macro_f1": 0.70}
    cand = {"test_tier_macro_f1": 0.795, "test_tier_ece": 0.09, "test_task_macro_f1": 0.60}
    rows = {r.metric: r for r in compare_metrics(champ, cand, list(champ), tolerance=0.01)}
    assert rows["test_tier_macro_f1"].ok  # 0.005 lower, within 0.01
    assert math.isclose(rows["test_tier_macro_f1"].delta or 0, -0.005)
    assert not rows["test_tier_ece"].ok  # ECE went UP by 0.04: worse for a lower-is-better metric
    assert not rows["test_task_macro_f1"].ok
    better = compare_metrics(champ, {**cand, "test_tier_ece": 0.01}, ["test_tier_ece"], 0.0)
    assert better[0].ok


def test_compare_metrics_missing_values() -> None:
    rows = compare_metrics({"a_f1": 0.5}, {"b_f1": 0.5}, ["a_f1", "b_f1", "c_f1"], 0.01)
    by = {r.metric: r for r in rows}
    assert not by["a_f1"].ok and "candidate lacks" in by["a_f1"].note
    assert by["b_f1"].ok and "champion lacks" in by["b_f1"].note
    assert by["c_f1"].ok and by["c_f1"].note == "absent in both"
    first = compare_metrics(None, {"a_f1": 0.1}, ["a_f1"], 0.0)
    assert first[0].ok and first[0].note == "no champion"


def test_tagged_metrics_keeps_headline_test_metrics_only() -> None:
    metrics = {
        "test_tier_macro_f1": 0.8,
        "test_tier_ece": 0.02,
        "test_tier_simple_f1": 0.9,
        "val_tier_macro_f1": 0.7,
        "test_task_accuracy": float("nan"),
    }
    assert tagged_metrics(metrics) == {"test_tier_macro_f1": 0.8, "test_tier_ece": 0.02}


def test_training_record_validates_metrics() -> None:
    rec = TrainingRecord(metrics={"a": 1, "b": 0.5}, artifacts=["x.png"])  # type: ignore[list-item]
    assert rec.metrics == {"a": 1.0, "b": 0.5} and rec.artifacts == [Path("x.png")]
    with pytest.raises(ValueError, match="'bad' is not a number"):
        TrainingRecord(metrics={"bad": "high"})  # type: ignore[dict-item]


def test_bundle_digest_tracks_content_and_names(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    (a / "bundle.json").write_text("{}")
    (a / "model.onnx").write_bytes(b"123")
    d1 = bundle_digest(a)
    assert bundle_digest(a) == d1
    (a / "model.onnx").write_bytes(b"124")
    assert bundle_digest(a) != d1
    (a / "model.onnx").write_bytes(b"123")
    (a / "model.onnx").rename(a / "other.onnx")
    assert bundle_digest(a) != d1


def test_find_bundle_dir(tmp_path: Path) -> None:
    nested = tmp_path / "artifacts" / "bundle"
    nested.mkdir(parents=True)
    (nested / "bundle.json").write_text("{}")
    assert find_bundle_dir(tmp_path) == nested
    assert find_bundle_dir(nested) == nested
    with pytest.raises(RegistryError, match=r"no bundle\.json"):
        find_bundle_dir(tmp_path / "artifacts" / "elsewhere")
    other = tmp_path / "b2"
    other.mkdir()
    (other / "bundle.json").write_text("{}")
    with pytest.raises(RegistryError, match="several bundles"):
        find_bundle_dir(tmp_path)


def test_texts_from_input_accepts_the_documented_shapes() -> None:
    import numpy as np
    import pandas as pd

    from pipelines.registry.pyfunc import texts_from_input

    assert texts_from_input(["a", "b"]) == ["a", "b"]
    assert texts_from_input(pd.DataFrame({"id": [1, 2], "text": ["a", "b"]})) == ["a", "b"]
    assert texts_from_input(pd.DataFrame({"prompt": ["a"]})) == ["a"]
    assert texts_from_input(pd.Series(["a"])) == ["a"]
    assert texts_from_input(np.array(["a", "b"])) == ["a", "b"]
    assert texts_from_input({"text": "a"}) == ["a"]
    assert texts_from_input("a") == ["a"]
    with pytest.raises(ValueError, match="needs a 'text' column"):
        texts_from_input(pd.DataFrame({"x": ["a"], "y": ["b"]}))
    with pytest.raises(ValueError, match=r"rows \[1\] are not"):
        texts_from_input(["a", 3])
