"""The `tierroute` command: the composition root that mounts every package's commands.

Job: build the one typer app users run. It lives in `evals` because `evals` is the only package
allowed to import both `serving` and `pipelines`. Each package contributes a `register(root, bench)`
function; command modules import their heavy dependencies inside the command body, so
`tierroute --help` and `tierroute serve` work in a serving-only install (no torch, no sklearn).
"""

from __future__ import annotations

import os

import typer

from evals import register_cli as evals_register
from pipelines import cli as pipelines_cli
from pipelines import gate_cli
from serving import cli as serving_cli
from serving import serve_cli
from serving.router import cli as router_cli

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "TOKENIZERS_PARALLELISM": "false",
}


def _set_offline_env() -> None:
    """No hub look-ups and no telemetry, ever: this tool must not wait on the network."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def build_app() -> typer.Typer:
    """Assemble the root app; separate from `main` so tests can drive it with CliRunner."""
    app = typer.Typer(
        name="tierroute",
        help=(
            "tierroute: decide which LLM should answer a request.\n\n"
            "Train and version a request classifier (tier + task) and a response gate, export them to "
            "ONNX, track them in MLflow, serve them over HTTP, route requests by policy, and check for drift."
        ),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    bench = typer.Typer(
        help="Rerunnable latency/throughput benchmarks that print p50/p99 tables.", no_args_is_help=True
    )
    pipelines_cli.register(app, bench)
    serving_cli.register(app, bench)
    evals_register.register(app, bench)
    router_cli.register(app, bench)
    serve_cli.register(app, bench)
    gate_cli.register(app, bench)
    app.add_typer(bench, name="bench")
    return app


def main() -> None:
    _set_offline_env()
    build_app()()


if __name__ == "__main__":
    main()
