"""A router policy shaped like the shipped ones whose models all point at the fake provider.

`policy_dict()`: cheap / capable / strongest tiers, Anthropic + Bedrock + OpenAI failover, a FAQ
cascade, a budget; tests edit the dict and `write_policy()` it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tests.support.fake_provider import FakeProvider


def _model(
    fp: FakeProvider, provider: str, model: str, tier: str, price: tuple[float, float], **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "litellm_model": f"openai/{model}",
        "provider": provider,
        "tier": tier,
        "capabilities": ["code", "json", "vision"],
        "context_window": 200000,
        "latency_ms": 2000,
        "price": {"input_per_mtok": price[0], "output_per_mtok": price[1]},
        "litellm_params": {"api_base": fp.api_base(provider), "api_key": "sk-fake"},
    }
    spec.update(extra)
    return spec


BASE_RULES: list[dict[str, Any]] = [
    {
        "id": "short-summary",
        "when": {"tokens_lt": 500, "system_prompt_regex": "(?i)summari[sz]e"},
        "route": {"model": "cheap"},
    },
    {
        "id": "code-or-long",
        "any": [{"metadata": {"requires_code_execution": True}}, {"context_tokens_gt": 50000}],
        "route": {"model": "sonnet"},
    },
    {
        "id": "financial",
        "when": {"use_case": "financial_analysis", "metadata": {"requires_reasoning": True}},
        "route": {"model": "opus"},
    },
    {"id": "faq-intent", "when": {"use_case": "faq"}, "route": {"cascade": "faq"}},
    {"id": "ask-classifier", "route": "classifier"},
]


def policy_dict(fp: FakeProvider, classifier_url: str | None, ledger: Path) -> dict[str, Any]:
    d: dict[str, Any] = {
        "version": 1,
        "name": "test",
        "models": {
            "cheap": _model(
                fp, "openai", "cheap-model", "simple", (0.5, 1.5), capabilities=["json"], context_window=16000
            ),
            "sonnet": _model(fp, "anthropic", "claude-sonnet", "complex", (3.0, 15.0)),
            "sonnet-bedrock": _model(fp, "bedrock", "claude-sonnet", "complex", (3.0, 15.0)),
            "gpt": _model(fp, "openai", "gpt-equivalent", "complex", (2.5, 10.0)),
            "opus": _model(fp, "anthropic", "claude-opus", "reasoning", (15.0, 75.0), latency_ms=20000),
            "vip": _model(fp, "anthropic", "vip-model", "reasoning", (20.0, 80.0), critical_only=True),
        },
        "rules": copy.deepcopy(BASE_RULES),
        "default": {"tier": "complex"},
        "latency_sla": {
            "default": "interactive",
            "classes": {
                "realtime": {"max_latency_ms": 2500},
                "interactive": {"max_latency_ms": 30000},
                "batch": {},
            },
        },
        "budget": {"daily_usd": 1.0, "downgrade_at": 0.8, "on_exhausted": "reject", "ledger": str(ledger)},
        "failover": {
            "retries": 1,
            "server_error_retries": 0,
            "allowed_fails": 0,
            "cooldown_seconds": 30,
            "timeout_seconds": 5,
            "models": {
                "sonnet": {"rate_limited": ["sonnet-bedrock"], "server_error": ["gpt"]},
                "sonnet-bedrock": {"server_error": ["gpt"]},
            },
        },
        "cascades": {
            "faq": {
                "stage1": "cheap",
                "stage2": "sonnet",
                "gate": {"min_chars": 20},
                "alarm": {
                    "window": 10,
                    "min_samples": 5,
                    "threshold": 0.4,
                    "auto_skip_stage1": True,
                    "probe_every": 5,
                },
            }
        },
    }
    if classifier_url is not None:
        d["classifier"] = {
            "url": classifier_url,
            "timeout_ms": 500,  # generous: the suite runs on a loaded 2-core box; fault tests sleep 2 s
            "inprocess_timeout_ms": 500,  # the same for in-process backends (bundles, stubs)
            "min_confidence": 0.5,
            "tier_models": {"simple": "cheap", "complex": "sonnet", "reasoning": "opus"},
            "task_capabilities": {"code": ["code"]},
        }
    return d


def write_policy(tmp_path: Path, d: dict[str, Any], name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return path
