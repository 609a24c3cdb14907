"""Serving a local bundle imports no training stack: checked in a real server process after start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.server import free_port, server_env

FORBIDDEN = (
    "torch",
    "sklearn",
    "sentence_transformers",
    "transformers",
    "pandas",
    "mlflow",
    "scipy",
    "litellm",
)

# Runs the real `serve` command in the main thread; a side thread waits for readiness, classifies,
# records which forbidden top-level packages are loaded, then stops the server with SIGINT.
SCRIPT = r"""
import json, os, signal, sys, threading, time, urllib.request
FORBIDDEN = set(sys.argv[3].split(","))
url = f"http://127.0.0.1:{sys.argv[2]}"

def probe():
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/readyz", timeout=1).read()
            break
        except Exception:
            time.sleep(0.1)
    req = urllib.request.Request(url + "/v1/classify", data=b'{"texts": ["hello", "prove it"]}',
                                 headers={"content-type": "application/json"})
    body = json.loads(urllib.request.urlopen(req, timeout=30).read())
    urllib.request.urlopen(url + "/v1/models", timeout=5).read()
    loaded = sorted({m.split(".")[0] for m in sys.modules} & FORBIDDEN)
    print("RESULT " + json.dumps({"loaded": loaded, "results": len(body["results"])}), flush=True)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=probe, daemon=True).start()
sys.argv = ["serve", "serve", "--model", sys.argv[1], "--port", sys.argv[2], "--log-level", "warning"]
from serving.cli.serve import main
main()
"""


def test_serving_a_local_bundle_imports_no_training_stack(serving_bundle: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(serving_bundle), str(free_port()), ",".join(FORBIDDEN)],
        cwd=tmp_path,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    result = json.loads(lines[0][len("RESULT ") :])
    assert result["results"] == 2
    assert result["loaded"] == [], f"serving imported {result['loaded']}"
