"""A calibrated bundle announces its routing threshold; the client and the router act on it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from serving.client import BundleClassifier, ClassifierClient
from serving.schemas import RoutingThreshold
from tests.serving.app.test_reload import release
from tests.support.server import start_server


def calibrated(bundle: Path, root: Path, threshold: float) -> Path:
    target = release(bundle, root, "calibrated")
    manifest = json.loads((target / "bundle.json").read_text())
    manifest.setdefault("thresholds", {})["routing"] = {
        "score": "complexity",
        "strong_if_at_least": threshold,
        "objective": "target_share",
        "target": 0.3,
        "expected_share": 0.29,  # extra keys calibrate writes are not part of the contract
    }
    (target / "bundle.json").write_text(json.dumps(manifest, indent=2))
    return target


def test_uncalibrated_bundle_has_no_threshold(serving_bundle: Path) -> None:
    manifest = json.loads((serving_bundle / "bundle.json").read_text())
    assert RoutingThreshold.from_manifest(manifest) is None
    assert BundleClassifier(serving_bundle).classify(["hi"]).model.routing is None


def test_service_and_in_process_classifier_announce_the_threshold(
    serving_bundle: Path, tmp_path: Path
) -> None:
    bundle = calibrated(serving_bundle, tmp_path, 0.42)
    local = BundleClassifier(bundle).classify(["hi"]).model.routing
    assert local == RoutingThreshold(strong_if_at_least=0.42, objective="target_share", target=0.3)

    server = start_server(bundle, tmp_path / "srv")
    try:
        raw = httpx.post(f"{server.url}/v1/classify", json={"text": "hi"}).json()
        assert raw["model"]["routing"] == {
            "score": "complexity",
            "strong_if_at_least": 0.42,
            "objective": "target_share",
            "target": 0.3,
        }
        with ClassifierClient(server.url, timeout=5.0) as client:
            assert client.classify(["hi"]).model.routing == local
    finally:
        server.stop()


def test_apply_is_monotone_and_ignores_unusable_scores() -> None:
    from types import SimpleNamespace

    cut = RoutingThreshold(strong_if_at_least=0.5)
    tiers = [cut.apply(SimpleNamespace(tier="complex", complexity=c)) for c in (0.0, 0.49, 0.5, 0.9)]
    assert [t[0] for t in tiers if t] == ["simple", "simple", "complex", "complex"]
    assert cut.apply(SimpleNamespace(tier="reasoning", complexity=0.6)) == (
        "reasoning",
        "complexity 0.600 >= calibrated threshold 0.500 -> reasoning",
    )
    for bad in (float("nan"), None, True, "0.9"):
        assert cut.apply(SimpleNamespace(tier="simple", complexity=bad)) is None
    unknown = RoutingThreshold(score="p_reasoning", strong_if_at_least=0.2)
    assert unknown.apply(SimpleNamespace(tier="simple", complexity=0.9)) is None  # no such field
    probs = {"simple": 0.7, "complex": 0.1, "reasoning": 0.2}
    row = SimpleNamespace(tier="simple", complexity=0.25, tier_probs=probs)
    on_label = RoutingThreshold(score="tier:reasoning", strong_if_at_least=0.2)  # calibrate's HEAD:LABEL
    assert on_label.apply(row) == ("complex", "tier:reasoning 0.200 >= calibrated threshold 0.200 -> complex")
    negated = RoutingThreshold(score="not:tier:simple", strong_if_at_least=0.5)  # 1 - 0.7 = 0.3 < 0.5
    assert negated.apply(row) is not None and negated.apply(row)[0] == "simple"  # type: ignore[index]
    assert RoutingThreshold(score="task:code", strong_if_at_least=0.5).apply(row) is None  # no task_probs
    assert RoutingThreshold.from_manifest({"thresholds": {"min_confidence": 0.5}}) is None
    assert RoutingThreshold.from_manifest({"thresholds": {"routing": {"score": "x"}}}) is None
