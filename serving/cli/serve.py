"""`tierroute serve` (and the mounting of `tierroute bench http`, see `serving.cli.bench`).

Job: start the classify service under uvicorn (uvloop + httptools, one worker). `serve` loads the
model BEFORE starting uvicorn, so a missing model or unreachable registry without a cache is a
one-line error and exit code 2, not a traceback from inside the ASGI lifespan.

Trade-offs: one uvicorn worker per process (the model is shared by the inference threads; more
processes would each hold a copy and fight for the 2 cores). Options left unset fall back to
`TIERROUTE_*` environment variables (pydantic-settings), so containers configure by env alone.
"""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from serving.cli.bench import bench_http
from serving.cli.errors import fail as _fail

log = logging.getLogger("tierroute.serving")


def serve(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="models:/NAME@ALIAS, models:/NAME/VERSION or a bundle folder (env TIERROUTE_MODEL; default "
            "models:/tierroute-classifier@champion)",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="interface to bind (env TIERROUTE_HOST; default 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (env TIERROUTE_PORT; default 8000)")] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="ONNX Runtime intra-op threads per session (env TIERROUTE_THREADS; default 1)"),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="inference calls running at once (env TIERROUTE_WORKERS; default 2)")
    ] = None,
    batching: Annotated[
        bool | None,
        typer.Option(
            "--batching/--no-batching", help="merge concurrent requests (env TIERROUTE_BATCHING; default on)"
        ),
    ] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(help="most texts per ONNX call when batching (env TIERROUTE_MAX_BATCH; default 32)"),
    ] = None,
    batch_wait_ms: Annotated[
        float | None,
        typer.Option(help="how long a batch waits to fill, ms (env TIERROUTE_BATCH_WAIT_MS; default 0)"),
    ] = None,
    reload_interval_s: Annotated[
        float | None,
        typer.Option(
            "--reload-interval",
            help="poll the model source every N s, 0 = off (env TIERROUTE_RELOAD_INTERVAL_S)",
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI for models:/ (env TIERROUTE_TRACKING_URI / MLFLOW_TRACKING_URI)"
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="last-good bundle cache (env TIERROUTE_CACHE_DIR; default models/serving-cache)"),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="router policy YAML: also serve POST /v1/chat/completions (env TIERROUTE_POLICY)"),
    ] = None,
    gate_model: Annotated[
        str | None,
        typer.Option(
            help="gate bundle folder or models:/ URI: also serve POST /v1/gate (env TIERROUTE_GATE_MODEL)"
        ),
    ] = None,
    prediction_log: Annotated[
        Path | None,
        typer.Option(help="append every classification to this JSONL file (env TIERROUTE_PREDICTION_LOG)"),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error (env TIERROUTE_LOG_LEVEL; default info)")
    ] = None,
) -> None:
    """Serve the classifier over HTTP: /v1/classify, /healthz, /readyz, /v1/models, /metrics, /admin/reload.

    The API key, size limits and the other settings come from TIERROUTE_* environment variables
    (TIERROUTE_API_KEY, TIERROUTE_MAX_TEXTS, TIERROUTE_MAX_CHARS, TIERROUTE_LOG_TEXTS, ...).
    """
    # Over 60 lines: mostly typer option declarations; the body builds the settings and calls run_server.
    from pydantic import ValidationError

    from serving.settings import ServeSettings

    overrides: dict[str, Any] = {
        "model": model,
        "host": host,
        "port": port,
        "threads": threads,
        "workers": workers,
        "batching": batching,
        "max_batch": max_batch,
        "batch_wait_ms": batch_wait_ms,
        "reload_interval_s": reload_interval_s,
        "tracking_uri": tracking_uri,
        "cache_dir": cache_dir,
        "policy": policy,
        "gate_model": gate_model,
        "prediction_log": prediction_log,
        "log_level": log_level,
    }
    try:
        settings = ServeSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(f"invalid settings: {problems}") from None
    run_server(settings)


def run_server(settings: Any) -> None:
    """Load the model, then run uvicorn until interrupted; exits non-zero on any start-up failure."""
    import uvicorn

    from serving import extensions
    from serving.app import create_app
    from serving.model.holder import ModelHolder, ModelLoadError
    from serving.model.source import ModelSourceError, create_source

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.api_key is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "binding %s without an API key: anyone who can reach it can classify and reload", settings.host
        )
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # MLflow's retry chatter; the outcome is logged
    problem = extensions.check_policy(settings)
    if problem is not None:
        raise _fail(problem)
    try:
        source = create_source(
            settings.model, tracking_uri=settings.tracking_uri, cache_dir=settings.cache_dir
        )
        holder = ModelHolder(source, threads=settings.threads)
        holder.load_initial()
    except (ModelLoadError, ModelSourceError) as exc:
        raise _fail(f"cannot start: {exc}") from None
    app = create_app(settings, holder=holder)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        lifespan="on",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=round(settings.keep_alive_s),
    )
    server = uvicorn.Server(config)
    freeze_startup_heap()
    server.run()
    if not server.started:
        raise _fail(
            f"the server did not start on {settings.host}:{settings.port} (see the log above)", code=1
        )


def freeze_startup_heap() -> None:
    """Collect once, then move everything alive (modules, the app, the loaded model) out of the
    garbage collector's view (`gc.freeze`), so its full collections only walk per-request garbage.

    Measured (evals/RESULTS.md "HTTP on 2 cores"): a full collection of the start-up heap (~74,000 tracked
    objects: FastAPI, pydantic, onnxruntime, the bundle) took ~210 ms on a busy 2-core box, ~0 ms
    after the freeze, and it used to land inside a request. Frozen objects are still freed by
    reference counting: the first model goes away on a hot reload (checked); a model loaded later is
    collected normally.
    """
    gc.collect()
    gc.freeze()


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Add `serve` to the root app and `http` to the bench group."""
    root.command("serve")(serve)
    bench.command("http")(bench_http)


def main() -> None:
    """`python -m serving.cli.serve ...` without the root app (used by tests and containers)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
    bench = typer.Typer(no_args_is_help=True)
    register(app, bench)
    app.add_typer(bench, name="bench")
    app()


if __name__ == "__main__":
    main()
