"""The LiteLLM extension point: the shipped example config routes by our classifier inside LiteLLM."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.router.litellm_config import AUTO_GROUP, to_litellm_config
from serving.router.litellm_hook import TierrouteClassifierPlugin
from serving.router.policy import load_policy
from tests.support.fake_classifier import FakeClassifier
from tests.support.fake_provider import FakeProvider

EXAMPLE = Path(__file__).resolve().parents[3] / "serving" / "router" / "examples" / "litellm_config.yaml"


def _point_at_fakes(config: dict[str, Any], provider: FakeProvider) -> list[dict[str, Any]]:
    """Keep the example's groups, weights and auto-router; send every deployment to the fake provider."""
    from litellm.proxy.types_utils.utils import get_instance_fn  # what the proxy uses for dotted paths

    models = copy.deepcopy(config["model_list"])
    for dep in models:
        params = dep["litellm_params"]
        if params["model"].startswith("auto_router/"):
            cfg = params["complexity_router_config"]
            cfg["classifier_plugin"] = get_instance_fn(cfg["classifier_plugin"])
            cfg["classifier_plugin_timeout_ms"] = 2000  # generous: this test is about routing, not latency
            continue
        params.update(
            model=f"openai/{dep['model_name']}", api_base=provider.api_base("fake"), api_key="sk-fake"
        )
    return models


def _routed(router: Any, text: str, provider: FakeProvider) -> list[str]:
    provider.reset()
    asyncio.run(router.acompletion(model=AUTO_GROUP, messages=[{"role": "user", "content": text}]))
    return [c.model for c in provider.calls]


def test_example_config_routes_by_classifier_tier(
    provider: FakeProvider, classifier_server: FakeClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litellm import Router

    monkeypatch.setenv("TIERROUTE_CLASSIFIER_URL", classifier_server.url)
    monkeypatch.setenv("TIERROUTE_CLASSIFIER_TIMEOUT_MS", "1000")
    config = yaml.safe_load(EXAMPLE.read_text())
    router = Router(model_list=_point_at_fakes(config, provider))
    assert _routed(router, "What is the capital of France?", provider) == ["haiku"]
    assert _routed(router, "Prove that sqrt(2) is irrational", provider) == ["opus"]
    assert _routed(router, "Debug this stack trace", provider) == ["sonnet"]
    calls_so_far = classifier_server.calls
    assert calls_so_far == 3
    classifier_server.mode, classifier_server.delay_s = (
        "slow",
        3.0,
    )  # past both timeouts: LiteLLM's default decides
    assert _routed(router, "Prove that sqrt(2) is irrational", provider) == ["sonnet"]
    classifier_server.mode = "low_confidence"
    assert _routed(router, "Prove that sqrt(2) is irrational", provider) == ["sonnet"]


def test_plugin_declines_when_unsure_or_down(classifier_server: FakeClassifier) -> None:
    from litellm.types.router import ClassifierPlugin, RoutingContext

    plugin = TierrouteClassifierPlugin(classifier_server.url, timeout_ms=1000, min_confidence=0.5)
    assert isinstance(plugin, ClassifierPlugin)
    ctx = RoutingContext(
        raw_messages=[], structured_messages=[{"role": "user", "content": "prove it"}], candidate_models=[]
    )
    assert asyncio.run(plugin.classify(ctx)) == "REASONING"
    classifier_server.mode = "error"
    assert asyncio.run(plugin.classify(ctx)) is None
    assert plugin.last_verdict is not None and plugin.last_verdict["status"] == "unavailable"
    classifier_server.mode = "unknown_tier"
    assert asyncio.run(plugin.classify(ctx)) is None


def test_plugin_applies_the_calibrated_threshold(classifier_server: FakeClassifier) -> None:
    from litellm.types.router import RoutingContext

    def ctx(text: str) -> RoutingContext:
        return RoutingContext(
            raw_messages=[], structured_messages=[{"role": "user", "content": text}], candidate_models=[]
        )

    classifier_server.routing = {"score": "complexity", "strong_if_at_least": 0.75}
    plugin = TierrouteClassifierPlugin(classifier_server.url, timeout_ms=1000)
    assert asyncio.run(plugin.classify(ctx("refactor this"))) == "SIMPLE"  # complexity 0.5 < 0.75
    assert plugin.last_verdict is not None and plugin.last_verdict["tier"] == "complex"
    assert plugin.last_verdict["calibrated"].endswith("-> simple")
    assert asyncio.run(plugin.classify(ctx("prove it"))) == "REASONING"  # 1.0 >= 0.75
    off = TierrouteClassifierPlugin(classifier_server.url, timeout_ms=1000, use_calibrated_threshold=False)
    assert asyncio.run(off.classify(ctx("refactor this"))) == "COMPLEX"


def test_policy_to_litellm_builds_a_working_router(tmp_path: Path) -> None:
    from litellm import Router

    policy = load_policy(Path(__file__).resolve().parents[3] / "serving" / "policies" / "default.yaml")
    config = to_litellm_config(policy)
    groups = {d["model_name"] for d in config["model_list"]}
    assert set(policy.models) <= groups and AUTO_GROUP in groups
    sonnet = [d for d in config["model_list"] if d["model_name"] == "sonnet"]
    assert [d["litellm_params"]["weight"] for d in sonnet] == [1, 0]
    assert {"sonnet": ["gpt-4.1"]} in config["router_settings"]["fallbacks"]
    assert config["router_settings"]["retry_policy"]["InternalServerErrorRetries"] == 0
    models = [d for d in config["model_list"] if d["model_name"] != AUTO_GROUP]
    settings = dict(config["router_settings"])
    Router(model_list=models, **settings)  # LiteLLM accepts the generated settings as-is
