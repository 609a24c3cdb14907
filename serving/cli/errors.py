"""The one way a tierroute command reports a usage or input error: `raise fail("...")`.

Prints `error: <message>` on stderr (red on a terminal) and returns the `typer.Exit` to raise, so
every command in every package words and codes its errors alike (2 = bad input unless told).
"""

from __future__ import annotations

import typer

EXIT_BAD_INPUT = 2


def fail(message: object, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print `error: <message>` on stderr; return the `typer.Exit(code)` for the caller to raise."""
    typer.echo(f"{typer.style('error:', fg='red')} {message}", err=True)
    return typer.Exit(code)
