"""The learned gate: threshold calibration, baselines, ONNX parity, the bundle and its loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.gate.refusal_eval import REFUSAL_MIN_GRID
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


def test_threshold_was_chosen_by_cascade_economics_on_validation(trained_gate: Any) -> None:
    from pipelines.gate.economics import CascadePrices, cost_curve

    report = trained_gate.report
    assert report["target_false_accept"] is None  # the default rule is economics, not a FAR target
    assert 0.0 <= trained_gate.threshold <= 1.0
    eco = report["economics"]
    assert eco["at_threshold"]["threshold"] == pytest.approx(trained_gate.threshold)
    # on test, the chosen point costs less than always escalating and serves fewer bad answers than no gate
    assert eco["at_threshold"]["cost_per_1000"] < eco["baselines"]["always_strong"]["cost_per_1000"]
    assert eco["at_threshold"]["bad_per_1000"] < eco["baselines"]["always_cheap"]["bad_per_1000"]
    prices = CascadePrices(**eco["prices"])
    assert cost_curve(np.array([0.2, 0.9]), np.array([0, 1]), prices, np.array([0.5]))[0].false_accept == 0.0


def test_report_has_per_reason_source_and_length_numbers(trained_gate: Any) -> None:
    from pipelines.gate.train import report_lines

    test = trained_gate.report["test"]
    caught = test["reject_rate_by_reason"]["gate"]
    assert {"garbage", "truncated", "off_instruction", "ok"} <= set(caught)
    assert caught["garbage"] >= 0.9  # constant judge-gaming text: the easiest reason
    by_len = test["false_escalation_by_length"]
    assert "<40" in by_len and all(
        0.0 <= v["false_escalation"] <= 1.0 for v in by_len.values() if v["acceptable"]
    )
    assert "nq_open:gold" in test["false_escalation_by_source"]
    hand = trained_gate.report["refusal_hand_labels"]
    assert hand["rows"] > 0 and set(hand) >= {"phrase", "model", "combined", "gate_rejects"}
    assert hand["refusal_min"] in REFUSAL_MIN_GRID and hand["validation_rows"] > 0
    assert all(0.0 <= v <= 1.0 for v in test["right_vs_wrong_auc"].values())
    text = "\n".join(report_lines(trained_gate.report))
    assert "catch rate by reason" in text and "false escalation by answer length" in text and "$" in text


def test_train_reports_the_one_line_check_as_the_bundle_decides_it(trained_gate: Any) -> None:
    from pipelines.gate.train import ONE_LINE_PAIRS, one_line_check_line

    check = trained_gate.report["one_line_check"]
    assert [(p["prompt"], p["response"]) for p in check["pairs"]] == list(ONE_LINE_PAIRS)
    # the printed numbers are the shipped bundle's served decisions on the same pairs
    out = GateModel.load(trained_gate.bundle_dir).decide([GateItem(q, a) for q, a in ONE_LINE_PAIRS])
    assert [p["acceptable"] for p in check["pairs"]] == [d.acceptable for d in out]
    assert check["accepted"] == sum(d.acceptable for d in out)
    line = one_line_check_line(check)
    assert f"accepted: {check['accepted']} of {len(ONE_LINE_PAIRS)}" in line
    assert ("rejected:" in line) == (check["accepted"] < len(ONE_LINE_PAIRS))


def test_short_correct_answers_pass_wrong_kinds_of_answer_do_not(gate_bundle: Path) -> None:
    gate = GateModel.load(gate_bundle)
    q = "What is the capital of France?"
    items = [
        GateItem(q, "The capital of France is Paris."),
        GateItem(q, "I'm sorry, but I can't help with that."),
        GateItem(q, ""),
        GateItem("Write a short story about a lighthouse keeper.", "x" * 3),
    ]
    out = gate.decide(items)
    # a one-line correct answer to a one-line question is never stopped by a deterministic check
    assert out[0].decided_by == "model" and out[0].p_acceptable is not None
    assert [d.acceptable for d in out[1:]] == [False, False, False]


def test_one_line_correct_answers_to_one_line_questions_are_accepted(gate_bundle: Path) -> None:
    gate = GateModel.load(gate_bundle)
    items = [
        GateItem("What is the capital of France?", "Paris."),
        GateItem("Who wrote Hamlet?", "William Shakespeare."),
        GateItem("Winner of the women's royal rumble match?", "Charlotte Flair"),
    ]
    out = gate.decide(items)
    assert [d.decided_by for d in out] == ["model"] * 3  # no check calls them too short
    # the 700-row test gate accepts these two; NQ-style bare names are the weaker case (evals/RESULTS.md)
    assert [d.acceptable for d in out[:2]] == [True, True], [d.p_acceptable for d in out]


def test_onnx_parity_with_training_heads(trained_gate: Any, gate_bundle: Path) -> None:
    from pipelines.gate.train import build_features
    from pipelines.train.embed import Embedder
    from pipelines.train.encoder_export import EncoderArtifact

    assert trained_gate.metrics["parity_max_abs_diff"] < 1e-4
    assert type(trained_gate.heads[0].model).__name__ == "LogisticRegression"  # "auto" on a 700-row slice

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


def test_mlp_head_in_the_gate_graph_matches_sklearn(
    gate_dataset: Path, session_cache: Path, tmp_path: Path
) -> None:
    from pipelines.gate.train import GateTrainConfig, train_gate

    config = GateTrainConfig(
        data=gate_dataset,
        out_dir=tmp_path,
        encoder_cache=session_cache / "encoder",
        embedding_cache=session_cache / "gate-embeddings",
        limit=700,
        head="mlp",
        reason_head=False,
        register=False,
    )
    result = train_gate(config, progress=False, echo=lambda _: None)
    assert type(result.heads[0].model).__name__ == "MLPClassifier"
    assert result.metrics["parity_max_abs_diff"] < 1e-4  # the bundle's ONNX graph vs the sklearn MLP
    GateModel.load(result.bundle_dir).self_check()


def test_bundle_manifest_and_self_check(gate_bundle: Path) -> None:
    manifest = json.loads((gate_bundle / "bundle.json").read_text())
    assert manifest["kind"] == "gate"
    assert 0.0 <= manifest["thresholds"]["target_false_accept_rate"] <= 1.0
    assert manifest["operating_point"]["rule"] == "economics"
    assert set(manifest["operating_point"]["prices"]) >= {"cheap_cost", "strong_cost", "pass_rate"}
    assert {h["name"] for h in manifest["heads"]} >= {"acceptable"}
    assert set(manifest["text"]) == {"prompt", "response"}
    gate = GateModel.load(gate_bundle)
    gate.self_check()
    assert gate.threshold == manifest["thresholds"]["p_acceptable"]
    assert gate.refusal_min == manifest["thresholds"]["reason_refusal"]


def test_learned_refusal_reason_needs_the_bundles_refusal_probability(gate_bundle: Path) -> None:
    gate = GateModel.load(gate_bundle)
    assert gate.reason_labels is not None and "refusal" in gate.reason_labels
    probs = np.array([0.3 if lab == "refusal" else 0.0 for lab in gate.reason_labels])
    probs[gate.reason_labels.index("incorrect")] = 0.2
    probs[gate.reason_labels.index("ok")] = 1.0 - probs.sum()
    gate.refusal_min = 0.0
    assert gate._learned_reason(probs)[0] == ["refusal"]
    gate.refusal_min = 0.5  # an unsure refusal call gives way to the next bad reason
    assert gate._learned_reason(probs)[0] == ["incorrect"]


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
