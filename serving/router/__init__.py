"""Policy-driven LLM router: decide a model per request, execute it through LiteLLM.

Public API: `Router` (decide / adecide / complete / acomplete), `RouteRequest`, `Decision`,
`load_policy` / `PolicyError`, the router errors, `build_chat_router` (in `serving.router.http`)
and the LiteLLM classifier plug-in (`serving.router.litellm_hook`). Importing this package does
not import LiteLLM or FastAPI.
"""

from serving.router.decision import (
    AllProvidersFailed,
    BudgetExceeded,
    Decision,
    InvalidRequest,
    NoEligibleModel,
    RouterError,
    UnknownRoute,
)
from serving.router.engine import Router, answered_by, decision_of
from serving.router.policy import Policy, PolicyError, load_policy
from serving.router.request import RouteRequest

__all__ = [
    "AllProvidersFailed",
    "BudgetExceeded",
    "Decision",
    "InvalidRequest",
    "NoEligibleModel",
    "Policy",
    "PolicyError",
    "RouteRequest",
    "Router",
    "RouterError",
    "UnknownRoute",
    "answered_by",
    "decision_of",
    "load_policy",
]
