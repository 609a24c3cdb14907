"""`tierroute bench http`: load-test running services from separate processes.

The load generator (`serving.cli.loadgen`) prefers `wrk` (C, epoll: little CPU taken from the
server); without it, a multi-process Python generator stands in (it costs more CPU, so its numbers
are lower bounds).
"""

from __future__ import annotations

from typing import Annotated

import typer

from serving.cli import loadgen
from serving.cli.errors import fail as _fail


def bench_http(
    url: Annotated[
        list[str],
        typer.Option(help="base URL of a running service; repeat to compare servers (e.g. batching on/off)"),
    ] = ["http://127.0.0.1:8000"],  # noqa: B006
    concurrency: Annotated[str, typer.Option(help="comma-separated concurrency levels")] = "1,8,32",
    duration: Annotated[float, typer.Option(help="seconds measured per level")] = 10.0,
    warmup: Annotated[float, typer.Option(help="seconds of unmeasured load before each level")] = 2.0,
    texts_per_request: Annotated[int, typer.Option(help="texts in each request body")] = 1,
    rounds: Annotated[
        int,
        typer.Option(
            help="repeat every level this many times; servers take turns and swap order each round, and a "
            "second table gives medians and ratios to the first --url (the baseline)"
        ),
    ] = 1,
    tool: Annotated[
        str, typer.Option(help="load generator: auto (wrk if installed), wrk or python")
    ] = "auto",
    api_key: Annotated[
        str | None, typer.Option(envvar="TIERROUTE_API_KEY", help="API key to send (env TIERROUTE_API_KEY)")
    ] = None,
) -> None:
    """Load-test running services with ~64-token texts: p50/p99 latency and requests/s per concurrency.

    Starts no server. Load comes from separate processes (wrk, or Python processes without it).
    """
    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
        if not levels or min(levels) < 1:
            raise ValueError
    except ValueError:
        raise _fail(
            f"--concurrency must be positive integers separated by commas, got {concurrency!r}"
        ) from None
    if tool not in ("auto", "wrk", "python"):
        raise _fail(f"--tool must be auto, wrk or python, got {tool!r}")
    if duration <= 0 or warmup < 0 or texts_per_request < 1 or rounds < 1:
        raise _fail("--duration must be > 0, --warmup >= 0, --texts-per-request >= 1, --rounds >= 1")
    try:
        rows = loadgen.run_benchmark(
            url,
            levels,
            duration=duration,
            warmup=warmup,
            texts_per_request=texts_per_request,
            tool=tool,
            api_key=api_key,
            echo=lambda m: typer.echo(m, err=True),
            rounds=rounds,
        )
    except loadgen.BenchError as exc:
        raise _fail(str(exc), code=1) from None
    typer.echo(loadgen.format_table(rows))
    if len(url) > 1 or rounds > 1:
        typer.echo("")
        typer.echo(loadgen.format_ratios(rows))
