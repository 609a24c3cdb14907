"""Opt-in prediction log: one JSON line per classified text or routed request, readable by `tierroute drift`
and `tierroute data from-log`.

Job: record what the service predicted (timestamp, model identity, per-head labels and
probabilities, complexity, confidence, token count, truncation) so this week's traffic can be
checked for drift against the model's reference statistics without storing anyone's text. The
text itself is written only when `include_text=True` (then `tierroute drift` can also re-embed it
for the embedding and language checks).

Record (format version 2; version 1 records, the same without `id`, `route` and `text_hash`, still
parse):
    {"kind": "tierroute.prediction", "v": 2, "ts": "2025-01-01T12:00:00.123Z",
     "model": {"name": ..., "version": ..., "alias": ...},
     "labels": {"tier": "simple", "task": "chat"},
     "probs": {"tier": {"simple": 0.8, ...}, "task": {...}},
     "complexity": 0.1, "confidence": 0.8, "tokens": 12, "truncated": false, "text": "..."}

A request routed by the policy router (`/v1/chat/completions`) adds its outcome (`routed_record`):
    "id": "<32 hex, the x-tierroute-request-id header>",
    "route": {"decided_by": "classifier", "rule": "ask-classifier", "cascade": "loop",
              "stage1": "cheap", "gate": {"ok": false, "reasons": ["refusal"], "p_acceptable": null},
              "escalated": true, "final": "strong"},
    "text_hash": "sha256:<hex>"   (when the text itself is not logged)
`route.gate` is null when stage 1 did not answer (provider failure: `escalated` true, no verdict) or
there is no cascade; `probs`/`labels` are empty when the classifier was not consulted or failed.
User feedback (`POST /v1/feedback`) appends
    {"kind": "tierroute.feedback", "v": 2, "ts": ..., "id": "<request id>", "verdict": "good" | "bad"}

Text: only with `include_text=True` (the service's `TIERROUTE_PREDICTION_LOG_TEXTS=1`); otherwise a
routed record carries `text_hash` = "sha256:" + plain SHA-256 of the UTF-8 text, or "hmac-sha256:" +
HMAC-SHA-256 keyed with `TIERROUTE_LOG_HASH_KEY` when that is set. Plain by default because it is
reproducible and joinable (dedupe repeats, match a text the operator holds elsewhere) with no secret to
manage; it is pseudonymisation, not anonymisation: a short, guessable text ("hi") can be found by
hashing guesses. Set the key to stop that (a reader of the log without the key cannot test guesses).
Hashed rows cannot be trained on; `data from-log` counts and skips them.

Trade-offs: JSONL, not SQLite: appends are one `write` under a lock (microseconds), the file can be
tailed, rotated by the usual tools, shipped anywhere, and read by pandas. Thread-safe within one
process (the service runs one worker); several processes must log to separate files. Lines are
flushed per batch, not fsynced: a crash can lose the last batch, never corrupt earlier lines (the
reader skips a torn last line). Probabilities are rounded to 6 decimals to keep lines short.
Stdlib only: serving stays free of pandas/numpy here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

KIND = "tierroute.prediction"
FEEDBACK_KIND = "tierroute.feedback"
VERSION = 2
READABLE_VERSIONS = (1, 2)
PROBS_SUFFIX = "_probs"
HASH_KEY_ENV = "TIERROUTE_LOG_HASH_KEY"
VERDICTS = ("good", "bad")


class PredictionLogError(Exception):
    """The log file cannot be opened or a line is not a prediction record."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_from_result(
    result: Mapping[str, Any],
    model: Mapping[str, Any],
    *,
    text: str | None = None,
    ts: str | None = None,
) -> dict[str, Any]:
    """One log record from one HTTP-contract result dict (`tier`, `tier_probs`, ..., `tokens`)."""
    labels: dict[str, str] = {}
    probs: dict[str, dict[str, float]] = {}
    for key, value in result.items():
        if key.endswith(PROBS_SUFFIX) and isinstance(value, Mapping):
            head = key[: -len(PROBS_SUFFIX)]
            probs[head] = {str(k): round(float(v), 6) for k, v in value.items()}
            if head in result and result[head] is not None:
                labels[head] = str(result[head])
    rec: dict[str, Any] = {
        "kind": KIND,
        "v": VERSION,
        "ts": ts or _now(),
        "model": {k: (None if v is None else str(v)) for k, v in model.items()},
        "labels": labels,
        "probs": probs,
    }
    for key in ("complexity", "confidence", "p_weak_ok"):
        if result.get(key) is not None:
            rec[key] = round(float(result[key]), 6)
    if result.get("tokens") is not None:
        rec["tokens"] = int(result["tokens"])
    if result.get("truncated") is not None:
        rec["truncated"] = bool(result["truncated"])
    if text is not None:
        rec["text"] = text
    return rec


def text_hash(text: str, key: str | None = None) -> str:
    """`sha256:<hex>` of the text, or `hmac-sha256:<hex>` keyed with `key` (see the module doc)."""
    data = text.encode("utf-8")
    if key:
        return "hmac-sha256:" + hmac.new(key.encode("utf-8"), data, hashlib.sha256).hexdigest()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def routed_record(
    request_id: str,
    route: Mapping[str, Any],
    *,
    result: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    text: str | None = None,
    hashed: str | None = None,
    ts: str | None = None,
) -> dict[str, Any]:
    """One record for a routed request: the classifier's outputs (if any), the outcome, text or hash."""
    rec = record_from_result(result or {}, model or {}, text=text, ts=ts)
    rec["id"] = request_id
    rec["route"] = dict(route)
    if text is None and hashed is not None:
        rec["text_hash"] = hashed
    return rec


def feedback_record(request_id: str, verdict: str, ts: str | None = None) -> dict[str, Any]:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {"kind": FEEDBACK_KIND, "v": VERSION, "ts": ts or _now(), "id": request_id, "verdict": verdict}


class PredictionLog:
    """Append-only JSONL prediction log; one instance per process, safe to share between threads."""

    def __init__(self, path: Path, include_text: bool = False) -> None:
        self.path = Path(path)
        self.include_text = include_text
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
        self.records_written = 0

    def _open(self) -> IO[str]:
        if self._fh is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("a", encoding="utf-8")
            except OSError as exc:
                raise PredictionLogError(f"cannot open prediction log {self.path}: {exc}") from exc
        return self._fh

    def write(
        self,
        model: Mapping[str, Any],
        results: Sequence[Mapping[str, Any]],
        texts: Sequence[str] | None = None,
    ) -> int:
        """Append one record per result (texts only if `include_text`); returns the count written."""
        if texts is not None and len(texts) != len(results):
            raise ValueError(f"{len(texts)} texts for {len(results)} results")
        ts = _now()
        lines = []
        for i, result in enumerate(results):
            text = texts[i] if (self.include_text and texts is not None) else None
            rec = record_from_result(result, model, text=text, ts=ts)
            lines.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
        return self._append(lines)

    def _append(self, lines: Sequence[str]) -> int:
        if not lines:
            return 0
        payload = "\n".join(lines) + "\n"
        with self._lock:
            fh = self._open()
            fh.write(payload)
            fh.flush()
            self.records_written += len(lines)
        return len(lines)

    def write_routed(
        self,
        request_id: str,
        route: Mapping[str, Any],
        text: str,
        *,
        result: Mapping[str, Any] | None = None,
        model: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one routed-request record (text only if `include_text`, else its hash)."""
        rec = routed_record(
            request_id,
            route,
            result=result,
            model=model,
            text=text if self.include_text else None,
            hashed=None if self.include_text else text_hash(text, os.environ.get(HASH_KEY_ENV) or None),
        )
        return self._append([json.dumps(rec, ensure_ascii=False, separators=(",", ":"))])

    def write_feedback(self, request_id: str, verdict: str) -> int:
        """Append one feedback record for an earlier routed request."""
        rec = feedback_record(request_id, verdict)
        return self._append([json.dumps(rec, ensure_ascii=False, separators=(",", ":"))])

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_prediction_log(path: Path) -> bool:
    """True when the first non-empty line of `path` is a prediction (or feedback) record."""
    try:
        with Path(path).open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
                    return isinstance(rec, dict) and rec.get("kind") in (KIND, FEEDBACK_KIND)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return False


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """Yield every record (predictions, routed requests, feedback) in file order.

    A torn (unterminated, unparsable) final line is skipped; any other bad line, an unknown kind or
    an unknown format version raises."""
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise PredictionLogError(f"cannot read prediction log {path}: {exc}") from exc
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                if not line.endswith("\n"):
                    return  # only the final line can lack a newline: a write torn by a crash
                raise PredictionLogError(f"{path}:{lineno}: not a JSON prediction record") from None
            if not isinstance(rec, dict) or rec.get("kind") not in (KIND, FEEDBACK_KIND):
                raise PredictionLogError(f"{path}:{lineno}: not a tierroute prediction record")
            if rec.get("v") not in READABLE_VERSIONS:
                raise PredictionLogError(
                    f"{path}:{lineno}: record format v{rec.get('v')}, this reader reads "
                    + ", ".join(f"v{v}" for v in READABLE_VERSIONS)
                )
            yield rec


def read_prediction_log(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the prediction records (classified texts and routed requests); feedback records are
    skipped. A torn final line is skipped, any other bad line raises (see `read_log`)."""
    for rec in read_log(path):
        if rec["kind"] == KIND:
            yield rec
