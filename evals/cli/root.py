"""The `tierroute` command: the composition root that mounts every package's commands.

Job: build the one typer app users run. It lives in `evals` because `evals` is the only package
allowed to import both `serving` and `pipelines`. Each command area (`<package>/cli/<area>.py`) has a
`register(root, bench)` function, called below in a fixed order (it is the order `--help` lists);
`promote` gets the evaluation gate it uses passed in explicitly. Command modules import their
heavy dependencies inside the command body, so
`tierroute --help` and `tierroute serve` work in a serving-only install (no torch, no sklearn).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from evals.cli import commands as evals_cli
from pipelines.cli import data as data_cli
from pipelines.cli import gate as gate_cli
from pipelines.cli import registry as registry_cli
from pipelines.cli import train as train_cli
from serving.cli import serve as serve_cli
from serving.cli.env import set_offline_env
from serving.router import cli as router_cli

if TYPE_CHECKING:
    from pipelines.cli.registry import EvalSetRequest
    from pipelines.registry import PromotionCheck


def promotion_checks(request: EvalSetRequest) -> Sequence[PromotionCheck]:
    """The evaluation gate of `promote --eval-set` (imported when used: it needs numpy/pandas)."""
    from evals.eval.promotion import promotion_checks as checks

    return checks(request)


def same_rows_check(ctx: Any) -> Sequence[Any]:
    """`promote`'s like-for-like comparison when the versions were trained on different data."""
    from evals.eval.promotion import same_rows_check as check

    return check(ctx)


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
    train_cli.register(app, bench)
    data_cli.register(app, bench)
    registry_cli.register(app, bench, eval_checks=promotion_checks, same_rows=same_rows_check)
    evals_cli.register(app, bench)
    router_cli.register(app, bench)
    serve_cli.register(app, bench)
    gate_cli.register(app, bench)
    app.add_typer(bench, name="bench")
    return app


def main() -> None:
    set_offline_env()
    build_app()()


if __name__ == "__main__":
    main()
