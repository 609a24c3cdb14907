"""Robustness against a real server: schema-driven fuzzing and 1,000 concurrent mixed requests.

Numbers for the closing note are printed (`-s`): `.venv/bin/pytest -q -s -p no:cacheprovider
tests/serving/app/test_fuzz_and_load.py`."""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from tests.support.server import Server, start_server

# Schemathesis' default policy, plus 413: whatever the schema forbids must be rejected with a 4xx.
# 413 is the body-size cap, checked on bytes before parsing; a text over `maxLength` written with
# JSON escapes (6 bytes a character, 12 for a surrogate pair) can reach it before the 422 does.
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
            }
        }
    }
)

# Deterministic examples in `make test` (a red CI must be reproducible); set TIERROUTE_FUZZ_RANDOM=1
# to explore new ones.
DERANDOMIZE = os.environ.get("TIERROUTE_FUZZ_RANDOM", "") not in ("1", "true")

# Routes mounted from another area (the policy router, only with --policy): fuzzed for 5xx only.
FOREIGN = r"^/v1/chat/completions$"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_schema_fuzzing_finds_no_server_error_and_no_contract_drift(
    server: Server, mode: GenerationMode
) -> None:
    """Schemathesis over /openapi.json: no 5xx; statuses, content types and bodies match the schema."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=FUZZ_CONFIG)
    own = schema.exclude(path_regex=FOREIGN)
    paths = {op.ok().path for op in own.get_all_operations()}  # type: ignore[union-attr]
    assert {"/v1/classify", "/v1/gate", "/v1/models", "/healthz", "/readyz", "/metrics"} <= paths
    assert {"/admin/reload", "/admin/status"} <= paths
    server_errors: list[int] = []

    @given(case=own.as_strategy(mode))
    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(timeout=30)
        if response.status_code >= 500:
            server_errors.append(response.status_code)
        # A gate item's `json_schema` must itself be a valid JSON Schema, which OpenAPI cannot state:
        # an object that is not one is a documented 422, so "valid data accepted" does not hold there.
        excluded = [positive_data_acceptance] if case.operation.path == "/v1/gate" else None
        case.validate_response(response, excluded_checks=excluded)

    check()
    print(f"\nschema fuzzing ({mode.value}): {len(server_errors)} server errors (5xx) over {sorted(paths)}")
    assert server_errors == []

    foreign = schema.include(path_regex=FOREIGN)
    if not list(foreign.get_all_operations()):
        return

    @given(case=foreign.as_strategy(mode))
    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        suppress_health_check=list(HealthCheck),
    )
    def no_server_error(case: schemathesis.Case) -> None:
        case.call_and_validate(timeout=30, checks=[not_a_server_error])

    no_server_error()


def _mixed_bodies(n: int, seed: int = 0) -> list[tuple[object, bool]]:
    rng = random.Random(seed)
    words = ["route", "this", "request", "to", "the", "model", "please", "summarise", "prove", "code"]
    invalid: list[object] = [
        {},
        {"texts": []},
        {"texts": [""]},
        {"texts": [1, 2]},
        {"text": None},
        {"text": "a", "texts": ["b"]},
        {"texts": ["x"] * 300},
        [],
        "just a string",
        {"texts": [{"nested": True}]},
    ]
    out: list[tuple[object, bool]] = []
    for i in range(n):
        if i % 2 == 0:
            k = rng.randint(1, 2)
            texts = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(k)]
            out.append(({"texts": texts} if k > 1 else {"text": texts[0]}, True))
        else:
            out.append((rng.choice(invalid), False))
    return out


def test_thousand_concurrent_mixed_requests(server: Server) -> None:
    bodies = _mixed_bodies(1000)

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(client.post("/v1/classify", json=body) for body, _ in bodies))

    responses = asyncio.run(run())
    statuses = [r.status_code for r in responses]
    assert not [s for s in statuses if s >= 500]
    for (body, valid), resp in zip(bodies, responses, strict=True):
        if valid:
            assert resp.status_code == 200, resp.text
            n = len(body["texts"]) if "texts" in body else 1  # type: ignore[operator,index]
            assert len(resp.json()["results"]) == n
        else:
            assert resp.status_code in (413, 422), (body, resp.status_code)
            assert isinstance(resp.json()["detail"], str)


def _poisoned(i: int) -> bytes:
    """1 in 100 requests: an input that once failed the server or its batch neighbours."""
    return [
        b'{"text": "x \\ud800"}',
        b'{"texts": ["ok", "\xed\xa0\x80"]}',
        b'{"texts": [' + b"[" * 3000 + b"]" * 3000 + b"]}",
        b'{"text": "' + b"\\udfff" * 2000 + b'"}',
        b"\xff\xfe not even UTF-8",
    ][i % 5]


def test_thousand_concurrent_requests_with_one_percent_poisoned(server: Server) -> None:
    rng = random.Random(1)
    words = ["route", "this", "request", "to", "the", "model", "please", "summarise", "prove", "code"]
    plan: list[tuple[bytes, bool]] = []
    for i in range(1000):
        if i % 100 == 37:
            plan.append((_poisoned(i // 100), False))
        else:
            texts = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(rng.randint(1, 3))]
            plan.append((json.dumps({"texts": texts}).encode(), True))

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            return await asyncio.gather(
                *(client.post("/v1/classify", content=b, headers=headers) for b, _ in plan)
            )

    responses = asyncio.run(run())
    good = [r for (_, ok), r in zip(plan, responses, strict=True) if ok]
    bad = [r for (_, ok), r in zip(plan, responses, strict=True) if not ok]
    failed = [r.status_code for r in good if r.status_code != 200]
    print(f"\n1,000 concurrent, 1% poisoned: good-request failures {len(failed)} of {len(good)}")
    assert failed == []
    assert all(r.status_code in (200, 422) for r in bad), [r.status_code for r in bad]


def test_chat_endpoint_fuzzing_finds_no_server_error(serving_bundle: Path, tmp_path: Path) -> None:
    """With a policy (fake providers on 127.0.0.1), /v1/chat/completions is fuzzed for 5xx only: its
    contract belongs to the router (serving/router/http.py); the rest of the app must stay sound."""
    import yaml

    from tests.support.fake_provider import FakeProvider
    from tests.support.policies import policy_dict

    with FakeProvider() as provider:
        policy = policy_dict(provider, "http://127.0.0.1:9", tmp_path / "ledger.sqlite")
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
        srv = start_server(serving_bundle, tmp_path / "srv", args=["--policy", str(policy_path)])
        try:
            schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json", config=FUZZ_CONFIG)
            chat = schema.include(path_regex=FOREIGN)
            assert list(chat.get_all_operations())
            server_errors: list[int] = []

            @given(case=chat.as_strategy())
            @settings(
                max_examples=60,
                deadline=None,
                database=None,
                derandomize=DERANDOMIZE,
                suppress_health_check=list(HealthCheck),
            )
            def no_server_error(case: schemathesis.Case) -> None:
                response = case.call(timeout=60)
                if response.status_code >= 500:
                    server_errors.append(response.status_code)

            no_server_error()
            print(f"\nchat fuzzing: {len(server_errors)} server errors (5xx) in 60 examples")
            assert server_errors == []
        finally:
            srv.stop()
