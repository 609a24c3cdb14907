"""The offline environment every tierroute process runs with: no hub look-ups, no telemetry."""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline_env() -> None:
    """Set every OFFLINE_ENV variable the caller has not set: this tool must not wait on the network."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
