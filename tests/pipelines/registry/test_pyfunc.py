"""The registered version loads with `mlflow.pyfunc.load_model` and predicts like the bundle itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.registry import log_and_register

NAME = "tierroute-classifier"
REPO = Path(__file__).resolve().parents[3]
TEXTS = [
    "What is the capital of France?",
    "Prove that there are infinitely many primes, then generalise the argument to primes of the form 4k+3.",
    "Summarise the following meeting notes in three bullet points: " + "we discussed the roadmap. " * 60,
]


def _expected(bundle: Path) -> list[dict[str, Any]]:
    from serving.model.bundle import Bundle

    return [p.to_result() for p in Bundle.load(bundle).predict(TEXTS)]


def _assert_same(rows: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got["tier"] == want["tier"] and got["task"] == want["task"]
        assert got["tokens"] == want["tokens"] and got["truncated"] == want["truncated"]
        for head in ("tier_probs", "task_probs"):
            assert got[head].keys() == want[head].keys()
            for label, p in want[head].items():
                assert got[head][label] == pytest.approx(p, abs=1e-6)
        assert got["complexity"] == pytest.approx(want["complexity"], abs=1e-6)


def test_pyfunc_predicts_dataframe_and_list_in_process(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    import mlflow
    import pandas as pd

    log_and_register(make_record(), tiny_bundle)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@candidate")
    expected = _expected(tiny_bundle)

    frame = model.predict(pd.DataFrame({"id": [10, 11, 12], "text": TEXTS}).set_index("id"))
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == [10, 11, 12]
    assert {
        "tier",
        "tier_probs",
        "task",
        "task_probs",
        "complexity",
        "confidence",
        "tokens",
        "truncated",
    } <= set(frame.columns)
    _assert_same(frame.to_dict("records"), expected)
    _assert_same(model.predict(TEXTS).to_dict("records"), expected)
    empty = model.predict([])
    assert len(empty) == 0 and "tier" in empty.columns
    with pytest.raises(Exception, match="every text must be a string"):
        model.predict(pd.DataFrame({"text": ["ok", None]}))


@pytest.mark.slow
def test_pyfunc_of_a_trained_bundle_loads_in_a_fresh_process(
    tracking_uri: str, trained_bundle: Path, make_record: Callable[..., Any], tmp_path: Path
) -> None:
    """The lead's real trained bundle, registered, then loaded by a brand-new interpreter by alias."""
    log_and_register(make_record(), trained_bundle)
    script = (
        "import json, sys, mlflow\n"
        f"m = mlflow.pyfunc.load_model('models:/{NAME}@candidate')\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps(m.predict(texts).to_dict('records')))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    # the class is pickled by reference: the loading interpreter needs the tierroute package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    _assert_same(rows, _expected(trained_bundle))
