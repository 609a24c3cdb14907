"""The classify clients: typed errors for every way the service can fail, one pooled connection."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from serving.client import (
    AsyncClassifierClient,
    BundleClassifier,
    ClassifierBackend,
    ClassifierBadResponse,
    ClassifierClient,
    ClassifierError,
    ClassifierTimeout,
    ClassifierUnavailable,
)
from serving.schemas import ClassifyResponse
from tests.support.fake_classifier import FakeClassifier


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_classify_returns_validated_results_in_order(classifier_server: FakeClassifier) -> None:
    with ClassifierClient(classifier_server.url, timeout=5.0, api_key="secret") as client:
        out = client.classify(["what is 2+2", "prove that sqrt 2 is irrational", "debug this stack trace"])
    assert isinstance(out, ClassifyResponse)
    assert [r.tier for r in out.results] == ["simple", "reasoning", "complex"]
    assert out.results[2].task == "code"
    assert classifier_server.last_auth == "Bearer secret"


def test_one_connection_is_reused(classifier_server: FakeClassifier) -> None:
    client = ClassifierClient(classifier_server.url, timeout=5.0)
    client.classify(["a"])
    pool = client._http._transport._pool  # type: ignore[attr-defined]
    first = list(pool.connections)
    for _ in range(5):
        client.classify(["b"])
    assert len(pool.connections) == 1
    assert pool.connections[0] is first[0]
    client.close()


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("slow", ClassifierTimeout),
        ("error", ClassifierUnavailable),
        ("not_json", ClassifierBadResponse),
        ("bad_schema", ClassifierBadResponse),
    ],
)
def test_faults_raise_typed_errors(
    classifier_server: FakeClassifier, mode: str, error: type[Exception]
) -> None:
    classifier_server.mode = mode
    timeout = 0.2 if mode == "slow" else 5.0  # only the slow mode should time out, even on a loaded box
    with ClassifierClient(classifier_server.url, timeout=timeout) as client, pytest.raises(error) as info:
        client.classify(["hello"])
    assert isinstance(info.value, ClassifierError)


def test_unreachable_service_is_unavailable() -> None:
    with (
        ClassifierClient(f"http://127.0.0.1:{_closed_port()}") as client,
        pytest.raises(ClassifierUnavailable),
    ):
        client.classify(["hello"])


def test_wrong_result_count_is_a_bad_response() -> None:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        one = FakeClassifier.result_for("x", 0.9)
        return httpx.Response(200, json={"model": {"name": "m"}, "results": [one]})

    client = ClassifierClient("http://svc", transport=httpx.MockTransport(handler))
    with client, pytest.raises(ClassifierBadResponse, match="1 results for 2 texts"):
        client.classify(["a", "b"])


def test_401_is_a_bad_response_not_unavailable() -> None:
    import httpx

    transport = httpx.MockTransport(lambda r: httpx.Response(401, json={"detail": "missing API key"}))
    with (
        ClassifierClient("http://svc", transport=transport) as client,
        pytest.raises(ClassifierBadResponse, match="401"),
    ):
        client.classify(["a"])


def test_rejects_a_bare_string_and_empty_input(classifier_server: FakeClassifier) -> None:
    with ClassifierClient(classifier_server.url, timeout=5.0) as client:
        with pytest.raises(TypeError):
            client.classify("hello")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            client.classify([])


def test_async_client_same_contract(classifier_server: FakeClassifier) -> None:
    async def run() -> tuple[str, type[Exception] | None]:
        async with AsyncClassifierClient(classifier_server.url, timeout=0.5) as client:
            ok = await client.classify(["derive the formula"])
            classifier_server.mode = "slow"
            try:
                await client.classify(["x"])
            except ClassifierError as exc:
                return ok.results[0].tier, type(exc)
            return ok.results[0].tier, None

    tier, error = asyncio.run(run())
    assert tier == "reasoning"
    assert error is ClassifierTimeout


class _FakePrediction:
    def __init__(self, result: dict[str, Any]) -> None:
        self._result = result

    def to_result(self) -> dict[str, Any]:
        return self._result


class _FakeBundle:
    def __init__(self, broken: bool = False) -> None:
        self.manifest = {"name": "fake-bundle"}
        self.broken = broken

    def predict(self, texts: Sequence[str]) -> list[_FakePrediction]:
        if self.broken:
            raise RuntimeError("onnx exploded")
        return [_FakePrediction(FakeClassifier.result_for(t, 0.8)) for t in texts]


def test_bundle_adapter_has_the_same_protocol() -> None:
    adapter = BundleClassifier(_FakeBundle())  # type: ignore[arg-type]
    assert isinstance(adapter, ClassifierBackend)
    out = adapter.classify(["prove it", "hi"])
    assert [r.tier for r in out.results] == ["reasoning", "simple"]
    assert out.model.name == "fake-bundle"
    with pytest.raises(ClassifierUnavailable, match="onnx exploded"):
        BundleClassifier(_FakeBundle(broken=True)).classify(["x"])  # type: ignore[arg-type]
