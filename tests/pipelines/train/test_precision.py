"""Encoder precisions: fp32, dynamic int8 (one text per call) and static int8 (batches)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli.train import register
from pipelines.train.classifier import TrainConfig
from pipelines.train.encoder_export import PRECISIONS, export_encoder
from serving.model.bundle import SELF_CHECK_ATOL, runs_per_item

runner = CliRunner(env={"COLUMNS": "200"})


def _app() -> typer.Typer:
    root = typer.Typer()
    bench = typer.Typer()
    register(root, bench)
    root.add_typer(bench, name="bench")
    return root


def test_only_dynamic_int8_runs_one_text_per_call() -> None:
    def manifest(precision: str) -> dict[str, object]:
        return {"encoder": {"precision": precision}}

    assert runs_per_item(manifest("int8"))
    assert not runs_per_item(manifest("int8-static"))
    assert not runs_per_item(manifest("fp32"))
    assert not runs_per_item({})  # old manifests without a precision are fp32
    assert set(PRECISIONS) <= set(SELF_CHECK_ATOL)


def test_unknown_precision_is_refused_everywhere(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision must be one of"):
        export_encoder(tmp_path, "int4")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())  # nothing exported
    r = runner.invoke(_app(), ["train", "--precision", "fp16", "--no-register", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2, r.output
    assert "int8-static" in r.output
    assert not (tmp_path / "b").exists()


def test_bench_variants_refuses_an_unknown_variant() -> None:
    r = runner.invoke(_app(), ["bench", "variants", "--only", "head_tail 999"])
    assert r.exit_code == 2 and "no variant named" in r.output


def test_default_precision_is_int8_for_minilm_and_fp32_where_only_fp32_exists() -> None:
    assert TrainConfig().precision == "int8" == TrainConfig().encoder_precision
    assert TrainConfig().params()["precision"] == "int8"
    assert TrainConfig(encoder="static").precision == "fp32"  # a float32 lookup table
    assert TrainConfig(encoder_layers=3, encoder_distil=True).precision == "fp32"
    assert TrainConfig(precision="fp32").precision == "fp32"  # an explicit choice stands
    with pytest.raises(ValueError, match="static encoder"):
        TrainConfig(encoder="static", precision="int8")
