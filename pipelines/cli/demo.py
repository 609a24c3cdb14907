"""`tierroute demo` (what `make demo` runs): the main job end to end on the shipped data.

Job: build the labelled data from `data/raw`, train + evaluate + export + register, promote the
first good version to `champion`, export it back out of the registry as a plain bundle, start
the real HTTP service on 127.0.0.1 from the registry alias, classify a few example requests over
HTTP, and print a summary. Each step prints what it did and how long it took; a failing step
stops the demo with its message and a non-zero exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()

EXAMPLES = (
    "What's the capital of Australia?",
    "Summarise this paragraph in one sentence: The city council met on Tuesday to discuss the new park...",
    "Write a Python function that merges two sorted linked lists and analyse its complexity.",
    "Let n be a positive integer. Prove that n^5 - n is divisible by 30 for every n, then generalise.",
    "Is this review positive or negative? 'The battery died after two days.'",
    "hey, how's it going?",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with code {proc.returncode} before it was ready")
        try:
            r = httpx.get(f"{url}/readyz", timeout=1.0)
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the service at {url} was not ready after {timeout:.0f}s")


def classify_over_http(
    model_uri: str, texts: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Start `tierroute serve` on a free port, classify `texts`, stop it. Returns (readyz, response, ms)."""
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "evals.cli",
        "serve",
        "--model",
        model_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, start_new_session=True, env=dict(os.environ))
    try:
        ready = _wait_ready(url, proc)
        httpx.post(f"{url}/v1/classify", json={"text": "warm-up"}, timeout=10).raise_for_status()
        t = time.perf_counter()
        r = httpx.post(f"{url}/v1/classify", json={"texts": list(texts)}, timeout=10)
        ms = (time.perf_counter() - t) * 1000
        r.raise_for_status()
        return ready, r.json(), ms
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass  # the service already exited (its error is on stderr above)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def demo_cmd(
    serve: Annotated[
        bool, typer.Option(help="Start the HTTP service and classify examples over HTTP.")
    ] = True,
    rebuild_data: Annotated[bool, typer.Option(help="Rebuild data/labelled from data/raw first.")] = True,
) -> None:
    """Run the main job end to end on the shipped data: build data, train, evaluate, export, register,
    promote to champion, serve from the registry and classify examples over HTTP, then print a summary."""
    # Over 60 lines: the demo's steps in the order it prints them, each a named call.
    from pipelines.data.build import build_dataset
    from pipelines.registry import default_tracking_uri, download_bundle, promote
    from pipelines.train.classifier import TrainConfig, train

    os.environ.setdefault("MLFLOW_TRACKING_URI", default_tracking_uri(Path.cwd()))
    started = time.perf_counter()
    steps: list[tuple[str, float, str]] = []

    def step(name: str, t0: float, note: str) -> None:
        steps.append((name, time.perf_counter() - t0, note))
        console.print(f"[green]✓[/green] {name} ({time.perf_counter() - t0:.1f}s): {note}")

    t0 = time.perf_counter()
    if rebuild_data or not Path("data/labelled/requests.parquet").is_file():
        report = build_dataset()
        from pipelines.data.outcomes import build_outcomes

        outcomes = build_outcomes(Path("data/raw"), Path("data/labelled"))
        step(
            "data build",
            t0,
            f"{getattr(report, 'rows', '?')} labelled rows, {len(outcomes):,} outcome rows -> data/labelled/",
        )
    config = TrainConfig()
    t0 = time.perf_counter()
    result = train(config, echo=console.print)
    step("train + evaluate + export + register", t0, f"{config.model_name} v{result.version} @candidate")

    t0 = time.perf_counter()
    promo = promote(config.model_name)
    if not promo.promoted:
        console.print(f"[yellow]candidate not promoted:[/yellow] {promo.reason}")
    step("promote", t0, f"champion = v{promo.champion_version if promo.promoted else '(unchanged)'}")

    t0 = time.perf_counter()
    exported = download_bundle(f"models:/{config.model_name}@champion", Path("models/bundles/champion"))
    step("export from registry", t0, str(exported))

    t0 = time.perf_counter()
    from pipelines.gate.demo import train_and_promote_gate

    gate = train_and_promote_gate(console.print, rebuild_data=rebuild_data)
    step("gate: data + train + register + promote", t0, f"tierroute-gate @champion = v{gate['champion']}")

    if serve:
        t0 = time.perf_counter()
        ready, response, ms = classify_over_http(f"models:/{config.model_name}@champion", EXAMPLES)
        step("serve + classify over HTTP", t0, f"{len(EXAMPLES)} texts in one request: {ms:.1f} ms")
        table = Table(title=f"classified over HTTP by {response['model']}")
        for col in ("text", "tier", "conf", "complexity", "p_weak_ok", "task", "tokens"):
            table.add_column(col)
        for text, res in zip(EXAMPLES, response["results"], strict=True):
            table.add_row(
                text[:60] + ("…" if len(text) > 60 else ""),
                res["tier"],
                f"{res['confidence']:.2f}",
                f"{res['complexity']:.2f}",
                "-" if res.get("p_weak_ok") is None else f"{res['p_weak_ok']:.2f}",
                str(res.get("task")),
                str(res["tokens"]),
            )
        console.print(table)
        del ready

    m = result.metrics
    summary = Table(title="summary")
    summary.add_column("what")
    summary.add_column("value")
    for head in config.label_columns:
        summary.add_row(
            f"test {head}",
            f"acc {m.get(f'test_{head}_accuracy', float('nan')):.3f}  "
            f"macro-F1 {m.get(f'test_{head}_macro_f1', float('nan')):.3f}"
            f"  ECE {m.get(f'test_{head}_ece', float('nan')):.3f}",
        )
    summary.add_row("ONNX parity (max |diff|)", f"{m['parity_max_abs_diff']:.1e}")
    if "loso_apgr_mean" in m:
        summary.add_row(
            "routing head, held-out-source APGR",
            f"mean {m['loso_apgr_mean']:.3f} (prompt length "
            f"{m.get('loso_length_apgr_mean', float('nan')):.3f}, random 0.500), "
            f"worst source {m['loso_apgr_min']:.3f}",
        )
    eco = gate["economics"]
    summary.add_row(
        "gate (test split)",
        f"false escalation {gate['false_escalation']:.3f} (strong models"
        f" {gate['false_escalation_by_source'].get('alpaca_eval:strong', float('nan')):.3f}); caught: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(gate["catch_rate_by_reason"].items())),
    )
    summary.add_row(
        "gate operating point",
        f"threshold {gate['threshold']:.2f}: ${eco['cost_per_1000']:.2f} and {eco['bad_per_1000']:.0f} bad"
        " answers per 1,000 requests; refusal accuracy (hand labels) "
        + ", ".join(f"{k} {v:.3f}" for k, v in gate["refusal_accuracy"].items()),
    )
    summary.add_row("bundle", str(result.bundle_dir))
    summary.add_row(
        "registry", f"{os.environ['MLFLOW_TRACKING_URI']} -> {config.model_name} v{result.version}"
    )
    summary.add_row("total time", f"{time.perf_counter() - started:.0f}s")
    console.print(summary)
