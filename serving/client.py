"""Python clients for the classify service, plus an in-process adapter with the same shape.

Job: call `POST /v1/classify` and hand back a validated `ClassifyResponse`, or raise one of three
typed errors a router can act on: `ClassifierTimeout`, `ClassifierUnavailable` (cannot connect, or
the server answered 5xx) and `ClassifierBadResponse` (not JSON, wrong shape, wrong result count,
or a 4xx such as a wrong API key). All derive from `ClassifierError`, so "anything went wrong ->
fall back to rules" is one `except`.

Trade-offs:
- The default timeout is 50 ms, and it is a total deadline for the call: a router must not wait
  longer for a classifier than the classification is worth. httpx's own timeouts are per phase
  (connect, write, read), so the sync client shrinks each phase to the time left through
  httpcore's `trace` hook, and the async client wraps the call in `asyncio.timeout`.
- One `httpx.Client` / `AsyncClient` per client object, reused for every call (keep-alive
  connection pooling); close it with `close()` / `aclose()` or a `with` block.
- `BundleClassifier` runs a local bundle in process behind the same `classify(texts)` protocol,
  so a router takes either without caring which. Importing this module does not import
  onnxruntime; the bundle module is imported only when a bundle is loaded from a path.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx
from pydantic import ValidationError

from serving.schemas import ClassifyResponse, ClassifyResult, ModelRef, RoutingThreshold

if TYPE_CHECKING:
    from serving.bundle import Bundle

__all__ = [
    "AsyncClassifierBackend",
    "AsyncClassifierClient",
    "BundleClassifier",
    "ClassifierBackend",
    "ClassifierBadResponse",
    "ClassifierClient",
    "ClassifierError",
    "ClassifierTimeout",
    "ClassifierUnavailable",
]

CLASSIFY_PATH = "/v1/classify"
DEFAULT_TIMEOUT_S = 0.05


class ClassifierError(Exception):
    """Anything that kept the classifier from answering usefully."""


class ClassifierTimeout(ClassifierError):
    """No answer within the timeout."""


class ClassifierUnavailable(ClassifierError):
    """Could not connect, or the service answered with a 5xx."""


class ClassifierBadResponse(ClassifierError):
    """The service answered, but not with a usable classify response."""


@runtime_checkable
class ClassifierBackend(Protocol):
    """What a router needs from a classifier: texts in, one result per text out, in order."""

    def classify(self, texts: Sequence[str]) -> ClassifyResponse: ...


@runtime_checkable
class AsyncClassifierBackend(Protocol):
    """The async form of `ClassifierBackend`."""

    async def classify(self, texts: Sequence[str]) -> ClassifyResponse: ...


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


class ClassifierClient:
    """Synchronous client: `ClassifierClient("http://127.0.0.1:8000").classify(["..."])`."""

    enforces_timeout = True
    """The HTTP timeout bounds each call, so a router need not add a deadline thread."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._url = self.base_url + CLASSIFY_PATH
        self._headers = _headers(api_key)
        self._http = httpx.Client(timeout=_timeout(timeout), transport=transport)

    def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        body = _payload(texts)
        request = self._http.build_request("POST", self._url, content=body, headers=self._headers)
        _enforce_deadline(request, time.monotonic() + self.timeout)
        try:
            response = self._http.send(request)
        except httpx.TimeoutException as exc:
            raise ClassifierTimeout(f"classifier did not answer within {self.timeout * 1000:.0f} ms") from exc
        except httpx.TransportError as exc:
            raise ClassifierUnavailable(f"classifier unreachable at {self.base_url}: {exc}") from exc
        return _parse(response, len(texts))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ClassifierClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClassifierClient:
    """Async client with the same contract; reuse one instance per event loop."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        api_key: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._url = self.base_url + CLASSIFY_PATH
        self._headers = _headers(api_key)
        self._http = httpx.AsyncClient(timeout=_timeout(timeout), transport=transport)

    async def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        body = _payload(texts)
        try:
            async with asyncio.timeout(self.timeout):  # a total deadline, not per phase
                response = await self._http.post(self._url, content=body, headers=self._headers)
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise ClassifierTimeout(f"classifier did not answer within {self.timeout * 1000:.0f} ms") from exc
        except httpx.TransportError as exc:
            raise ClassifierUnavailable(f"classifier unreachable at {self.base_url}: {exc}") from exc
        return _parse(response, len(texts))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClassifierClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class BundleClassifier:
    """In-process adapter: a loaded bundle behind the `ClassifierBackend` protocol.

    Errors from the bundle (a broken model, unexpected outputs) surface as `ClassifierError`
    subclasses, like the HTTP client's, so callers handle one family.
    """

    def __init__(self, bundle: Bundle | str | Path, threads: int = 1) -> None:
        if isinstance(bundle, str | Path):
            from serving.bundle import Bundle  # onnxruntime only when a bundle is actually loaded

            bundle = Bundle.load(Path(bundle), threads=threads)
        self.bundle = bundle
        version = bundle.manifest.get("version")
        self.model_ref = ModelRef(
            name=str(bundle.manifest.get("name", "bundle")),
            version=version,
            alias=None,
            routing=RoutingThreshold.from_manifest(bundle.manifest),
        )

    def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        if isinstance(texts, str):
            raise TypeError("classify() takes a sequence of texts, not a single string")
        try:
            predictions = self.bundle.predict(list(texts))
            results = [ClassifyResult.model_validate(p.to_result()) for p in predictions]
        except ValidationError as exc:
            raise ClassifierBadResponse(f"bundle output does not fit the classify contract: {exc}") from exc
        except Exception as exc:  # a broken model must read as "classifier unavailable", not crash a router
            raise ClassifierUnavailable(f"bundle {self.model_ref.name} failed: {exc}") from exc
        if len(results) != len(texts):
            raise ClassifierBadResponse(f"bundle returned {len(results)} results for {len(texts)} texts")
        return ClassifyResponse(model=self.model_ref, results=results)

    async def aclassify(self, texts: Sequence[str]) -> ClassifyResponse:
        """Off the event loop: inference is CPU work."""
        return await asyncio.to_thread(self.classify, texts)


def result_dict(result: ClassifyResult) -> dict[str, Any]:
    """A result as a plain dict, extra heads included (for traces and logs)."""
    return result.model_dump()
