"""Command-line area of `evals` and the `tierroute` root app: `commands` holds eval/drift/calibrate,
`root` composes every package's command areas (only `evals` may import both other packages).
"""

from evals.cli.root import build_app, main

__all__ = ["build_app", "main"]
