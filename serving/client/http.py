"""HTTP clients for the classify service: `ClassifierClient` (sync) and `AsyncClassifierClient`.

Job: call `POST /v1/classify` and hand back a validated `ClassifyResponse`, or raise one of the
typed errors of `serving.client.contract`.

Trade-offs:
- The default timeout is 50 ms, and it is a total deadline for the call: a router must not wait
  longer for a classifier than the classification is worth. httpx's own timeouts are per phase
  (connect, write, read), so the sync client shrinks each phase to the time left through
  httpcore's `trace` hook, and the async client wraps the call in `asyncio.timeout`. That deadline
  is the only difference between the two: both share `_ClientCore` (body, headers, error mapping,
  parsing) and differ only in the call itself.
- One `httpx.Client` / `AsyncClient` per client object, reused for every call (keep-alive
  connection pooling); close it with `close()` / `aclose()` or a `with` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

import httpx
from pydantic import ValidationError

from serving.client.contract import ClassifierBadResponse, ClassifierTimeout, ClassifierUnavailable
from serving.schemas import ClassifyResponse

__all__ = ["AsyncClassifierClient", "ClassifierClient"]

CLASSIFY_PATH = "/v1/classify"
DEFAULT_TIMEOUT_S = 0.05


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def _payload(texts: Sequence[str]) -> bytes:
    if isinstance(texts, str):
        raise TypeError("classify() takes a sequence of texts, not a single string")
    if not texts:
        raise ValueError("classify() needs at least one text")
    return json.dumps({"texts": list(texts)}).encode("utf-8")


def _parse(response: httpx.Response, n_texts: int) -> ClassifyResponse:
    """Status + body -> ClassifyResponse, or the typed error that says what was wrong."""
    status = response.status_code
    if status >= 500:
        raise ClassifierUnavailable(f"classifier answered HTTP {status}: {response.text[:200]}")
    if status != 200:
        raise ClassifierBadResponse(f"classifier answered HTTP {status}: {response.text[:200]}")
    try:
        parsed = ClassifyResponse.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        kind = "not JSON" if first.get("type") == "json_invalid" else f"schema mismatch at {where or 'body'}"
        raise ClassifierBadResponse(f"classifier response is {kind}: {first.get('msg')}") from exc
    if len(parsed.results) != n_texts:
        raise ClassifierBadResponse(f"classifier returned {len(parsed.results)} results for {n_texts} texts")
    return parsed


def _enforce_deadline(request: httpx.Request, deadline: float) -> None:
    """Make the per-phase httpx timeouts one total deadline.

    httpcore reads `request.extensions["timeout"]` when each phase starts (connect, write, read)
    and announces each phase to the `trace` extension first; we shrink every phase's timeout to
    the time left, so connect + send + wait never add up to more than `timeout`.
    """
    timeouts = request.extensions.get("timeout")
    if not isinstance(timeouts, dict):
        return

    def shrink(event: str, info: dict[str, Any]) -> None:
        if event.endswith(".started"):
            left = deadline - time.monotonic()
            # CPython's socket timeouts poll() in whole milliseconds, rounding UP: floor the time
            # left to whole ms, or every phase could overshoot the deadline by up to 1 ms.
            left = math.floor(left * 1000) / 1000 if left > 0.002 else max(left, 1e-4)
            for phase in ("connect", "read", "write", "pool"):
                timeouts[phase] = left

    request.extensions["trace"] = shrink


def _timeout(timeout: float) -> httpx.Timeout:
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    return httpx.Timeout(timeout)


H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class _ClientCore(Generic[H]):
    """What both clients share: where to send, what to send, how errors and answers are read.
    Each client says only how it opens its httpx client (`_open`) and how it calls it."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._url = self.base_url + CLASSIFY_PATH
        self._headers = _headers(api_key)
        self._http: H = self._open(_timeout(timeout), transport)

    def _open(self, timeout: httpx.Timeout, transport: Any) -> H:
        raise NotImplementedError

    @contextlib.contextmanager
    def _typed_errors(self) -> Iterator[None]:
        """httpx's (and asyncio's) timeout and transport errors as this module's typed errors."""
        try:
            yield
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise ClassifierTimeout(f"classifier did not answer within {self.timeout * 1000:.0f} ms") from exc
        except httpx.TransportError as exc:
            raise ClassifierUnavailable(f"classifier unreachable at {self.base_url}: {exc}") from exc


class ClassifierClient(_ClientCore[httpx.Client]):
    """Synchronous client: `ClassifierClient("http://127.0.0.1:8000").classify(["..."])`."""

    enforces_timeout = True
    """The HTTP timeout bounds each call, so a router need not add a deadline thread."""

    def _open(self, timeout: httpx.Timeout, transport: httpx.BaseTransport | None) -> httpx.Client:
        return httpx.Client(timeout=timeout, transport=transport)

    def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        request = self._http.build_request("POST", self._url, content=_payload(texts), headers=self._headers)
        _enforce_deadline(request, time.monotonic() + self.timeout)
        with self._typed_errors():
            response = self._http.send(request)
        return _parse(response, len(texts))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ClassifierClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClassifierClient(_ClientCore[httpx.AsyncClient]):
    """Async client with the same contract; reuse one instance per event loop."""

    def _open(self, timeout: httpx.Timeout, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout, transport=transport)

    async def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        body = _payload(texts)
        with self._typed_errors():
            async with asyncio.timeout(self.timeout):  # a total deadline, not per phase
                response = await self._http.post(self._url, content=body, headers=self._headers)
        return _parse(response, len(texts))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClassifierClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
