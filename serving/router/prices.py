"""Model prices and context windows from LiteLLM's bundled cost map, without importing LiteLLM.

Job: answer "what does this model cost per token, and how long a context does it take?" for the
policy loader and the decision path. `import litellm` costs ~3 s here, which a CLI that only
prints a routing decision should not pay, so we read the same JSON file LiteLLM ships
(`model_prices_and_context_window_backup.json`, the file `LITELLM_LOCAL_MODEL_COST_MAP=True`
makes LiteLLM use). If LiteLLM is already imported we read its live `model_cost` instead, so
prices registered at runtime are seen. Spend itself is computed with LiteLLM's cost functions
(see `budget.cost_of_response`); this module only orders models by price.

Trade-off: the lookup tries the model string as written, then without its provider prefix
(`anthropic/claude-haiku-4-5` -> `claude-haiku-4-5`); anything else needs a price override in
the policy, and the loader says so.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

COST_MAP_FILE = "model_prices_and_context_window_backup.json"


@functools.cache
def _bundled_cost_map() -> dict[str, dict[str, Any]]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return {}
    path = Path(spec.origin).parent / COST_MAP_FILE
    if not path.is_file():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def cost_map() -> dict[str, dict[str, Any]]:
    litellm = sys.modules.get("litellm")
    live = getattr(litellm, "model_cost", None) if litellm is not None else None
    if isinstance(live, dict) and live:
        return live
    return _bundled_cost_map()


def cost_map_key(litellm_model: str) -> str | None:
    """The key under which the cost map knows this model, or None."""
    table = cost_map()
    candidates = [litellm_model]
    if "/" in litellm_model:
        candidates.append(litellm_model.split("/", 1)[1])
        candidates.append(litellm_model.rsplit("/", 1)[1])
    for key in candidates:
        entry = table.get(key)
        if isinstance(entry, dict) and entry.get("input_cost_per_token") is not None:
            return key
    return None


def lookup(litellm_model: str) -> dict[str, Any] | None:
    key = cost_map_key(litellm_model)
    return cost_map()[key] if key is not None else None
