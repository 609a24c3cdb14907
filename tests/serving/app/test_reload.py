"""Hot reload against a real server: no request lost under load, broken candidates refused, polling."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.support.server import Server, start_server


def release(bundle: Path, root: Path, version: str) -> Path:
    """A copy of `bundle` that reports `version` (bundle.json is not among the hashed files)."""
    target = root / "releases" / version
    shutil.copytree(bundle, target)
    manifest = json.loads((target / "bundle.json").read_text())
    manifest["version"] = version
    (target / "bundle.json").write_text(json.dumps(manifest, indent=2))
    return target


def point(link: Path, target: Path) -> None:
    """Atomically repoint a symlink (how a deploy would switch releases)."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


@pytest.fixture()
def releases(serving_bundle: Path, tmp_path: Path) -> dict[str, Path]:
    out = {v: release(serving_bundle, tmp_path, v) for v in ("1", "2")}
    bad = release(serving_bundle, tmp_path, "3-corrupt")
    data = (bad / "model.onnx").read_bytes()
    (bad / "model.onnx").write_bytes(data[: len(data) // 2])  # a half-copied model file
    out["bad"] = bad
    out["current"] = tmp_path / "current"
    point(out["current"], out["1"])
    return out


def test_reload_under_load_loses_nothing_and_refuses_a_corrupt_bundle(
    releases: dict[str, Path], tmp_path: Path
) -> None:
    server = start_server(releases["current"], tmp_path / "srv")
    try:
        asyncio.run(_reload_under_load(server, releases))
        _corrupt_candidate_is_refused(server, releases)
    finally:
        server.stop()
    assert "refused" in server.log()


async def _reload_under_load(server: Server, releases: dict[str, Path]) -> None:
    stop = asyncio.Event()
    seen: list[tuple[float, float, int, str | None]] = []  # (sent, answered, status, version)

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

        async def worker(i: int) -> None:
            while not stop.is_set():
                sent = time.monotonic()
                resp = await client.post(
                    "/v1/classify", json={"texts": [f"request {i} at {sent}", "second text"]}
                )
                version = resp.json()["model"]["version"] if resp.status_code == 200 else None
                seen.append((sent, time.monotonic(), resp.status_code, version))

        workers = [asyncio.create_task(worker(i)) for i in range(8)]
        while len(seen) < 20:
            await asyncio.sleep(0.05)
        point(releases["current"], releases["2"])
        reload_sent = time.monotonic()
        reload = await client.post("/admin/reload")
        reloaded_at = time.monotonic()
        assert reload.status_code == 200, reload.text
        assert reload.json()["status"] == "loaded"
        assert reload.json()["model"]["version"] == "2"
        count = len(seen)
        while len(seen) < count + 20:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*workers)

    assert all(status == 200 for _, _, status, _ in seen), [s for s in seen if s[2] != 200]
    assert {v for _, _, _, v in seen} == {"1", "2"}
    assert all(v == "2" for sent, _, _, v in seen if sent > reloaded_at)
    assert all(v == "1" for _, answered, _, v in seen if answered < reload_sent)


def _corrupt_candidate_is_refused(server: Server, releases: dict[str, Path]) -> None:
    point(releases["current"], releases["bad"])
    resp = httpx.post(f"{server.url}/admin/reload", timeout=60)
    assert resp.status_code == 409
    body = resp.json()
    assert body["status"] == "refused"
    assert "model.onnx" in body["reason"]
    assert body["model"]["version"] == "2"  # still serving the last good one
    served = httpx.post(f"{server.url}/v1/classify", json={"text": "still there?"})
    assert served.status_code == 200 and served.json()["model"]["version"] == "2"
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["ready"] is True
    assert ready["last_reload"]["status"] == "refused"
    assert "model.onnx" not in ready["last_reload"]["reason"]  # public: no paths, no error text
    assert str(releases["bad"]) not in json.dumps(ready)
    status = httpx.get(f"{server.url}/admin/status").json()  # the details, behind the key if one is set
    assert "model.onnx" in status["last_reload"]["reason"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'tierroute_model_reloads_total{outcome="refused"} 1.0' in metrics
    assert 'version="2"' in metrics


def test_polling_swaps_to_a_new_release(releases: dict[str, Path], tmp_path: Path) -> None:
    server = start_server(releases["current"], tmp_path / "srv", args=["--reload-interval", "0.3"])
    try:
        assert httpx.get(f"{server.url}/v1/models").json()["model"]["version"] == "1"
        point(releases["current"], releases["2"])
        deadline = time.monotonic() + 30
        version = "1"
        while version != "2" and time.monotonic() < deadline:
            time.sleep(0.2)
            version = httpx.get(f"{server.url}/v1/models").json()["model"]["version"]
        assert version == "2"
        assert httpx.post(f"{server.url}/v1/classify", json={"text": "hi"}).json()["model"]["version"] == "2"
    finally:
        server.stop()
