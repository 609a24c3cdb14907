"""The tierroute classifier as a LiteLLM plug-in: the complexity router's custom classifier.

Job: let LiteLLM users route with our classifier without adopting the rest of tierroute. LiteLLM
1.110 documents `auto_router/complexity_router` deployments, which choose a model *group* (a tier's
pool) before LiteLLM selects a deployment inside it, and accept `classifier_type: custom` with a
`classifier_plugin`: any object with `async classify(context: RoutingContext) -> str | None`
returning a tier name, or None to decline (LiteLLM's `classifier_fallback` then decides). Its
timeout is LiteLLM's `classifier_plugin_timeout_ms`. See serving/router/examples/.

Why this extension point: it is the one LiteLLM documents for "pick the model group from the
request before deployment selection", and it keeps LiteLLM's retries, fallbacks, cooldowns and
budget routing intact after the tier is chosen. A `CustomLogger.async_pre_call_hook` would run
after the model group is fixed; a custom routing strategy picks a deployment within a group; a
RoutingPlugin can only narrow candidates, not name a tier.

Trade-off: the plug-in maps our tiers onto LiteLLM's built-in tier names (simple -> SIMPLE,
complex -> COMPLEX, reasoning -> REASONING), applies the served bundle's calibrated threshold
(`tierroute calibrate`) like tierroute's router does, and declines below `min_confidence`; policy rules,
SLA classes, budgets and cascades stay in tierroute's own router.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from serving.client import AsyncClassifierClient, BundleClassifier, ClassifierError

TIER_NAMES = {"simple": "SIMPLE", "complex": "COMPLEX", "reasoning": "REASONING"}


class TierrouteClassifierPlugin:
    """A LiteLLM `ClassifierPlugin` backed by the classify service or a local bundle."""

    def __init__(
        self,
        url: str | None = None,
        *,
        bundle: str | None = None,
        timeout_ms: float = 30.0,
        min_confidence: float = 0.5,
        api_key: str | None = None,
        tier_names: Mapping[str, str] | None = None,
        use_calibrated_threshold: bool = True,
    ) -> None:
        self.url = url
        self.bundle_path = bundle
        self.timeout_ms = timeout_ms
        self.min_confidence = min_confidence
        self.api_key = api_key
        self.tier_names = dict(tier_names or TIER_NAMES)
        self.use_calibrated_threshold = use_calibrated_threshold
        self.last_verdict: dict[str, Any] | None = None
        self._clients: dict[int, AsyncClassifierClient] = {}
        self._bundle: BundleClassifier | None = None

    @classmethod
    def from_env(cls) -> TierrouteClassifierPlugin:
        """TIERROUTE_CLASSIFIER_URL or TIERROUTE_CLASSIFIER_BUNDLE, TIERROUTE_CLASSIFIER_TIMEOUT_MS,
        TIERROUTE_MIN_CONFIDENCE, TIERROUTE_API_KEY, TIERROUTE_USE_CALIBRATED_THRESHOLD (default 1)
        (read when the first request arrives)."""
        return cls(
            os.environ.get("TIERROUTE_CLASSIFIER_URL") or None,
            bundle=os.environ.get("TIERROUTE_CLASSIFIER_BUNDLE") or None,
            timeout_ms=float(os.environ.get("TIERROUTE_CLASSIFIER_TIMEOUT_MS", "30")),
            min_confidence=float(os.environ.get("TIERROUTE_MIN_CONFIDENCE", "0.5")),
            api_key=os.environ.get("TIERROUTE_API_KEY") or None,
            use_calibrated_threshold=os.environ.get("TIERROUTE_USE_CALIBRATED_THRESHOLD", "1") != "0",
        )

    async def classify(self, context: Any) -> str | None:
        text = last_user_text(getattr(context, "structured_messages", None) or [])
        if not text:
            return None
        try:
            response = await self._classify(text)
        except ClassifierError as exc:
            self.last_verdict = {"status": "unavailable", "detail": str(exc)}
            return None  # LiteLLM's classifier_fallback decides
        result = response.results[0]
        if result.tier not in self.tier_names:
            self.last_verdict = {"status": "garbage", "tier": result.tier}
            return None
        if result.confidence < self.min_confidence:
            self.last_verdict = {
                "status": "low_confidence",
                "tier": result.tier,
                "confidence": result.confidence,
            }
            return None
        tier = result.tier
        self.last_verdict = {
            "status": "ok",
            "tier": tier,
            "confidence": result.confidence,
            "task": result.task,
        }
        calibrated = response.model.routing.apply(result) if response.model.routing is not None else None
        if calibrated is not None and self.use_calibrated_threshold:
            tier, self.last_verdict["calibrated"] = calibrated
        return self.tier_names[tier]

    async def _classify(self, text: str) -> Any:
        if self.url:
            import asyncio

            loop_id = id(asyncio.get_running_loop())
            client = self._clients.get(loop_id)
            if client is None:
                client = AsyncClassifierClient(self.url, timeout=self.timeout_ms / 1000, api_key=self.api_key)
                self._clients = {loop_id: client}
            return await client.classify([text])
        if self.bundle_path:
            if self._bundle is None:
                self._bundle = BundleClassifier(self.bundle_path)
            return await self._bundle.aclassify([text])
        raise ClassifierError(
            "no classifier configured: set TIERROUTE_CLASSIFIER_URL or TIERROUTE_CLASSIFIER_BUNDLE"
        )


ENV_KEYS = (
    "TIERROUTE_CLASSIFIER_URL",
    "TIERROUTE_CLASSIFIER_BUNDLE",
    "TIERROUTE_CLASSIFIER_TIMEOUT_MS",
    "TIERROUTE_MIN_CONFIDENCE",
    "TIERROUTE_API_KEY",
)


class _LazyPlugin:
    """Module-level instance for proxy configs (a dotted path names an instance).

    Reads the environment when a request arrives, not at import, and rebuilds the client if the
    settings changed since.
    """

    def __init__(self) -> None:
        self._plugin: TierrouteClassifierPlugin | None = None
        self._key: tuple[str | None, ...] = ()

    async def classify(self, context: Any) -> str | None:
        key = tuple(os.environ.get(k) for k in ENV_KEYS)
        if self._plugin is None or key != self._key:
            self._plugin, self._key = TierrouteClassifierPlugin.from_env(), key
        return await self._plugin.classify(context)


classifier_plugin = _LazyPlugin()
"""What `complexity_router_config.classifier_plugin: serving.router.litellm_hook.classifier_plugin` names."""


def last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(list(messages)):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    str(p.get("text", ""))
                    for p in content
                    if isinstance(p, Mapping) and p.get("type") == "text"
                )
    return ""
