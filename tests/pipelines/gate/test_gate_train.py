"""The learned gate: threshold calibration, baselines, ONNX parity, the bundle and its loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.gate.train import choose_threshold, decision_metrics, per_reason_reject_rate, score_metrics
from serving.gate.model import GateItem, GateModel, decide_without_model
from serving.model.bundle import BundleError

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------------- pure code


def test_choose_threshold_meets_the_false_accept_target() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 200 + [1] * 100)
    p = np.concatenate([rng.uniform(0, 0.8, 200), rng.uniform(0.3, 1.0, 100)])
    for target in (0.01, 0.05, 0.1, 0.3):
        t = choose_threshold(p, y, target)
        far = np.mean(p[y == 0] >= t)
        assert far <= target
        # the smallest such threshold: lowering it to the next negative score breaks the target
        neg_above = np.sort(p[y == 0][p[y == 0] < t])
        if len(neg_above):
            assert np.mean(p[y == 0] >= neg_above[-1]) > target


def test_decision_metrics_counts() -> None:
    y = np.array([1, 1, 0, 0, 0])
    accept = np.array([True, False, True, False, False])
    m = decision_metrics(y, accept)
    assert m["false_accept_rate"] == pytest.approx(1 / 3)
    assert m["accept_recall"] == pytest.approx(0.5)
    assert m["reject_recall"] == pytest.approx(2 / 3)
    assert m["reject_precision"] == pytest.approx(2 / 3)
    assert score_metrics(y, np.array([0.9, 0.8, 0.1, 0.2, 0.3]))["roc_auc"] == 1.0
    rr = per_reason_reject_rate(np.array(["ok", "ok", "refusal", "refusal", "garbage"]), accept)
    assert rr == {"garbage": 1.0, "ok": 0.5, "refusal": 0.5}


# ---------------------------------------------------------------------------------- trained gate


def test_learned_gate_beats_the_refusal_baseline_on_test(trained_gate: Any) -> None:
    test = trained_gate.report["test"]
    gate, base, checks = test["gate"], test["baseline_refusal"], test["baseline_checks"]
    assert gate["roc_auc"] > base["roc_auc"] + 0.05
    assert gate["roc_auc"] > checks["roc_auc"]
    assert gate["balanced_accuracy"] > base["balanced_accuracy"]
    assert gate["reject_recall"] > base["reject_recall"]


def test_threshold_was_calibrated_on_validation(trained_gate: Any) -> None:
    val = trained_gate.report["validation"]["gate"]
    assert val["false_accept_rate"] <= trained_gate.report["target_false_accept"] + 1e-9
    assert 0.0 < trained_gate.threshold < 1.0


def test_onnx_parity_with_training_heads(trained_gate: Any, gate_bundle: Path) -> None:
    from pipelines.gate.train import build_features
    from pipelines.train.embed import Embedder
    from pipelines.train.encoder_export import EncoderArtifact

    assert trained_gate.metrics["parity_max_abs_diff"] < 1e-4
    # independent re-check on new texts, through the training feature path
    gate = GateModel.load(gate_bundle)
    pairs = [
        ("Who wrote Hamlet?", "Hamlet was written by William Shakespeare around 1600."),
        ("Write a haiku about rain.", "I'm sorry, but I can't help with that request."),
        ("Explain TCP handshakes.", "The three-way handshake starts with a SYN packet from the client, then"),
    ]
    prompts, responses = [p for p, _ in pairs], [r for _, r in pairs]
    scores = gate.score(prompts, responses)
    enc_meta = gate.manifest["encoder"]
    assert enc_meta["precision"] == "int8"
    model_path = Path(trained_gate.report["encoder_path"])
    encoder = EncoderArtifact(model_path, enc_meta["sha256"], gate_bundle / "tokenizer.json", "int8")
    ep = Embedder(encoder, gate.prompt_spec, cache_dir=None, batch_size=1)
    er = Embedder(encoder, gate.response_spec, cache_dir=None, batch_size=1)
    X = build_features(ep, er, prompts, responses, progress=False)
    expected = trained_gate.heads[0].predict_proba(X)[:, 1]
    assert np.abs(scores.p_acceptable - expected).max() < 1e-4


def test_bundle_manifest_and_self_check(gate_bundle: Path) -> None:
    manifest = json.loads((gate_bundle / "bundle.json").read_text())
    assert manifest["kind"] == "gate"
    assert manifest["thresholds"]["target_false_accept_rate"] == 0.10
    assert {h["name"] for h in manifest["heads"]} >= {"acceptable"}
    assert set(manifest["text"]) == {"prompt", "response"}
    gate = GateModel.load(gate_bundle)
    gate.self_check()
    assert gate.threshold == manifest["thresholds"]["p_acceptable"]


def test_checks_short_circuit_the_model(gate_bundle: Path) -> None:
    gate = GateModel.load(gate_bundle)
    items = [
        GateItem("Summarise the article.", ""),
        GateItem("Who wrote Hamlet?", "William Shakespeare wrote Hamlet around 1600."),
        GateItem("Return JSON.", '{"a": 1', expect_json=True),
        GateItem("Write a poem about the sea.", "As an AI language model, I cannot write poems."),
    ]
    out = gate.decide(items)
    assert [d.decided_by for d in out] == ["checks", "model", "checks", "checks"]
    assert out[0].reasons == ["empty"] and out[0].p_acceptable is None
    assert "invalid_json" in out[2].reasons
    assert "refusal" in out[3].reasons
    assert out[1].p_acceptable is not None and 0.0 <= out[1].p_acceptable <= 1.0
    # threshold override: 0 accepts whatever the checks let through, 1 rejects it with a learned reason
    assert gate.decide(items[1:2], threshold=0.0)[0].acceptable
    rejected = gate.decide(items[1:2], threshold=1.0)[0]
    assert not rejected.acceptable and rejected.reasons and rejected.decided_by == "model"


def test_per_item_scores_do_not_depend_on_batch_mates(gate_bundle: Path) -> None:
    gate = GateModel.load(gate_bundle)
    prompts = ["Who wrote Hamlet?", "Give me three tips for sleeping better, with a short explanation each."]
    responses = ["Shakespeare.", "1. Keep a schedule. 2. Avoid screens late. 3. Keep the room cool and dark."]
    together = gate.score(prompts, responses).p_acceptable
    alone = np.array([gate.score([p], [r]).p_acceptable[0] for p, r in zip(prompts, responses, strict=True)])
    assert np.abs(together - alone).max() < 1e-6
    assert gate.p_acceptable(prompts[0], responses[0]) == pytest.approx(alone[0], abs=1e-9)


def test_decide_without_model() -> None:
    out = decide_without_model([GateItem("Is water wet?", "Yes."), GateItem("Write an essay.", "")])
    assert out[0].acceptable and out[0].decided_by == "checks_only" and out[0].p_acceptable is None
    assert not out[1].acceptable and out[1].reasons == ["empty"]


def test_tampered_or_wrong_kind_bundles_are_refused(gate_bundle: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(gate_bundle, broken)
    with (broken / "model.onnx").open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="sha256"):
        GateModel.load(broken)
    wrong = tmp_path / "wrong"
    shutil.copytree(gate_bundle, wrong)
    manifest = json.loads((wrong / "bundle.json").read_text())
    manifest["signals"]["version"] = 999
    (wrong / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="signals"):
        GateModel.load(wrong)
    manifest["signals"]["version"] = 1
    manifest["kind"] = "classifier"
    (wrong / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="kind"):
        GateModel.load(wrong)
