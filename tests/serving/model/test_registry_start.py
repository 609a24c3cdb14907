"""Start-up from the MLflow registry, from the last-good cache when it is unreachable, or a clear exit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port, serve_command, server_env, start_server

URI = "models:/tierroute-classifier@champion"


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_registry_then_cache_when_the_registry_is_down(
    serving_bundle: Path, tracking_uri: str, tmp_path: Path
) -> None:
    from pipelines.registry import TrainingRecord, log_and_register

    registered = log_and_register(
        TrainingRecord(run_name="serving-test"), serving_bundle, alias="champion", tracking_uri=tracking_uri
    )
    cache = tmp_path / "serving-cache"
    args = ["--cache-dir", str(cache)]

    online = start_server(URI, tmp_path / "online", args=[*args, "--tracking-uri", tracking_uri])
    try:
        ready = httpx.get(f"{online.url}/readyz").json()
        assert ready["origin"] == "registry" and ready["stale"] is False
        assert ready["model"] == {
            "name": "tierroute-classifier",
            "version": str(registered.version),
            "alias": "champion",
        }
        body = httpx.post(f"{online.url}/v1/classify", json={"text": "hello"}).json()
        assert body["model"]["alias"] == "champion"
    finally:
        online.stop()
    assert list(cache.glob("tierroute-classifier/last-good@champion.json"))

    down = unreachable()
    offline = start_server(URI, tmp_path / "offline", args=[*args, "--tracking-uri", down])
    try:
        ready = httpx.get(f"{offline.url}/readyz").json()
        assert ready["ready"] is True
        assert ready["origin"] == "cache" and ready["stale"] is True
        assert "registry unavailable" in ready["reason"]
        assert down not in json.dumps(ready)  # public: no tracking URI, no registry error text
        assert "registry unavailable for" in httpx.get(f"{offline.url}/admin/status").json()["reason"]
        assert ready["model"]["version"] == str(registered.version)
        resp = httpx.post(f"{offline.url}/v1/classify", json={"texts": ["still works", "offline"]})
        assert resp.status_code == 200 and len(resp.json()["results"]) == 2
        assert 'origin="cache"' in httpx.get(f"{offline.url}/metrics").text
    finally:
        offline.stop()
    assert "last good cached bundle" in offline.log()


def test_cached_bundle_serves_without_mlflow_store(serving_bundle: Path, tmp_path: Path) -> None:
    """A pre-seeded cache (air-gapped install) is enough when the registry cannot be reached."""
    from serving.model.source import seed_cache

    cache = tmp_path / "cache"
    seed_cache(cache, URI, serving_bundle, version="7")
    server = start_server(
        URI, tmp_path / "srv", args=["--cache-dir", str(cache), "--tracking-uri", unreachable()]
    )
    try:
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["stale"] is True and ready["model"]["version"] == "7"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("model", "extra", "needle"),
    [
        (URI, ["--tracking-uri", "UNREACHABLE"], "no cached bundle"),
        ("/no/such/bundle", [], "not a bundle folder"),
        ("models:/only-a-name", [], "expected models:/<name>@<alias>"),
    ],
)
def test_no_model_exits_with_a_clear_message(
    tmp_path: Path, model: str, extra: list[str], needle: str
) -> None:
    args = [unreachable() if a == "UNREACHABLE" else a for a in extra]
    proc = subprocess.run(
        [*serve_command(model, free_port(), [*args, "--cache-dir", str(tmp_path / "empty")])],
        cwd=tmp_path,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot start")
    assert "Traceback" not in proc.stderr + proc.stdout


def test_calibrated_threshold_tag_is_served_and_picked_up_on_reload(
    serving_bundle: Path, tracking_uri: str, tmp_path: Path
) -> None:
    """`tierroute calibrate` tags the version; the service announces that threshold without a new bundle."""
    import json

    import mlflow

    from pipelines.registry import TrainingRecord, log_and_register
    from serving.model.source import RegistrySource

    registered = log_and_register(
        TrainingRecord(run_name="calibrated"), serving_bundle, alias="champion", tracking_uri=tracking_uri
    )
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    cache = tmp_path / "serving-cache"
    source = RegistrySource(URI, tracking_uri=tracking_uri, cache_dir=cache)
    plain = source.resolve()
    assert plain.routing is None

    def tag(threshold: float) -> None:
        value = {"score": "complexity", "strong_if_at_least": threshold, "objective": "target_share"}
        client.set_model_version_tag(
            "tierroute-classifier", str(registered.version), "routing_threshold", json.dumps(value)
        )

    tag(0.4)
    first = source.resolve()
    assert first.routing is not None and first.routing["strong_if_at_least"] == 0.4
    assert first.fingerprint != plain.fingerprint  # the reload poller sees a new calibration

    client.set_model_version_tag(
        "tierroute-classifier", str(registered.version), "routing_threshold", "{oops"
    )
    assert source.resolve().routing is None  # a malformed tag is ignored, the bundle still serves

    tag(0.4)
    server = start_server(
        URI, tmp_path / "srv", args=["--cache-dir", str(cache), "--tracking-uri", tracking_uri]
    )
    try:
        body = httpx.post(f"{server.url}/v1/classify", json={"text": "hello"}).json()
        assert body["model"]["routing"]["strong_if_at_least"] == 0.4
        tag(0.7)
        reload = httpx.post(f"{server.url}/admin/reload", timeout=60)
        assert reload.status_code == 200, reload.text
        body = httpx.post(f"{server.url}/v1/classify", json={"text": "hello"}).json()
        assert body["model"]["routing"] == {
            "score": "complexity",
            "strong_if_at_least": 0.7,
            "objective": "target_share",
        }
    finally:
        server.stop()
    pointer = json.loads((cache / "tierroute-classifier" / "last-good@champion.json").read_text())
    assert pointer["routing"]["strong_if_at_least"] == 0.7  # an offline restart keeps the calibration
