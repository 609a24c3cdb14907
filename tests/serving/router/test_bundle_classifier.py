"""One real in-process test: the router consults a trained bundle (real encoder, onnxruntime)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.client import BundleClassifier
from serving.router import Router, RouteRequest
from serving.router.decision import ClassifierConsulted
from serving.router.policy import TIERS, Policy

pytestmark = pytest.mark.slow


def test_router_with_a_real_bundle_in_process(
    trained_bundle: Path, make_policy: Callable[..., Policy]
) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["classifier"].pop("url")
        d["classifier"].update(bundle=str(trained_bundle), inprocess_timeout_ms=5000, min_confidence=0.0)

    policy = make_policy(edit)
    router = Router(policy)  # classifier built from `classifier.bundle`
    assert isinstance(router._classifier, BundleClassifier)
    texts = ["What is the capital of France?", "Prove that there are infinitely many primes, step by step."]
    response = router._classifier.classify(texts)
    assert [r.tier in TIERS for r in response.results] == [True, True]
    assert all(abs(sum(r.tier_probs.values()) - 1) < 1e-3 for r in response.results)
    for text in texts:
        d = router.decide(RouteRequest.from_text(text))
        step = next(s for s in d.trace if isinstance(s, ClassifierConsulted))
        assert step.status == "ok" and d.decided_by in {"classifier", "capability"}
        assert step.tier in TIERS and step.tokens is not None and step.tokens > 0
        assert policy.classifier is not None
        if d.decided_by == "classifier":
            assert d.model == policy.classifier.tier_models[step.tier]  # type: ignore[index]
    router.close()
