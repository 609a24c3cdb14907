"""LiteLLM Python SDK: route `model="auto"` with the tierroute classifier (no proxy needed).

Job: the SDK form of `litellm_config.yaml`: build a `litellm.Router` whose `auto` deployment is
LiteLLM's complexity router with our `TierrouteClassifierPlugin` as its custom classifier.

    python -m serving.router.examples.sdk_auto_router --classifier http://127.0.0.1:8000 "Prove that ..."

Needs provider keys (ANTHROPIC_API_KEY) for the answer itself; the tier choice needs only the
classify service.
"""

from __future__ import annotations

import argparse
import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def build(classifier_url: str, timeout_ms: float = 30.0, min_confidence: float = 0.55):  # type: ignore[no-untyped-def]
    from litellm import Router

    from serving.router.litellm_hook import TierrouteClassifierPlugin

    plugin = TierrouteClassifierPlugin(classifier_url, timeout_ms=timeout_ms, min_confidence=min_confidence)
    key = "os.environ/ANTHROPIC_API_KEY"
    return Router(
        model_list=[
            {
                "model_name": "haiku",
                "litellm_params": {"model": "anthropic/claude-haiku-4-5", "api_key": key},
            },
            {
                "model_name": "sonnet",
                "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": key},
            },
            {"model_name": "opus", "litellm_params": {"model": "anthropic/claude-opus-4-5", "api_key": key}},
            {
                "model_name": "auto",
                "litellm_params": {
                    "model": "auto_router/complexity_router",
                    "complexity_router_config": {
                        "classifier_type": "custom",
                        "classifier_plugin": plugin,
                        "classifier_plugin_timeout_ms": int(timeout_ms),
                        "classifier_fallback": "default_model",
                        "default_model": "sonnet",
                        "tiers": {
                            "SIMPLE": "haiku",
                            "MEDIUM": "sonnet",
                            "COMPLEX": "sonnet",
                            "REASONING": "opus",
                        },
                    },
                    "complexity_router_default_model": "sonnet",
                },
            },
        ]
    )


async def _main(url: str, text: str) -> None:
    router = build(url)
    response = await router.acompletion(model="auto", messages=[{"role": "user", "content": text}])
    print(response.model, response.choices[0].message.content)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classifier", default="http://127.0.0.1:8000", help="classify service base URL")
    parser.add_argument("text", help="the user message")
    args = parser.parse_args()
    asyncio.run(_main(args.classifier, args.text))
