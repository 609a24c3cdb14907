"""Registers the runtime commands (serve, route, policy, bench http) on the root app."""

from __future__ import annotations

import typer


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Runtime commands are added here as they land."""
