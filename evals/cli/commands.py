"""Evaluation commands: `tierroute eval`, `drift`, `calibrate` and `bench drift`.

Job: thin typer wrappers: parse options, call `evals.<stage>.run`, print a short summary, map user
errors to exit status 2 with a one-line message on stderr (no traceback). Heavy modules (numpy
stats, pandas, onnxruntime, mlflow) are imported inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from serving.cli.errors import fail as _fail

out = Console()
err = Console(stderr=True)


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
            help="The new set: a data file with `text` (label columns named like the heads enable "
            "performance "
            "and label-shift checks) or a prediction log written by the service (JSONL).",
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model scoring the sets (bundle folder or models:/ URI); default: the reference's.",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default reports/drift/<timestamp>).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Family-wise significance level over all checks.")] = 0.01,
    correction: Annotated[
        str, typer.Option(help="Multiple-testing correction: holm, bonferroni or none.")
    ] = "holm",
    permutations: Annotated[
        int, typer.Option(help="Permutations for the embedding and macro-F1 tests.")
    ] = 2000,
    max_embedding_rows: Annotated[
        int, typer.Option(help="Rows per side in the embedding test (subsampled).")
    ] = 500,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 1000,
    min_psi: Annotated[float, typer.Option(help="Smallest PSI that counts as drift for mix checks.")] = 0.02,
    min_ks: Annotated[
        float, typer.Option(help="Smallest KS distance that counts as token-length drift.")
    ] = 0.05,
    min_f1_drop: Annotated[
        float, typer.Option(help="Smallest macro-F1 drop that counts as performance drift.")
    ] = 0.01,
    checks: Annotated[
        str,
        typer.Option(
            help="Comma-separated checks to run: performance, label_shift, prediction_mix, confidence, "
            "embedding, "
            "token_length, language."
        ),
    ] = "performance,label_shift,prediction_mix,confidence,embedding,token_length,language",
    reference_split: Annotated[
        str | None,
        typer.Option(
            help="Split of a reference data file to use ('auto': `test` when the file has a split column)."
        ),
    ] = "auto",
    current_split: Annotated[
        str | None, typer.Option(help="Only these rows of the current file (by `split`).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for subsampling, permutations and bootstrap.")] = 0,
    mlflow: Annotated[bool, typer.Option(help="Log the report and numbers to MLflow.")] = True,
) -> None:
    """Test whether a new set drifted from the reference: performance (labelled sets), label shift,
    input drift (embeddings, token length, language) and prediction drift, with p-values corrected
    for multiple tests.

    Writes report.md, report.html, summary.json and plots. Exit status: 0 no drift, 1 drift, 2 bad input.
    """
    # Over 60 lines: mostly typer option declarations; the body is parse -> run_drift -> print.
    from evals.drift.checks import DriftConfig
    from evals.drift.run import BAD_INPUT, run_drift

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
        table.add_row(
            c.name, f"{c.effect_name}={c.effect:.3g}", f"{c.p_value:.3g}", f"{c.adjusted_p:.3g}", decision
        )
    out.print(table)
    verdict = "[red]DRIFT[/red]" if run.result.drift else "[green]no drift[/green]"
    out.print(f"{verdict} (alpha {alpha:g}, {correction}); report: {run.report['html']}")
    if run.tracking_error:
        err.print(f"[yellow]warning:[/yellow] {run.tracking_error}")
    elif run.run_id:
        out.print(f"MLflow run {run.run_id}")
    raise typer.Exit(run.result.exit_code)


def eval_cmd(
    model: Annotated[
        str, typer.Option("--model", help="Bundle folder or models:/NAME@ALIAS / models:/NAME/N.")
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Labelled CSV/JSONL/Parquet with `text` and label columns named like the model's heads. "
            "Optional "
            "outcome columns (weak_score+strong_score, weak_correct+strong_correct, or weak_ok) add routing "
            "value.",
        ),
    ],
    slice_: Annotated[
        list[str] | None,
        typer.Option(
            "--slice", help="Column to break metrics down by (repeatable; default: `source` if present)."
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Only rows whose `split` column has this value (e.g. test).")
    ] = None,
    router: Annotated[
        str, typer.Option(help="Router score for routing value: complexity, HEAD:LABEL or not:HEAD:LABEL.")
    ] = "complexity",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default reports/eval/<timestamp>).")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed for the bootstrap.")] = 0,
    mlflow: Annotated[
        bool, typer.Option(help="Log the report and metrics to MLflow, linked to the version.")
    ] = True,
) -> None:
    """Score a model on a labelled set: per-head accuracy, macro-F1, per-class metrics and calibration
    error with bootstrap 95% intervals, per-slice tables, confusion/reliability plots, and routing
    value (APGR) when the set carries per-model outcomes. Exit status 2 on bad input."""
    # Over 60 lines: mostly typer option declarations; the body is parse -> run_eval -> print.
    from evals.eval.run import run_eval
    from evals.io.models import ModelError
    from evals.io.tables import InputError

    if bootstrap < 100:
        raise _fail(ValueError("--bootstrap must be >= 100"))
    try:
        run = run_eval(
            model,
            data,
            slices=slice_,
            split=split,
            router=router,
            out_dir=out_dir,
            n_boot=bootstrap,
            seed=seed,
            log_to_mlflow=mlflow,
            echo=lambda m: err.print(m),
        )
    except (InputError, ModelError, ValueError) as exc:
        raise _fail(exc) from None
    table = Table(title=f"{run.model.label} on {data.name} ({run.n_rows} rows, 95% CI)")
    for col in ("head", "n", "accuracy", "macro-F1", "ECE"):
        table.add_column(col)
    for h in run.heads:
        table.add_row(h.head, str(h.n), h.accuracy.fmt(), h.macro_f1.fmt(), h.ece.fmt())
    out.print(table)
    if run.routing:
        for r in run.routing.routers:
            out.print(
                f"routing {r.name}: APGR {r.apgr.fmt()}, strong share for 80% of the gap "
                f"{r.share_for_80.fmt()}"
            )
    out.print(f"report: {run.report['html']}")
    if run.tracking_error:
        err.print(f"[yellow]warning:[/yellow] {run.tracking_error}")
    elif run.run_id:
        out.print(f"MLflow run {run.run_id}")


def calibrate_cmd(
    model: Annotated[
        str, typer.Option("--model", help="Bundle folder or models:/NAME@ALIAS / models:/NAME/N.")
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Calibration set: a data file with `text` (outcome columns enable --quality-floor) or a "
            "prediction "
            "log from the service.",
        ),
    ],
    target_share: Annotated[
        float | None, typer.Option(help="Objective: send at most this share of requests to the strong model.")
    ] = None,
    quality_floor: Annotated[
        float | None,
        typer.Option(
            help="Objective: recover at least this share of the weak-to-strong quality gap (needs outcomes)."
        ),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(help="Objective: spend at most this per 1,000 requests (needs both costs)."),
    ] = None,
    weak_cost: Annotated[
        float | None, typer.Option(help="Weak model's average cost per 1,000 requests.")
    ] = None,
    strong_cost: Annotated[
        float | None, typer.Option(help="Strong model's average cost per 1,000 requests.")
    ] = None,
    score: Annotated[
        str,
        typer.Option(
            help="Router score: complexity, HEAD:LABEL or not:HEAD:LABEL (strong iff score >= threshold)."
        ),
    ] = "complexity",
    split: Annotated[str | None, typer.Option(help="Only rows whose `split` column has this value.")] = None,
    bundle_out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the bundle copy carrying the threshold (default models/bundles/...)."
        ),
    ] = None,
    write_bundle: Annotated[bool, typer.Option(help="Write a calibrated bundle copy.")] = True,
    tag: Annotated[
        bool,
        typer.Option(
            help="Also tag the registered version with the threshold (MLflow). Off by default: a tag on the "
            "serving champion changes live routing on every server's next reload, so it must be asked for."
        ),
    ] = False,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed for the bootstrap.")] = 0,
) -> None:
    """Pick the routing threshold for a target strong-model share, a quality floor or a cost budget;
    report the expected share, quality and cost with 95% intervals; store it in a new bundle copy
    (bundle.json thresholds.routing) and, with --tag only, as an MLflow version tag. Exit status 2 on
    bad input, checked before any row is scored."""
    # Over 60 lines: mostly typer option declarations; the body is parse -> run_calibrate -> print.
    from evals.calibrate.run import run_calibrate
    from evals.calibrate.thresholds import Objective
    from evals.io.models import ModelError
    from evals.io.tables import InputError

    given = [
        (n, v)
        for n, v in (("target_share", target_share), ("quality_floor", quality_floor), ("budget", budget))
        if v is not None
    ]
    if len(given) != 1:
        raise _fail(ValueError("give exactly one objective: --target-share, --quality-floor or --budget"))
    objective: Objective = given[0][0]  # type: ignore[assignment]
    target = given[0][1]
    from evals.calibrate.thresholds import validate_objective

    try:  # before minutes of scoring
        validate_objective(objective, float(target), weak_cost=weak_cost, strong_cost=strong_cost)
    except ValueError as exc:
        raise _fail(exc) from None
    try:
        run = run_calibrate(
            model,
            data,
            objective=objective,
            target=float(target),
            score=score,
            split=split,  # type: ignore[arg-type]
            weak_cost=weak_cost,
            strong_cost=strong_cost,
            bundle_out=bundle_out,
            write_bundle=write_bundle,
            tag_version=tag,
            n_boot=bootstrap,
            seed=seed,
            echo=lambda m: err.print(m),
        )
    except (InputError, ModelError, ValueError) as exc:
        raise _fail(exc) from None
    c = run.choice
    out.print(f"{objective} {target:g}: send to the strong model iff {score} >= {c.threshold:.4g}")
    out.print(f"expected strong share {c.share.fmt()} on {c.n} rows")
    if c.quality is not None and c.gap_recovered is not None:
        out.print(
            f"expected quality {c.quality.fmt()}, share of the gap recovered {c.gap_recovered.fmt()} "
            f"(on the {c.outcome_rows} rows with outcomes)"
        )
    if c.cost_per_1k is not None:
        out.print(f"expected cost per 1,000 requests {c.cost_per_1k.fmt()}")
    if run.bundle_out:
        out.print(f"bundle with thresholds.routing: {run.bundle_out}")
    if run.tagged:
        out.print(
            f"tagged {run.model.label}: routing_threshold (servers of this version pick it up on reload)"
        )
    elif run.model.registered:
        out.print(f"what-if only: {run.model.label} not tagged (pass --tag to store the threshold there)")
    if run.tracking_error:
        err.print(f"[yellow]warning:[/yellow] {run.tracking_error}")


def bench_drift_cmd(
    model: Annotated[
        str, typer.Option("--model", help="Bundle folder or models:/ URI to score the pool with.")
    ],
    data: Annotated[
        Path,
        typer.Option("--data", help="Labelled file with `text`, label columns and `source` (held-out rows)."),
    ] = Path("data/labelled/requests.parquet"),
    split: Annotated[str | None, typer.Option(help="Rows of this split form the pool.")] = "test",
    pool: Annotated[int, typer.Option(help="Rows scored once and re-split for every seed.")] = 1500,
    seeds: Annotated[int, typer.Option(help="Clean re-splits for the false-alarm rate.")] = 20,
    n_ref: Annotated[int, typer.Option(help="Reference rows per re-split.")] = 800,
    n_cur: Annotated[int, typer.Option(help="Current rows per re-split.")] = 300,
    alpha: Annotated[float, typer.Option(help="Family-wise significance level.")] = 0.01,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the numbers to this JSON file.")
    ] = None,
) -> None:
    """Measure the drift checks: family-wise false-alarm rate over clean re-splits of held-out data,
    and which checks fire on injected drift (source mix, another script, flipped labels, truncation)."""
    # Over 60 lines: option declarations plus the two printed tables of one benchmark.
    import json

    from evals.drift.bench import false_alarms, injected, make_pool
    from evals.drift.checks import DriftConfig
    from evals.io.models import ModelError, load_bundle, resolve_model
    from evals.io.report import clean_json
    from evals.io.tables import InputError, read_table, select_split

    try:
        df = select_split(read_table(data), split, data)
        bundle = load_bundle(resolve_model(model))
        config = DriftConfig(alpha=alpha, domain_auc=False, n_boot=300)
        if n_ref + n_cur > min(pool, len(df)):
            raise ValueError(f"--n-ref + --n-cur must fit in the pool ({min(pool, len(df))} rows)")
    except (InputError, ModelError, ValueError) as exc:
        raise _fail(exc) from None
    err.print(f"scoring a pool of {min(pool, len(df))} rows ...")
    p = make_pool(bundle, df, pool)
    far = false_alarms(p, range(seeds), n_ref=n_ref, n_cur=n_cur, config=config)
    table = Table(title=f"false alarms on {seeds} clean re-splits ({n_ref} ref / {n_cur} current rows)")
    table.add_column("level")
    table.add_column("false-alarm rate")
    table.add_row(f"alpha {alpha:g} (Holm + effect floors, the default decision)", f"{far['rate']:.3f}")
    for a, r in far["rate_by_alpha"].items():
        table.add_row(f"alpha {a} (Holm, no floors)", f"{r:.3f}")
    out.print(table)
    scen = injected(p, bundle, n_ref=n_ref, n_cur=n_cur, config=config)
    t2 = Table(title="injected drift")
    t2.add_column("scenario")
    t2.add_column("exit")
    t2.add_column("flagged checks (adjusted p)")
    for name, res in scen.items():
        flagged = ", ".join(f"{c.name} ({c.adjusted_p:.2g})" for c in res.checks if c.drift) or "none"
        t2.add_row(name, str(res.exit_code), flagged)
    out.print(t2)
    if json_out is not None:
        payload = {
            "false_alarms": {k: v for k, v in far.items() if k != "raw_p_values"},
            "injected": {k: [c.to_dict() for c in r.checks] for k, r in scen.items()},
        }
        json_out.write_text(json.dumps(clean_json(payload), indent=2) + "\n")


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Add `eval`, `drift`, `calibrate` and `bench drift` to the root app."""
    root.command("eval")(eval_cmd)
    root.command("drift")(drift_cmd)
    root.command("calibrate")(calibrate_cmd)
    bench.command("drift")(bench_drift_cmd)
