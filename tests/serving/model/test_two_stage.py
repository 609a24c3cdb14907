"""Two-stage bundles: the fast (static) stage answers confident texts, MiniLM the others; served over
HTTP by an unchanged `tierroute serve`; no torch/transformers/model2vec in the serving process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serving.model.bundle import Bundle, BundleError, read_manifest
from serving.model.two_stage import TwoStageBundle, stage_confidence
from serving.schemas import ClassifyResponse
from tests.support.server import REPO, server_env, start_server

CANDIDATES = [
    "What is the capital of France?",
    "Compute the integral of x^2 from 0 to 3.",
    "Write a Python function that parses a CSV file.",
    "Summarise this article about tea.",
    "hi",
    "ok so about the thing",
    "Is this review positive or negative? The food was fine.",
    "Who discovered penicillin?",
    "Prove that there are infinitely many primes.",
    "Extract every date mentioned in the text.",
]


@pytest.fixture(scope="module")
def fixed_bar(
    trained_static: Any, trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A two-stage bundle whose bar sits between the most and the least confident candidate text."""
    from pipelines.train.two_stage import build_two_stage

    static = Bundle.load(trained_static.bundle_dir)
    conf = stage_confidence(static.predict_arrays(CANDIDATES).probs)
    sure, unsure = CANDIDATES[int(np.argmax(conf))], CANDIDATES[int(np.argmin(conf))]
    assert conf.max() > conf.min()
    bar = float((conf.max() + conf.min()) / 2)
    out, _ = build_two_stage(
        trained_static.bundle_dir,
        trained_bundle,
        tmp_path_factory.mktemp("two-stage") / "fixed",
        CANDIDATES,
        min_confidence=bar,
    )
    return {"dir": out, "sure": sure, "unsure": unsure, "bar": bar}


def test_confident_text_is_answered_by_fast_stage_unsure_by_full(
    fixed_bar: dict[str, Any], trained_static: Any, trained_bundle: Path
) -> None:
    staged = Bundle.load(fixed_bar["dir"])
    assert isinstance(staged, TwoStageBundle)
    staged.self_check()
    texts = [fixed_bar["sure"], fixed_bar["unsure"]]
    preds = staged.predict(texts)
    assert [p.stage for p in preds] == ["fast", "full"]
    fast = Bundle.load(trained_static.bundle_dir).predict(texts)
    full = Bundle.load(trained_bundle).predict(texts)
    for head in ("tier", "task"):
        for label, p in fast[0].probs[head].items():
            assert preds[0].probs[head][label] == pytest.approx(p, abs=1e-6)
        for label, p in full[1].probs[head].items():
            assert preds[1].probs[head][label] == pytest.approx(p, abs=1e-6)
    assert preds[1].tokens == full[1].tokens and preds[1].truncated == full[1].truncated
    assert preds[0].to_result()["stage"] == "fast" and "stage" not in fast[0].to_result()
    # the same texts one at a time: same stages (the bar is per text, not per batch)
    assert [staged.predict([t])[0].stage for t in texts] == ["fast", "full"]


def test_calibrated_bundle_records_its_bar(trained_static: Any) -> None:
    manifest = read_manifest(trained_static.two_stage_dir)
    block = manifest["two_stage"]
    assert block["full"] == "full" and block["calibration"]["split"] == "validation"
    assert block["calibration"]["target_agreement"] == 0.97
    assert 0.0 <= block["min_confidence"] <= 1.01
    if block["calibration"]["share_fast"] > 0:
        assert block["calibration"]["agreement"] >= 0.97
    assert "full/bundle.json" in manifest["files"]
    assert {c.get("stage") for c in manifest["self_check"]["cases"]} <= {"fast", "full"}


def test_edited_full_stage_is_refused(fixed_bar: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fixed_bar["dir"], copy)
    manifest_path = copy / "full" / "bundle.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["thresholds"] = {"min_confidence": 0.9}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"full/bundle\.json"):
        Bundle.load(copy)


def test_two_stage_and_static_bundles_served_over_http(
    fixed_bar: dict[str, Any], trained_static: Any, tmp_path: Path
) -> None:
    server = start_server(fixed_bar["dir"], tmp_path / "two")
    try:
        resp = httpx.post(
            f"{server.url}/v1/classify", json={"texts": [fixed_bar["sure"], fixed_bar["unsure"]]}, timeout=30
        )
        assert resp.status_code == 200, resp.text
        body = ClassifyResponse.model_validate(resp.json())
        assert [r.stage for r in body.results] == ["fast", "full"]
        assert all(abs(sum(r.tier_probs.values()) - 1.0) < 1e-3 for r in body.results)
    finally:
        server.stop()
    server = start_server(trained_static.bundle_dir, tmp_path / "static")
    try:
        resp = httpx.post(
            f"{server.url}/v1/classify", json={"text": "Who discovered penicillin?"}, timeout=30
        )
        assert resp.status_code == 200, resp.text
        result = resp.json()["results"][0]
        assert "stage" not in result and result["tier"] in result["tier_probs"]
    finally:
        server.stop()


def test_serving_a_two_stage_bundle_imports_no_torch(fixed_bar: dict[str, Any]) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from serving.model.holder import ModelHolder\n"
        "from serving.model.source import LocalSource\n"
        f"h = ModelHolder(LocalSource(Path({str(fixed_bar['dir'])!r})))\n"
        "m = h.load_initial()\n"
        f"print([p.stage for p in h.predict([{fixed_bar['sure']!r}, {fixed_bar['unsure']!r}])[1]])\n"
        "heavy = ('torch', 'transformers', 'model2vec', 'sklearn', 'skeletoken')\n"
        "bad = sorted(k for k in heavy if k in sys.modules)\n"
        "print('heavy:', bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=server_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "['fast', 'full']" in out.stdout
    assert "heavy: []" in out.stdout


def test_gating_on_the_tier_head_only(trained_static: Any, trained_bundle: Path, tmp_path: Path) -> None:
    from pipelines.train.two_stage import build_two_stage

    static = Bundle.load(trained_static.bundle_dir)
    tier_conf = static.predict_arrays(CANDIDATES).probs["tier"].max(axis=1)
    bar = float(np.median(tier_conf))
    out, stats = build_two_stage(
        trained_static.bundle_dir,
        trained_bundle,
        tmp_path / "tier-only",
        CANDIDATES,
        min_confidence=bar,
        heads=["tier"],
    )
    assert read_manifest(out)["two_stage"]["heads"] == ["tier"]
    assert stats.share_fast == pytest.approx(float(np.mean(tier_conf >= bar)))
    staged = Bundle.load(out)
    assert [p.stage for p in staged.predict(CANDIDATES)] == [
        "fast" if c >= bar else "full" for c in tier_conf
    ]
