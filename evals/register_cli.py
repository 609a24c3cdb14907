"""Registers the evaluation commands (eval, drift, calibrate) on the root app.

Job: thin typer wrappers: parse options, call `evals.*_cmd`, print a short summary, map user
errors to exit status 2 with a one-line message on stderr (no traceback). Heavy modules (numpy
stats, pandas, onnxruntime, mlflow) are imported inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)


def _fail(exc: BaseException, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code)


def drift_cmd(
    reference: Annotated[
        str,
        typer.Option(
            "--reference",
            help="What 'normal' looks like: a model version (models:/NAME@ALIAS, models:/NAME/N or a bundle "
            "folder) carrying reference statistics from training, a reference_stats.npz, or a data file "
            "(CSV/JSONL/Parquet with `text`, labels optional; needs --model).",
        ),
    ],
    current: Annotated[
        Path,
        typer.Option(
            "--current",
            help="The new set: a data file with `text` (label columns named like the heads enable performance "
            "and label-shift checks) or a prediction log written by the service (JSONL).",
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model scoring the sets (bundle folder or models:/ URI); default: the reference's."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default reports/drift/<timestamp>).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Family-wise significance level over all checks.")] = 0.01,
    correction: Annotated[str, typer.Option(help="Multiple-testing correction: holm, bonferroni or none.")] = "holm",
    permutations: Annotated[int, typer.Option(help="Permutations for the embedding and macro-F1 tests.")] = 2000,
    max_embedding_rows: Annotated[int, typer.Option(help="Rows per side in the embedding test (subsampled).")] = 500,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 1000,
    min_psi: Annotated[float, typer.Option(help="Smallest PSI that counts as drift for mix checks.")] = 0.02,
    min_ks: Annotated[float, typer.Option(help="Smallest KS distance that counts as token-length drift.")] = 0.05,
    min_f1_drop: Annotated[float, typer.Option(help="Smallest macro-F1 drop that counts as performance drift.")] = 0.01,
    checks: Annotated[
        str,
        typer.Option(
            help="Comma-separated checks to run: performance, label_shift, prediction_mix, confidence, embedding, "
            "token_length, language."
        ),
    ] = "performance,label_shift,prediction_mix,confidence,embedding,token_length,language",
    reference_split: Annotated[
        str | None,
        typer.Option(help="Split of a reference data file to use ('auto': `test` when the file has a split column)."),
    ] = "auto",
    current_split: Annotated[str | None, typer.Option(help="Only these rows of the current file (by `split`).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for subsampling, permutations and bootstrap.")] = 0,
    mlflow: Annotated[bool, typer.Option(help="Log the report and numbers to MLflow.")] = True,
) -> None:
    """Test whether a new set drifted from the reference: performance (labelled sets), label shift, input drift
    (embeddings, token length, language) and prediction drift, with p-values corrected for multiple tests.

    Writes report.md, report.html, summary.json and plots. Exit status: 0 no drift, 1 drift, 2 bad input.
    """
    from evals.drift import DriftConfig
    from evals.drift_cmd import BAD_INPUT, run_drift

    try:
        config = DriftConfig(
            alpha=alpha,
            correction=correction,  # type: ignore[arg-type]
            n_permutations=permutations,
            max_embedding_rows=max_embedding_rows,
            n_boot=bootstrap,
            min_psi=min_psi,
            min_ks=min_ks,
            min_f1_drop=min_f1_drop,
            checks=tuple(c.strip() for c in checks.split(",") if c.strip()),
            seed=seed,
        )
        run = run_drift(
            reference,
            current,
            model=model,
            out_dir=out_dir,
            config=config,
            reference_split=reference_split,
            current_split=current_split,
            log_to_mlflow=mlflow,
            echo=lambda m: err.print(m),
        )
    except (*BAD_INPUT, ValueError) as exc:
        raise _fail(exc) from None
    table = Table(title="drift checks")
    for col in ("check", "effect", "p", "adjusted p", "decision"):
        table.add_column(col)
    for c in run.result.checks:
        decision = "[red]DRIFT[/red]" if c.drift else ("significant<floor" if c.significant else "ok")
        table.add_row(c.name, f"{c.effect_name}={c.effect:.3g}", f"{c.p_value:.3g}", f"{c.adjusted_p:.3g}", decision)
    out.print(table)
    verdict = "[red]DRIFT[/red]" if run.result.drift else "[green]no drift[/green]"
    out.print(f"{verdict} (alpha {alpha:g}, {correction}); report: {run.report['html']}")
    if run.tracking_error:
        err.print(f"[yellow]warning:[/yellow] {run.tracking_error}")
    elif run.run_id:
        out.print(f"MLflow run {run.run_id}")
    raise typer.Exit(run.result.exit_code)


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Add `eval`, `drift` and `calibrate` to the root app."""
    root.command("drift")(drift_cmd)
