"""The environment every test and every server a test starts runs with (offline, no telemetry)."""

from __future__ import annotations

from serving.cli.env import OFFLINE_ENV as TOOL_ENV

OFFLINE_ENV = {**TOOL_ENV, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
