"""Closing the loop end to end: traffic through the real service, the outcome log, one retrain, and the
promotion gate, as a deployment runs it.

The real `tierroute serve` (uvicorn over HTTP) serves a small bundle trained by `tierroute train` on a
sample of the default outcome rows with a `weak_ok` head, and routes `/v1/chat/completions` through
a cascade cheap -> gate -> strong against the fake provider. The cheap model refuses every German
request (the gate's refusal check escalates them) and answers pasted tables wrongly (the gate
accepts; the user sends `bad` feedback); everything else it answers well. A few hundred seeded
requests later, `data from-log` turns the log into rows, `data merge` adds them to the default
sample (the log rows carry only `weak_ok`: each head trains on the rows labelled for it), `train`
retrains, and two routing scores are compared before and after on held-out requests about topics the
traffic never mentioned: 1 - P(weak_ok) of the `weak_ok` label head, and `complexity` as the bundle
serves it (the routing head, 1 - p_weak_ok). For both, the German slice must separate from the rest
after one retrain (AUC) and routing value (APGR) must rise. Then `promote --eval-set` with the log
rows decides whether the candidate ships.

Sizes are chosen so the margin is wide (a language slice is very learnable for the encoder) and the
whole test stays within a few minutes on two busy cores; nothing is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from evals.eval.closed_loop import (
    DEFAULT_TASKS,
    HELD_OUT_TOPICS,
    ROUTER_SCORE,
    SLICE,
    SimRequest,
    cheap_answer,
    default_outcome_rows,
    routing_numbers,
    score_texts,
    simulate_requests,
)
from tests.support.fake_provider import FakeProvider, Step
from tests.support.policies import policy_dict
from tests.support.server import REPO, server_env, start_server

pytestmark = pytest.mark.slow

TIERROUTE = Path(sys.executable).parent / "tierroute"
SHIPPED = REPO / "data" / "labelled" / "requests.parquet"
DEFAULT_ROWS = 300
TRAFFIC = 200
HELD_OUT = 160
MODEL = "loop-classifier"
HEADS = ["--label-columns", "tier,task,weak_ok", "--label-set", "task=" + ",".join(DEFAULT_TASKS)]
HEADS += ["--label-set", "weak_ok=false,true"]


def tierroute(cwd: Path, *args: str, ok: Sequence[int] = (0,)) -> subprocess.CompletedProcess[str]:
    env = server_env()
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)  # the project's default store, as a user has it
    done = subprocess.run(
        [str(TIERROUTE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode in ok, (
        f"tierroute {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done


def _policy(provider: FakeProvider, bundle: Path, ledger: Path) -> dict[str, Any]:
    """Every request: the served classifier, then the cascade cheap -> gate -> sonnet."""
    d = policy_dict(provider, None, ledger)
    d["classifier"] = {
        "bundle": str(bundle),  # inside the service the served model classifies (in process)
        "min_confidence": 0.0,
        "timeout_ms": 5000,
        "inprocess_timeout_ms": 5000,
        "tier_models": {"simple": "loop", "complex": "loop", "reasoning": "loop"},
    }
    d["rules"] = [{"id": "ask-classifier", "route": "classifier"}]
    d["budget"]["daily_usd"] = 1000.0
    d["cascades"] = {
        "loop": {
            "stage1": "cheap",
            "stage2": "sonnet",
            "gate": {"min_chars": 20},
            "alarm": {"window": 1000, "min_samples": 1000, "threshold": 1.0},  # never skip stage 1
        }
    }
    return d


def _bundles(project: Path) -> list[Path]:
    return sorted(
        (p.parent for p in (project / "models" / "bundles").glob("*/bundle.json")), key=os.path.getmtime
    )


def test_one_retrain_from_the_log_learns_the_slice_the_cheap_model_fails(
    tmp_path: Path, encoder_artifact: Any
) -> None:
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    os.symlink(Path(encoder_artifact.path).parent, project / "models" / "encoder", target_is_directory=True)
    default = default_outcome_rows(SHIPPED, DEFAULT_ROWS, seed=0)
    default.to_parquet(project / "default.parquet", index=False)

    # 1. the model a deployment starts from: default data, a weak_ok head; champion
    tierroute(project, "train", "--data", "default.parquet", *HEADS, "--model-name", MODEL, "--no-progress")
    tierroute(project, "promote", "--model-name", MODEL)
    (before,) = _bundles(project)

    # 2. traffic through the real service, outcomes and texts logged
    traffic = simulate_requests(TRAFFIC, seed=0)
    by_text = {r.text: r for r in traffic}

    def cheap(body: dict[str, Any]) -> Step:
        kind, content = cheap_answer(by_text[str(body["messages"][-1]["content"])].slice)
        return Step(kind=kind, content=content)

    log_path = project / "traffic.jsonl"
    with FakeProvider() as provider:
        provider.set_responder("openai", "cheap-model", cheap)
        provider.set_default(
            "anthropic", "claude-sonnet", Step(content="A careful, complete answer from sonnet.")
        )
        policy = project / "policy.yaml"
        policy.write_text(
            yaml.safe_dump(_policy(provider, before, project / "ledger.sqlite")), encoding="utf-8"
        )
        server = start_server(
            before,
            project / "srv",
            args=["--policy", str(policy), "--prediction-log", str(log_path)],
            env={"TIERROUTE_PREDICTION_LOG_TEXTS": "true"},
        )
        try:
            with httpx.Client(base_url=server.url, timeout=120) as http:

                def send(req: SimRequest) -> tuple[SimRequest, httpx.Response]:
                    body = {"model": "auto", "messages": [{"role": "user", "content": req.text}]}
                    return req, http.post("/v1/chat/completions", json=body)

                with ThreadPoolExecutor(max_workers=4) as pool:
                    answered = list(pool.map(send, traffic))
                outcome: dict[str, str] = {}
                for req, resp in answered:
                    assert resp.status_code == 200, resp.text
                    outcome[req.slice] = outcome.get(req.slice, "") + resp.headers["x-tierroute-cascade"][-1]
                    accepted = resp.headers["x-tierroute-cascade"] == "loop:accepted"
                    assert accepted == (req.slice != "de"), (
                        req,
                        resp.headers,
                    )  # the gate caught the refusals
                    if req.slice == "table":  # a plausible answer the gate let through: the user says no
                        fb = http.post(
                            "/v1/feedback",
                            json={"request_id": resp.headers["x-tierroute-request-id"], "verdict": "bad"},
                        )
                        assert fb.status_code == 202, fb.text
        finally:
            server.stop()
    n_de = sum(r.slice == "de" for r in traffic)
    n_table = sum(r.slice == "table" for r in traffic)
    assert n_de >= 60 and n_table >= 5  # the seeded mix the margins below rely on

    # 3. the log -> labelled rows: weak_ok only, tier/task left empty (the default)
    done = tierroute(project, "data", "from-log", "traffic.jsonl", "--out", "traffic.parquet")
    assert "rows written" in done.stdout
    rows = pd.read_parquet(project / "traffic.parquet")
    assert len(rows) == TRAFFIC
    assert rows["tier"].isna().all() and rows["task"].isna().all()
    weak_ok = dict(zip(rows["text"], rows["weak_ok"], strict=True))
    assert all(weak_ok[r.text] == r.weak_ok for r in traffic)  # gate for German, feedback for tables
    assert (rows["label_kind"] == "traffic_feedback").sum() == n_table
    records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    assert sum(r["kind"] == "tierroute.feedback" for r in records) == n_table

    # 4. one retrain on default + traffic rows: tier/task heads fit on the default rows (the only ones
    # labelled for them), the weak_ok head and the routing head on both, traffic as its own source
    tierroute(project, "data", "merge", "default.parquet", "traffic.parquet", "--out", "merged.parquet")
    done = tierroute(
        project, "train", "--data", "merged.parquet", *HEADS, "--model-name", MODEL, "--no-progress"
    )
    n_default = len(default)
    assert f"head tier: trains on the {n_default} rows labelled for it" in done.stdout, done.stdout
    assert "traffic" in done.stdout.split("routing head:", 1)[1][:400], done.stdout  # its own source
    after = _bundles(project)[-1]
    assert after != before

    # 5. routing value on held-out requests (topics the traffic never mentioned), before vs after
    held = [
        r
        for r in simulate_requests(HELD_OUT, seed=1, topics=HELD_OUT_TOPICS, distinct=True)
        if r.slice != "table"
    ]
    texts = [r.text for r in held]
    in_slice = np.array([r.slice == SLICE for r in held])
    ok = np.array([r.weak_ok for r in held])
    assert 30 <= in_slice.sum() <= len(held) - 30
    # the weak_ok label head the loop trains, and `complexity` as served (the routing head: 1 - p_weak_ok)
    oracle = routing_numbers((~ok).astype(np.float64), in_slice, ok)
    for router in (ROUTER_SCORE, "complexity"):
        was = routing_numbers(score_texts(before, texts, router), in_slice, ok)
        now = routing_numbers(score_texts(after, texts, router), in_slice, ok)
        print(f"\nheld-out German slice, {router}: before {was}, after {now}, oracle {oracle}")
        assert now["auc"] >= 0.85, (router, was, now)
        # learned from the log: the slice's score moves away from the rest's ...
        assert now["slice_mean"] - now["rest_mean"] >= was["slice_mean"] - was["rest_mean"] + 0.2, (was, now)
        # ... and ranking and routing value rise, up to the oracle's: the default routing head (pairwise
        # item difficulty + length prior) already ranks German requests high before any traffic (AUC 0.96,
        # APGR 0.75 of the oracle's 0.77), so it has nothing left to gain there but calibration
        assert now["auc"] >= min(was["auc"] + 0.2, 0.99), (router, was, now)
        assert now["apgr"] >= min(was["apgr"] + 0.1, oracle["apgr"] - 0.01), (router, was, now, oracle)

    # 6. the promotion gate decides, with the log rows as the eval set
    done = tierroute(project, "promote", "--model-name", MODEL, "--eval-set", "traffic.parquet", ok=(0, 1))
    out = done.stdout + done.stderr
    print(out[-3000:])
    assert "weak_ok" in out and "traffic.parquet" in out, out
    assert "check raised" not in out, out  # every check ran on the log rows (boolean weak_ok labels included)
    assert "no longer reads" not in out, out  # the candidate's own test rows read, tier/task empty on some
    from pipelines.registry import list_versions

    store = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    champion = [v.version for v in list_versions(MODEL, tracking_uri=store) if "champion" in v.aliases]
    assert champion == ([2] if done.returncode == 0 else [1]), out
