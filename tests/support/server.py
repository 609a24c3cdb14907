"""Start and stop a real `tierroute serve` process on 127.0.0.1 for the serving tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.env import OFFLINE_ENV
from tests.support.ports import free_port

__all__ = ["REPO", "Server", "free_port", "serve_command", "server_env", "start_server"]

REPO = Path(__file__).resolve().parents[2]


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERROUTE_")}
    env.update(OFFLINE_ENV)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def serve_command(model: str | Path, port: int, args: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "serving.cli.serve",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        *args,
    ]


def start_server(
    model: str | Path,
    workdir: Path,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
) -> Server:
    """Run the service in its own process (cwd = workdir) and wait until /readyz answers 200."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            serve_command(model, port, args),
            cwd=workdir,
            env=server_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log()}")
