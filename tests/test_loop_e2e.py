"""The train -> promote -> serve -> reload -> route loop, end to end, as a user runs it.

Everything goes through the real `tierroute` entry point of this venv, in subprocesses, in a fresh
project directory, with the user's defaults: no MLFLOW_TRACKING_URI (the default store
./mlruns/mlflow.db of the project), real uvicorn servers over HTTP, real ONNX Runtime. The only
stand-ins are the LLM providers (tests/support/fake_provider.py), configured the way a user would:
`api_base` in the policy file. The one shortcut is the encoder export, a content-keyed cache shared
with the rest of the session (a user pays it once per machine too).

Defects this covers (issue #12): serving resolving a different store from the CLI (2: champion served
by alias, promote + /admin/reload serving the new version, `models list` from elsewhere, the gate
served from the registry), promotion across different training data (1), rollback, and the router's
series reaching /metrics (3).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.fake_provider import FakeProvider
from tests.support.policies import policy_dict
from tests.support.ports import free_port
from tests.support.server import REPO, server_env

pytestmark = pytest.mark.slow

TIERROUTE = Path(sys.executable).parent / "tierroute"
SHIPPED = REPO / "data" / "labelled" / "requests.parquet"
GATE_DATA = REPO / "data" / "gate" / "gate.parquet"
CMD_TIMEOUT = 600


def _user_env() -> dict[str, str]:
    """The environment of a user's shell: offline settings, and no MLflow store chosen for them."""
    env = server_env()
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)
    return env


def tierroute(cwd: Path, *args: str, ok: Sequence[int] = (0,)) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(TIERROUTE), *args],
        cwd=cwd,
        env=_user_env(),
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
    )
    assert done.returncode in ok, (
        f"tierroute {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done


class Served:
    """`tierroute serve ...` in its own process, cwd = the project; stopped with SIGTERM."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"serve-{self.port}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(TIERROUTE), "serve", "--port", str(self.port), *args],
                cwd=cwd,
                env=_user_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"serve not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture()
def project(tmp_path: Path, encoder_artifact: Any) -> Iterator[Path]:
    """A fresh project directory: a user's two labelled files and the (shared) encoder cache."""
    import pandas as pd

    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    encoder_dir = Path(encoder_artifact.path).parent
    os.symlink(encoder_dir, root / "models" / "encoder", target_is_directory=True)
    df = pd.read_parquet(SHIPPED, columns=["text", "tier", "task", "split"])
    first, second = [], []
    for split, n1, n2 in (("train", 12, 24), ("validation", 8, 8), ("test", 8, 8)):
        part = df[df["split"] == split].sample(frac=1.0, random_state=1).groupby(["tier", "task"])
        first.append(part.head(n1))
        second.append(part.head(n2))  # a superset: more training rows, the same test rows and more
    pd.concat(first).to_csv(root / "week1.csv", index=False)
    pd.concat(second).to_csv(root / "week2.csv", index=False)
    yield root


def _classify(server: Served) -> dict[str, Any]:
    resp = server.post("/v1/classify", {"text": "Prove that the square root of two is irrational."})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _chat(server: Served) -> httpx.Response:
    """A chat completion through the router (`model: auto` = let the policy decide)."""
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "Explain how a B-tree stays balanced."}],
    }
    return server.post("/v1/chat/completions", body)


def test_train_promote_serve_reload_route_loop(project: Path, tmp_path: Path) -> None:
    # Over 60 lines: one user session, step by step; each step needs the state the previous left.
    # 1. train a first version on the user's file and promote it (first champion)
    tierroute(project, "train", "--data", "week1.csv", "--no-progress")
    first = tierroute(project, "promote")
    assert "first champion" in first.stdout
    assert (project / "mlruns" / "mlflow.db").is_file()  # the default store, in the project

    # `models list` from another directory neither finds nor silently creates a store there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = tierroute(elsewhere, "models", "list", ok=(0, 2))
    assert not (elsewhere / "mlruns").exists() and not (elsewhere / "mlflow.db").exists()
    assert str(elsewhere / "mlruns") in " ".join((listed.stdout + listed.stderr).split())
    listed = tierroute(project, "models", "list")
    assert "champion" in listed.stdout and "week1.csv" in listed.stdout

    # 2. a gate, trained and registered (alias candidate) in the same default store
    tierroute(
        project,
        "gate",
        "train",
        "--data",
        str(GATE_DATA),
        "--limit",
        "400",
        "--precision",
        "fp32",
        "--no-progress",
    )

    # 3. serve the champion by alias with the default store; classify
    classifier = Served(project, "--model", "models:/tierroute-classifier@champion")
    try:
        served = _classify(classifier)
        assert served["model"]["version"] == "1", served

        # 4. a second version on more data; its test set differs, so promote compares on both sets
        tierroute(project, "train", "--data", "week2.csv", "--no-progress")
        promoted = tierroute(project, "promote", ok=(0, 1))
        out = promoted.stdout + promoted.stderr
        assert "different data" in out, out
        assert "champion rows: tier_macro_f1" in out and "candidate rows: tier_macro_f1" in out, out
        if promoted.returncode == 1:  # a genuine small drop on one set: the user decides
            tierroute(project, "promote", "--force")

        # 5. /admin/reload picks up the new champion from the same default store
        reload = classifier.post("/admin/reload")
        assert reload.status_code == 200, reload.text
        assert reload.json()["status"] == "loaded" and reload.json()["model"]["version"] == "2"
        assert _classify(classifier)["model"]["version"] == "2"

        # ... and rollback moves it back, recorded on the version
        back = tierroute(project, "rollback")
        assert "rolled champion back to v1 from v2" in back.stdout
        reload = classifier.post("/admin/reload")
        assert reload.status_code == 200 and reload.json()["model"]["version"] == "1", reload.text
        assert tierroute(project, "rollback", "--to", "2").returncode == 0

        # 6. the router: `serve --policy` (its classifier is the served champion, in process) with the
        #    gate from the registry; and `tierroute route` with the policy's classifier URL, up then down
        with FakeProvider() as fp:
            policy = policy_dict(fp, classifier.url, project / "spend.jsonl")
            policy["classifier"]["timeout_ms"] = 5000  # a loaded 2-core box; a user tunes this too
            policy["classifier"]["inprocess_timeout_ms"] = 5000  # the served model, in process
            policy["classifier"]["min_confidence"] = 0.0  # a tiny model: route on whatever it says
            (project / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
            router = Served(
                project,
                "--model",
                "models:/tierroute-classifier@champion",
                "--policy",
                "policy.yaml",
                "--gate-model",
                "models:/tierroute-gate@candidate",
            )
            try:
                chat = _chat(router)
                assert chat.status_code == 200, chat.text
                assert chat.headers["x-tierroute-decided-by"] == "classifier", dict(chat.headers)
                assert chat.json()["choices"][0]["message"]["content"]

                gate = router.post(
                    "/v1/gate",
                    {"items": [{"prompt": "Who wrote Hamlet?", "response": "William Shakespeare wrote it."}]},
                )
                assert gate.status_code == 200, gate.text
                verdict = gate.json()
                assert verdict["model"]["name"] == "tierroute-gate" and verdict["model"]["version"] == "1"
                assert verdict["results"][0]["decided_by"] == "model", verdict
                assert verdict["results"][0]["p_acceptable"] is not None

                route = ("route", "--policy", "policy.yaml", "--text", "Explain how a B-tree stays balanced.")
                up = json.loads(tierroute(project, *route, "--json").stdout)
                assert up["decided_by"] == "classifier", up
                classifier.stop()  # the classifier service goes down: rules decide, nothing fails
                down = json.loads(tierroute(project, *route, "--json").stdout)
                assert down["decided_by"] != "classifier", down
                consulted = [s for s in down["trace"] if "classifier" in json.dumps(s)]
                assert consulted and "rules decide" in json.dumps(consulted), down["trace"]

                # the router's own series are on the service's /metrics (defect 3); kept last
                metrics = httpx.get(router.url + "/metrics", timeout=30).text
                assert "tierroute_router_decisions_total" in metrics, "router series missing from /metrics"
            finally:
                router.stop()
    finally:
        classifier.stop()
