"""Registry timings (a script, not a test):
`python -m tests.pipelines.registry.bench_registry [--model-onnx PATH]`.

Prints: log_and_register on a fresh embedded sqlite store (schema creation included) and on a warm
one (p50/max of 5), promote, download_bundle, and `mlflow server --workers 1` start-up to a healthy
/health (3 starts). `--model-onnx` swaps a full-size graph file (e.g. the exported encoder, ~90 MB)
into the tiny test bundle so artifact copying is realistic; only file hashes matter for logging.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

for _k, _v in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "ORT_DISABLE_TELEMETRY": "1",
}.items():
    os.environ.setdefault(_k, _v)


def bench_registry(model_onnx: Path | None, root: Path) -> None:
    import pandas as pd

    from pipelines.registry import TrainingRecord, download_bundle, log_and_register, promote
    from tests.pipelines.registry.conftest import build_tiny_bundle

    bundle = build_tiny_bundle(root / "bundle")
    if model_onnx is not None:
        shutil.copyfile(model_onnx, bundle / "model.onnx")
        manifest = json.loads((bundle / "bundle.json").read_text())
        manifest["files"]["model.onnx"] = hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()
        (bundle / "bundle.json").write_text(json.dumps(manifest))
    size_mb = sum(p.stat().st_size for p in bundle.iterdir()) / 1e6
    df = pd.DataFrame({"text": [f"request number {i}" for i in range(8000)], "tier": ["simple"] * 8000})
    record = TrainingRecord(
        experiment="bench",
        params={"max_tokens": 128},
        metrics={"test_tier_macro_f1": 0.8, "test_task_macro_f1": 0.7},
        dataset_df=df,
        dataset_name="bench.parquet",
        dataset_digest="bench",
    )
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    times = []
    for _ in range(6):
        t = time.perf_counter()
        log_and_register(record, bundle, tracking_uri=uri)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    promote(tracking_uri=uri)
    t_promote = time.perf_counter() - t
    t = time.perf_counter()
    download_bundle("models:/tierroute-classifier@champion", root / "exported", tracking_uri=uri)
    t_export = time.perf_counter() - t
    warm = times[1:]
    print(f"bundle {size_mb:.1f} MB, dataset 8000 rows (mlflow.data)")
    print(f"log_and_register, fresh sqlite store (creates the schema): {times[0]:.2f} s")
    print(
        f"log_and_register, warm store: p50 {statistics.median(warm):.2f} s, "
        f"max {max(warm):.2f} s (n={len(warm)})"
    )
    print(f"promote: {t_promote:.2f} s; download_bundle (export): {t_export:.2f} s")


def bench_server(root: Path, starts: int = 3) -> None:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    for i in range(starts):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        d = root / f"server{i}"
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{d / 's.db'}"]
        cmd += ["--serve-artifacts", "--artifacts-destination", str(d / "a"), "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--workers", "1"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.perf_counter() - t0 > 120:
                        raise RuntimeError("mlflow server did not come up") from None
                    time.sleep(0.1)
            elapsed = time.perf_counter() - t0
            group = subprocess.run(["ps", "-o", "pid=", "-g", str(proc.pid)], capture_output=True, text=True)
            print(
                f"mlflow server start {i + 1}: {elapsed:.1f} s to healthy, "
                f"{len(group.stdout.split())} processes"
            )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-onnx", type=Path, default=None, help="full-size model.onnx to log")
    parser.add_argument("--no-server", action="store_true", help="skip the mlflow server start-up timing")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        bench_registry(args.model_onnx, Path(tmp))
        if not args.no_server:
            bench_server(Path(tmp))


if __name__ == "__main__":
    main()
