"""Router test fixtures: a fake provider, a fake classify service, and a test policy factory.

The provider and classifier servers are real uvicorn servers on 127.0.0.1 (random ports), started
once per session and reset before each test. `policy_dict()` is a policy shaped like the shipped
ones (cheap / capable / strongest tiers, Anthropic + Bedrock + OpenAI failover, a FAQ cascade, a
budget) whose models all point at the fake provider; tests edit the dict and `write_policy()` it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.router.policy import Policy, load_policy
from tests.support.fake_classifier import FakeClassifier
from tests.support.fake_provider import FakeProvider
from tests.support.policies import policy_dict, write_policy


@pytest.fixture(scope="session")
def _provider_server() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp


@pytest.fixture()
def provider(_provider_server: FakeProvider) -> FakeProvider:
    _provider_server.reset()
    return _provider_server


@pytest.fixture(scope="session")
def _classifier_server() -> Iterator[FakeClassifier]:
    fc = FakeClassifier().start()
    yield fc
    fc.stop()


@pytest.fixture()
def classifier_server(_classifier_server: FakeClassifier) -> FakeClassifier:
    _classifier_server.reset()
    return _classifier_server


@pytest.fixture()
def make_policy(
    tmp_path: Path, provider: FakeProvider, classifier_server: FakeClassifier
) -> Callable[..., Policy]:
    """make_policy(edit=None, classifier=True) -> Policy; `edit(d)` mutates the dict first."""

    def make(edit: Callable[[dict[str, Any]], None] | None = None, classifier: bool = True) -> Policy:
        d = policy_dict(provider, classifier_server.url if classifier else None, tmp_path / "ledger.sqlite")
        if edit is not None:
            edit(d)
        return load_policy(write_policy(tmp_path, d))

    return make


def pytest_configure(config: pytest.Config) -> None:
    # LiteLLM's own TypedDicts trigger pydantic "ReadOnly qualifier" UserWarnings on first use: noise.
    config.addinivalue_line("filterwarnings", "ignore:.*ReadOnly.*qualifier:UserWarning")
