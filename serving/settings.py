"""Every knob of `tierroute serve`, in one pydantic-settings object (env prefix `TIERROUTE_`).

Job: read, validate and document the service's configuration once; the CLI overrides fields
from its options, the app reads nothing else. Trade-offs:
- Defaults are what measured best on a 2-core box for the default (dynamic int8) bundle (evals/RESULTS.md
  "HTTP on 2 cores"): two inference calls at a time, one ONNX Runtime thread each (2 workers x 1 thread).
  An int8 bundle runs one text per call (its activation scales depend on the batch), so two calls
  in parallel use both cores: 321 req/s at concurrency 8 against 205 for 1 worker x 2 threads, and a
  lower p99 at concurrency 1 (8.5 vs 8.9 ms), quiet box, same run. An fp32 bundle batches instead
  (micro-batching merges whatever queues behind a call); `--workers 1 --threads 2` suits it for a
  lone request (~10 ms instead of ~14). They are also safe to expose: raw
  request text is never logged unless `log_texts` is set, and a non-loopback host without an API
  key only logs a warning (refusing would break container set-ups behind a gateway).
- Size limits are per request (texts and total characters) and turned into a body-size cap, so a
  huge body is refused before it is parsed.
- Overload is bounded (SECURITY.md): at most `max_queue` texts wait for inference (503 with
  `Retry-After` beyond), a classify request gives up after `request_timeout_s` (503), and work
  whose client disconnected is dropped. Gate JSON Schemas are capped by size and depth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_URI = "models:/tierroute-classifier@champion"
DEFAULT_CACHE_DIR = Path("models/serving-cache")


class ServeSettings(BaseSettings):
    """Configuration of the classify service; every field can be set as `TIERROUTE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="TIERROUTE_", extra="ignore", validate_default=True)

    host: str = Field(default="127.0.0.1", description="interface to bind")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    model: str = Field(
        default=DEFAULT_MODEL_URI,
        description="`models:/<name>@<alias>`, `models:/<name>/<version>` or a local bundle folder",
    )
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI for models:/ (default: MLFLOW_TRACKING_URI, else mlruns/mlflow.db)",
    )
    cache_dir: Path = Field(
        default=DEFAULT_CACHE_DIR,
        description="where the last good registry bundle is cached for offline starts",
    )
    threads: int = Field(default=1, ge=1, le=64, description="ONNX Runtime intra-op threads per session")
    workers: int = Field(default=2, ge=1, le=64, description="inference calls running at once (pool size)")
    batching: bool = Field(default=True, description="merge concurrent requests into one ONNX call")
    max_batch: int = Field(default=32, ge=1, le=1024, description="most texts merged into one ONNX call")
    batch_wait_ms: float = Field(
        default=0.0,
        ge=0.0,
        le=1000.0,
        description="how long a batch waits for more texts (0 = take what is queued)",
    )
    max_texts: int = Field(default=256, ge=1, description="most texts in one request (413 above)")
    max_chars: int = Field(
        default=500_000, ge=1, description="most characters in one request, all texts (413 above)"
    )
    max_queue: int = Field(
        default=2048,
        ge=1,
        description="most texts waiting for inference; a request that would exceed it gets 503 + "
        "Retry-After (one request is always admitted into an empty queue)",
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="deadline of one classify request (queueing + inference); past it: 503 + Retry-After",
    )
    retry_after_s: int = Field(default=1, ge=1, le=3600, description="Retry-After seconds sent with 503s")
    gate_schema_max_bytes: int = Field(
        default=64 * 1024, ge=64, description="largest json_schema accepted by /v1/gate (compact JSON bytes)"
    )
    gate_schema_max_depth: int = Field(
        default=32, ge=2, le=256, description="deepest json_schema nesting accepted by /v1/gate"
    )
    api_key: SecretStr | None = Field(
        default=None, description="require this key (Bearer or X-API-Key) on /v1 and /admin"
    )
    reload_interval_s: float = Field(
        default=0.0, ge=0.0, description="poll the model source this often and hot-swap on change (0 = off)"
    )
    keep_alive_s: float = Field(
        default=65.0,
        gt=0,
        description="idle keep-alive before the server closes a connection; longer than clients' pools "
        "(httpx keeps idle connections 5 s) so a reused connection is never closed under a request",
    )
    log_texts: bool = Field(
        default=False, description="log raw request texts at info level (off: never; debug logs counts only)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="log level")
    access_log: bool = Field(default=False, description="uvicorn access log lines (paths only, never bodies)")
    prediction_log: Path | None = Field(
        default=None, description="append every classification to this JSONL file"
    )
    prediction_log_texts: bool = Field(default=False, description="include raw texts in the prediction log")
    policy: Path | None = Field(
        default=None, description="router policy YAML: enables POST /v1/chat/completions"
    )
    gate_model: str | None = Field(
        default=None, description="gate bundle folder or `models:/` URI: enables /v1/gate"
    )

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must be a `models:/` URI or a bundle folder")
        return value.strip()

    @property
    def max_body_bytes(self) -> int:
        """Body-size cap derived from the text limits: 6 bytes per char covers JSON `\\uXXXX` escapes."""
        return self.max_chars * 6 + self.max_texts * 16 + 64 * 1024

    @property
    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None
