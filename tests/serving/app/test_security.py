"""Security and robustness against real servers (issue #10): each test is one probe that used to
break the service, now asserted on outcome (no timing thresholds; timeouts are failure guards only).

Numbers for the closing note are printed (run with `-s` to see them):
`.venv/bin/pytest -q -s -p no:cacheprovider tests/serving/app/test_security.py`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.listener import Listener
from tests.support.ports import free_port
from tests.support.server import Server, start_server

pytestmark = pytest.mark.slow

GUARD_S = 60.0  # failure guard for a request that must come back (never a timing assertion)


def gate(server: Server, *items: dict[str, object], timeout: float = GUARD_S) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/gate", json={"items": list(items)}, timeout=timeout)


# --- D2: no remote $ref -------------------------------------------------------------------------


def test_gate_schemas_never_reach_out(server: Server) -> None:
    listener = Listener()
    url = f"http://127.0.0.1:{listener.port}"
    try:
        refused = [
            {"$ref": f"{url}/x"},
            {"properties": {"a": {"$ref": f"{url}/defs.json#/a"}}},
            {"$id": f"{url}/root.json", "$ref": "other.json"},  # relative to a remote base
            {"$dynamicRef": f"{url}/dyn"},
        ]
        for schema in refused:
            resp = gate(server, {"prompt": "p", "response": "{}", "json_schema": schema})
            assert resp.status_code == 422, (schema, resp.text)
            assert "not fetched" in resp.json()["detail"]
        # a remote $schema is only a dialect name: checked locally (or the default dialect), never fetched
        resp = gate(server, {"prompt": "p", "response": "{}", "json_schema": {"$schema": f"{url}/meta"}})
        assert resp.status_code in (200, 422), resp.text
        time.sleep(0.5)  # let a (wrong) connection attempt land before counting
    finally:
        listener.close()
    print(f"\nSSRF: outbound connections to the listener: {listener.connections}")
    assert listener.connections == 0


# --- D3: catastrophic regexes ---------------------------------------------------------------------

REDOS = "^(a+)+$"
EVIL = "a" * 5000 + "!"  # Python's backtracking `re` would not finish this in any lifetime


def test_catastrophic_patterns_answer_and_health_stays_live(server: Server) -> None:
    items = [
        {"prompt": "p", "response": json.dumps(EVIL), "json_schema": {"type": "string", "pattern": REDOS}},
        {
            "prompt": "p",
            "response": json.dumps({EVIL: 1}),
            "json_schema": {"patternProperties": {REDOS: {"type": "string"}}, "additionalProperties": False},
        },
        {
            "prompt": "p",
            "response": json.dumps({EVIL: 1}),
            "json_schema": {"propertyNames": {"pattern": REDOS}},
        },
    ]

    async def run() -> tuple[httpx.Response, list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=GUARD_S) as client:
            judged = asyncio.ensure_future(client.post("/v1/gate", json={"items": items}))
            health = [await client.get("/healthz") for _ in range(5)]
            return await judged, health

    judged, health = asyncio.run(run())
    assert all(h.status_code == 200 for h in health)
    assert judged.status_code == 200, judged.text
    assert [r["reasons"] for r in judged.json()["results"]] == [["schema_violation"]] * 3
    ok = gate(server, {"prompt": "p", "response": '"aaaa"', "json_schema": {"pattern": REDOS}})
    assert ok.json()["results"][0]["reasons"] == []  # RE2 still matches what the pattern means


def test_patterns_re2_cannot_run_are_refused_not_hung(server: Server) -> None:
    for schema in (
        {"pattern": "(?<=a)b"},
        {"pattern": "(a)\\1"},
        {"patternProperties": {"(?!x)": {}}},
        {"unevaluatedProperties": False, "patternProperties": {"^a": {}}},
    ):
        resp = gate(server, {"prompt": "p", "response": "{}", "json_schema": schema})
        assert resp.status_code == 422, (schema, resp.text)


# --- D5: recursion ----------------------------------------------------------------------------------


def _nested(key: str, depth: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for _ in range(depth):
        out = {key: out}
    return out


def test_recursive_and_deep_schemas_and_json_are_4xx_or_clean_failures(server: Server) -> None:
    for schema in ({"$ref": "#"}, _nested("not", 300), {"allOf": [{"$ref": "#"}]}, _nested("items", 900)):
        resp = gate(server, {"prompt": "p", "response": "[1]", "json_schema": schema})
        assert 400 <= resp.status_code < 500, resp.text
    deeper = '{"items":' * 5000 + "{}" + "}" * 5000  # deeper than Python's JSON parser recurses
    raw = '{"items": [{"prompt": "p", "response": "[1]", "json_schema": ' + deeper + "}]}"
    resp = httpx.post(
        f"{server.url}/v1/gate", content=raw, headers={"content-type": "application/json"}, timeout=GUARD_S
    )
    assert resp.status_code == 422, resp.text
    deep = "[" * 100_000 + "]" * 100_000
    resp = gate(server, {"prompt": "p", "response": deep, "expect_json": True})
    assert resp.status_code == 200 and resp.json()["results"][0]["reasons"] == ["invalid_json"]
    # a reference loop only some instances reach: a clean check failure, not a 500
    loop = {"properties": {"a": {"$ref": "#/properties/a"}}}
    resp = gate(server, {"prompt": "p", "response": '{"a": {"a": 1}}', "json_schema": loop})
    assert resp.status_code == 200 and resp.json()["results"][0]["reasons"] == ["schema_violation"]
    body = '{"text": ' + "[" * 50_000 + "]" * 50_000 + "}"
    resp = httpx.post(
        f"{server.url}/v1/classify",
        content=body,
        headers={"content-type": "application/json"},
        timeout=GUARD_S,
    )
    assert resp.status_code == 422


# --- D4: lone surrogates ------------------------------------------------------------------------------

POISON = (
    b'{"text": "x \\ud800"}',  # a JSON escape of half a UTF-16 pair
    b'{"texts": ["fine", "y \\udfff z"]}',
    b'{"text": "raw \xed\xa0\x80 bytes"}',  # the same code point as (invalid) UTF-8 bytes
)


def test_a_poisoned_text_never_fails_its_batch_neighbours(server: Server) -> None:
    good = [{"texts": [f"good request {i}", "route this please"]} for i in range(60)]

    async def run() -> tuple[list[httpx.Response], list[httpx.Response]]:
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(base_url=server.url, timeout=GUARD_S) as client:
            bad = [client.post("/v1/classify", content=p, headers=headers) for p in POISON * 3]
            fine = [client.post("/v1/classify", json=b) for b in good]
            out = await asyncio.gather(*bad, *fine)
            return list(out[: len(bad)]), list(out[len(bad) :])

    bad, fine = asyncio.run(run())
    assert [r.status_code for r in fine] == [200] * len(good)
    assert all(len(r.json()["results"]) == 2 for r in fine)
    # documented behaviour: lone surrogates are replaced by U+FFFD, the text is classified
    assert [r.status_code for r in bad] == [200] * len(bad), [r.text for r in bad]
    print(f"\npoisoned batch: good-request failures 0 of {len(good)} (poisoned requests answered too)")


# --- D6: a 500 keeps the connection usable -------------------------------------------------------------


@pytest.fixture(scope="module")
def boom_server(serving_bundle: Path) -> Iterator[str]:
    """The real app in uvicorn (in this process) with one extra route that raises."""
    import uvicorn

    from serving.app import create_app
    from serving.model.holder import ModelHolder
    from serving.model.source import LocalSource
    from serving.settings import ServeSettings

    holder = ModelHolder(LocalSource(serving_bundle), threads=1)
    holder.load_initial()
    app = create_app(ServeSettings(model=str(serving_bundle)), holder=holder)

    @app.get("/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("a bug")

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    srv.should_exit = True
    thread.join(timeout=15)


def _raw_exchange(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_an_unhandled_error_is_a_json_500_on_a_connection_that_stays_open(boom_server: str) -> None:
    port = int(boom_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD_S) as sock:
        first = _raw_exchange(sock, "/boom")
        assert first.startswith(b"HTTP/1.1 500")
        assert b'{"detail":"internal error"}' in first
        assert b"connection: close" not in first.lower()
        second = _raw_exchange(sock, "/healthz")  # same connection, like a client's keep-alive pool
        assert second.startswith(b"HTTP/1.1 200"), second
    metrics = httpx.get(f"{boom_server}/metrics").text
    assert 'status="500"' in metrics


# --- D7: abandoned work, bounded queue -----------------------------------------------------------------

LONG = " ".join(["route this long request to a suitable model after reading every word"] * 12)


@pytest.fixture(scope="module")
def small_queue_server(serving_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        serving_bundle, tmp_path_factory.mktemp("small-queue"), env={"TIERROUTE_MAX_QUEUE": "128"}
    )
    yield srv
    srv.stop()


async def _latency(client: httpx.AsyncClient, n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        resp = await client.post("/v1/classify", json={"text": "What is the capital of France?"})
        assert resp.status_code == 200
        best = min(best, time.perf_counter() - t)
    return best


def test_abandoned_requests_are_dropped_and_a_fresh_one_is_served(small_queue_server: Server) -> None:
    url = small_queue_server.url
    body = {"texts": [f"{i} {LONG}" for i in range(64)]}

    async def run() -> tuple[float, float, int]:
        async with httpx.AsyncClient(base_url=url, timeout=GUARD_S) as client:
            idle = await _latency(client)
        timeouts = 0
        async with httpx.AsyncClient(base_url=url, timeout=1.0) as impatient:
            results = await asyncio.gather(
                *(impatient.post("/v1/classify", json=body) for _ in range(12)), return_exceptions=True
            )
            timeouts = sum(isinstance(r, httpx.TimeoutException) for r in results)
        async with httpx.AsyncClient(base_url=url, timeout=GUARD_S) as client:
            fresh = await _latency(client, n=1)
        return idle, fresh, timeouts

    idle, fresh, timeouts = asyncio.run(run())
    assert timeouts >= 1  # the load really was abandoned
    status = httpx.get(f"{url}/admin/status").json()
    assert status["queue"]["queued_texts"] == 0
    assert status["queue"]["dropped"] >= 1  # abandoned requests left the queue instead of being run
    print(
        f"\nabandoned load: {timeouts} of 12 requests timed out; fresh request {fresh * 1000:.0f} ms vs idle "
        f"{idle * 1000:.0f} ms (ratio {fresh / idle:.1f}); dropped={status['queue']['dropped']} "
        f"aborted={status['queue']['aborted']}"
    )


def test_probe_scale_abandoned_load_leaves_the_default_server_responsive(server: Server) -> None:
    """The probe of issue #10 at its scale: 40 requests x 64 long texts, clients give up after 2 s."""
    body = {"texts": [f"{i} {LONG}" for i in range(64)]}

    async def run() -> tuple[list[float], float, list[object]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=GUARD_S) as client:
            idle = [await _latency(client, n=1) for _ in range(5)]
        async with httpx.AsyncClient(base_url=server.url, timeout=2.0) as impatient:
            results = await asyncio.gather(
                *(impatient.post("/v1/classify", json=body) for _ in range(40)), return_exceptions=True
            )
        async with httpx.AsyncClient(base_url=server.url, timeout=GUARD_S) as client:
            fresh = await _latency(client, n=1)
        return idle, fresh, list(results)

    idle, fresh, results = asyncio.run(run())
    timeouts = sum(isinstance(r, httpx.TimeoutException) for r in results)
    busy = sum(isinstance(r, httpx.Response) and r.status_code == 503 for r in results)
    served = sum(isinstance(r, httpx.Response) and r.status_code == 200 for r in results)
    assert timeouts + busy + served == 40  # nothing else: no 500, no reset
    status = httpx.get(f"{server.url}/admin/status").json()
    assert status["queue"]["queued_texts"] == 0
    idle_ms = sorted(idle)[len(idle) // 2] * 1000
    print(
        f"\nprobe-scale abandoned load (40 x 64 texts, 2 s client timeout): {timeouts} timed out, "
        f"{busy} got 503, "
        f"{served} served; fresh request {fresh * 1000:.0f} ms vs idle median {idle_ms:.0f} ms "
        f"(ratio {fresh * 1000 / idle_ms:.1f}); dropped={status['queue']['dropped']} "
        f"aborted={status['queue']['aborted']}"
    )


def test_a_full_queue_answers_503_with_retry_after(small_queue_server: Server) -> None:
    body = {"texts": [f"{i} {LONG}" for i in range(64)]}

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=small_queue_server.url, timeout=GUARD_S) as client:
            return await asyncio.gather(*(client.post("/v1/classify", json=body) for _ in range(8)))

    responses = asyncio.run(run())
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
            assert "queue full" in r.json()["detail"]


# --- D9: a tampered bundle.json ------------------------------------------------------------------------


def _reorder_tier_labels(folder: Path) -> None:
    manifest = json.loads((folder / "bundle.json").read_text())
    tier = next(h for h in manifest["heads"] if h["name"] == "tier")
    tier["labels"] = tier["labels"][::-1]
    (folder / "bundle.json").write_text(json.dumps(manifest, indent=2))


def test_reordered_labels_are_refused_on_load_and_on_reload(serving_bundle: Path, tmp_path: Path) -> None:
    from serving.model.bundle import Bundle, BundleError

    good = tmp_path / "good"
    bad = tmp_path / "bad"
    shutil.copytree(serving_bundle, good)
    shutil.copytree(serving_bundle, bad)
    _reorder_tier_labels(bad)
    bundle = Bundle.load(bad)  # the file hashes still match: only the self-check can tell
    with pytest.raises(BundleError, match="self-check"):
        bundle.self_check()
    with pytest.raises(RuntimeError, match="self-check"):
        start_server(bad, tmp_path / "refused", timeout=60)

    current = tmp_path / "current"
    current.symlink_to(good)
    server = start_server(current, tmp_path / "srv")
    try:
        before = httpx.post(f"{server.url}/v1/classify", json={"text": "Hi! How are you today?"}).json()
        current.unlink()
        current.symlink_to(bad)
        resp = httpx.post(f"{server.url}/admin/reload", timeout=GUARD_S)
        assert resp.status_code == 409 and "self-check" in resp.json()["reason"]
        after = httpx.post(f"{server.url}/v1/classify", json={"text": "Hi! How are you today?"}).json()
        assert after["results"] == before["results"]  # the old model keeps serving, labels intact
    finally:
        server.stop()


def test_a_version_1_bundle_gets_a_clear_error(serving_bundle: Path, tmp_path: Path) -> None:
    from serving.model.bundle import BundleError, read_manifest

    old = tmp_path / "old"
    shutil.copytree(serving_bundle, old)
    manifest = json.loads((old / "bundle.json").read_text())
    manifest["schema_version"] = 1
    manifest.pop("self_check")
    (old / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"schema_version 1.*re-export"):
        read_manifest(old)


# --- D10: public endpoints leak nothing ------------------------------------------------------------------


def test_public_endpoints_carry_no_paths(server: Server, serving_bundle: Path) -> None:
    ready = httpx.get(f"{server.url}/readyz").json()
    text = json.dumps(ready)
    assert str(serving_bundle) not in text and str(serving_bundle.parent) not in text
    assert ready["source"] == "local bundle folder"
    assert str(serving_bundle) in httpx.get(f"{server.url}/admin/status").json()["source"]
