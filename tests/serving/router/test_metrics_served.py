"""Router metrics reach the service's own `/metrics` (issue: they went to the global registry)."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fake_provider import FakeProvider, Step
from tests.support.policies import policy_dict, write_policy
from tests.support.server import start_server


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_router_series_are_served_with_the_right_counts(
    serving_bundle: Path, tmp_path: Path, provider: FakeProvider
) -> None:
    d = policy_dict(provider, None, tmp_path / "ledger.sqlite")
    d["rules"] = [r for r in d["rules"] if r["route"] != "classifier"]  # no classifier section here
    policy_path = write_policy(tmp_path, d)
    server = start_server(serving_bundle, tmp_path / "srv", args=["--policy", str(policy_path)])
    chat = {"model": "cheap", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    try:
        before = httpx.get(f"{server.url}/metrics").text
        assert "tierroute_router_decisions_total" not in before or "cheap" not in before
        for _ in range(2):
            ok = httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=60)
            assert ok.status_code == 200, ok.text
        provider.set_default("openai", "cheap-model", Step(kind="error", status=500))
        failed = httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=60)
        assert failed.status_code == 502, failed.text
        text = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    samples = _samples(text)
    decisions = samples[
        ("tierroute_router_decisions_total", (("decided_by", "explicit"), ("model", "cheap")))
    ]
    assert decisions == 2.0
    failures = {k: v for k, v in samples.items() if k[0] == "tierroute_router_failures_total"}
    assert sum(failures.values()) == 1.0, failures
    spend = samples[("tierroute_router_spend_usd_total", (("model", "cheap"),))]
    # two answers of 20 prompt + 10 completion tokens at $0.5 / $1.5 per Mtok
    assert abs(spend - 2 * (20 * 0.5 + 10 * 1.5) / 1e6) < 1e-9
    assert samples[("tierroute_router_budget_spent_usd", ())] == spend
