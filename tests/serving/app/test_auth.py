"""API-key protection against a real server started with TIERROUTE_API_KEY."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import Server, start_server

KEY = "s3cret-test-key"


@pytest.fixture(scope="module")
def keyed(serving_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"TIERROUTE_API_KEY": KEY, "TIERROUTE_LOG_TEXTS": "true"}
    srv = start_server(serving_bundle, tmp_path_factory.mktemp("keyed"), env=env)
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/v1/classify", {"text": "hi"}), ("GET", "/v1/models", None), ("POST", "/admin/reload", None)],
)
def test_protected_endpoints_need_the_key(keyed: Server, method: str, path: str, body: object) -> None:
    url = f"{keyed.url}{path}"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": KEY}):
        resp = httpx.request(method, url, json=body, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert "API key" in resp.json()["detail"]
        assert KEY not in resp.text
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        resp = httpx.request(method, url, json=body, headers=headers, timeout=60)
        assert resp.status_code == 200, resp.text


def test_probes_and_metrics_stay_open_and_schema_declares_security(keyed: Server) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert httpx.get(f"{keyed.url}{path}").status_code == 200
    spec = httpx.get(f"{keyed.url}/openapi.json").json()
    assert spec["paths"]["/v1/classify"]["post"]["security"]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_raw_texts_are_logged_only_when_opted_in(keyed: Server) -> None:
    text = "opt-in logged text 4242"
    resp = httpx.post(f"{keyed.url}/v1/classify", json={"text": text}, headers={"X-API-Key": KEY})
    assert resp.status_code == 200
    assert text in keyed.log()  # TIERROUTE_LOG_TEXTS=true here; test_extensions checks the default
