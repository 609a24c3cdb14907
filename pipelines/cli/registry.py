"""Registry commands: `tierroute promote`, `tierroute models list`, `tierroute export`.

Job: thin typer commands over `pipelines.registry`; MLflow is imported only when a command runs.
Exit codes: 0 done, 1 promotion refused (the comparison is printed), 2 registry or input error
(unreachable server, unknown model/alias/version, bad URI, output folder in the way).

`pipelines` may not import `evals`, so the evaluation-based promotion gate is passed in: the root
app calls `register(root, bench, eval_checks=f)`, and `tierroute promote --eval-set FILE` then adds
the checks `f(EvalSetRequest)` returns (champion and candidate scored on each extra labelled set,
overall and per required slice) to the metric comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from serving.cli.errors import fail as _fail

if TYPE_CHECKING:
    from pipelines.registry import PromotionCheck, PromotionResult, VersionInfo

err = Console(stderr=True)


@dataclass(frozen=True)
class EvalSetRequest:
    """What `promote --eval-set` asks of the evaluation gate."""

    files: list[Path]
    tolerance: float
    slice_column: str | None
    """Column whose values define slices (None: overall only)."""
    required_slices: list[str]
    """Slice values that must not regress; "*" = every slice large enough to judge."""
    split: str | None
    """Rows of this `split` only; "auto" = the test split when the file has one, else all rows."""


EvalCheckFactory = Callable[[EvalSetRequest], "Sequence[PromotionCheck]"]
"""Builds the promotion checks for extra labelled sets; provided by the evals package."""


def _out() -> Console:
    """stdout console; when piped or captured, wide enough that tables are not squeezed into 80 columns."""
    import sys

    return Console(width=None if sys.stdout.isatty() else 160)


EXIT_REFUSED = 1
EXIT_ERROR = 2

TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking/registry URI. Default: $MLFLOW_TRACKING_URI, "
        "else the embedded store ./mlruns/mlflow.db.",
        show_default=False,
    ),
]
ModelNameOpt = Annotated[str, typer.Option("--model-name", help="Registered model name.")]


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _delta(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def comparison_table(result: PromotionResult, champion_alias: str, candidate_alias: str) -> Table:
    prev = f"v{result.previous_champion_version}" if result.previous_champion_version else "none"
    table = Table(
        title=f"{result.model_name}: {candidate_alias} v{result.candidate_version} vs {champion_alias} {prev}"
    )
    table.add_column("metric", no_wrap=True)
    table.add_column(f"{champion_alias} ({prev})", justify="right")
    table.add_column(f"{candidate_alias} (v{result.candidate_version})", justify="right")
    table.add_column("delta", justify="right")
    table.add_column("ok", justify="center")
    table.add_column("note", overflow="fold")
    for row in result.rows:
        mark = "[green]yes[/green]" if row.ok else "[red]NO[/red]"
        table.add_row(row.metric, _fmt(row.champion), _fmt(row.candidate), _delta(row.delta), mark, row.note)
    return table


def promote_command(
    eval_checks: EvalCheckFactory | None, same_rows: PromotionCheck | None = None
) -> Callable[..., None]:
    """`tierroute promote`, using `eval_checks` for `--eval-set` (None: `--eval-set` is refused) and
    `same_rows` to compare versions trained on different data (None: such a promotion is refused)."""
    # Over 60 lines: long only because of the typer option declarations of the command it wraps.

    def promote_cmd(
        model_name: ModelNameOpt = "tierroute-classifier",
        tolerance: Annotated[
            float,
            typer.Option(
                help="Largest allowed drop of any key metric (absolute, e.g. 0.01 = one macro-F1 point).",
                min=0.0,
            ),
        ] = 0.01,
        force: Annotated[
            bool,
            typer.Option(
                "--force", help="Promote even if checks fail; recorded as tag promoted_by_force=true."
            ),
        ] = False,
        candidate_alias: Annotated[str, typer.Option(help="Alias of the version to promote.")] = "candidate",
        champion_alias: Annotated[
            str, typer.Option(help="Alias to move when the candidate passes.")
        ] = "champion",
        metric: Annotated[
            list[str] | None,
            typer.Option(
                "--metric",
                help="Key metric to compare (repeatable). "
                "Default: test_tier_macro_f1 and test_task_macro_f1.",
                show_default=False,
            ),
        ] = None,
        eval_set: Annotated[
            list[Path] | None,
            typer.Option(
                "--eval-set",
                help="Labelled file (CSV/JSONL/Parquet with text + head columns) to score champion and "
                "candidate on, row for row (repeatable). The candidate's macro-F1 may not be lower than "
                "the champion's by "
                "more than --tolerance overall or on any --required-slice. E.g. the shipped "
                "data/labelled/requests.parquet (its test split) or this week's labelled traffic.",
                show_default=False,
            ),
        ] = None,
        slice_column: Annotated[
            str,
            typer.Option("--slice", help="Column of the --eval-set files whose values are slices (''=none)."),
        ] = "source",
        required_slice: Annotated[
            list[str] | None,
            typer.Option(
                "--required-slice",
                help="Slice value that must not regress (repeatable; '*' = every slice with >= 30 labelled "
                "rows). Other slices are printed for information only.",
                show_default=False,
            ),
        ] = None,
        eval_split: Annotated[
            str,
            typer.Option(
                "--eval-split",
                help="Score only rows with this value in the 'split' column; 'auto' = 'test' when the file "
                "has test rows, else all rows; 'all' = every row.",
            ),
        ] = "auto",
        tracking_uri: TrackingUriOpt = None,
    ) -> None:
        """Move alias `champion` to the `candidate` version if its test metrics hold up.

        No key metric may be worse than the champion's by more than --tolerance (absolute; losses and ECE
        count lower as better). When the two were trained on different data (dataset digests differ), their
        stored numbers come from different test sets: both are then scored on the champion's test rows and on
        the candidate's, and a drop on either refuses. When both logged `loso_apgr_mean` (held-out-source
        routing value of `tierroute train`), a drop beyond --tolerance refuses too. Prints the comparison;
        exits 1 when refused, 2 on registry errors. --force promotes anyway and records
        promoted_by_force=true on the version; `tierroute rollback` moves champion back."""
        # Over 60 lines: mostly typer option declarations; the body is parse -> promote -> print.
        from pipelines.registry import KEY_METRICS, RegistryError, promote

        checks: Sequence[PromotionCheck] = ()
        if eval_set:
            if eval_checks is None:
                raise _fail(
                    "--eval-set needs the evaluation gate from the evals package, which is not wired in"
                )
            missing = [str(p) for p in eval_set if not p.is_file()]
            if missing:
                raise _fail(f"--eval-set file(s) not found: {', '.join(missing)}")
            try:
                checks = eval_checks(
                    EvalSetRequest(
                        files=list(eval_set),
                        tolerance=tolerance,
                        slice_column=slice_column or None,
                        required_slices=list(required_slice or []),
                        split=None if eval_split == "all" else eval_split,
                    )
                )
            except ValueError as exc:
                raise _fail(str(exc)) from None
        elif required_slice:
            raise _fail("--required-slice applies to --eval-set files: pass at least one --eval-set")
        keys = tuple(metric) if metric else KEY_METRICS
        rows_check = same_rows
        from pipelines.gate.promotion import GATE_KEY_METRICS, is_gate_model, same_rows_check

        if is_gate_model(model_name):  # a gate: its own key metrics + both versions on the same rows
            keys = tuple(metric) if metric else GATE_KEY_METRICS
            gate_rows = same_rows_check()
            checks, rows_check = (*checks, gate_rows), gate_rows
        try:
            result = promote(
                model_name,
                candidate_alias=candidate_alias,
                champion_alias=champion_alias,
                tolerance=tolerance,
                metric_keys=keys,
                force=force,
                extra_checks=checks,
                same_rows_check=rows_check,
                tracking_uri=tracking_uri,
            )
        except RegistryError as exc:
            raise _fail(str(exc)) from None
        if any("informational: each on its own test split" in r.note for r in result.rows):
            err.print(
                "[yellow]warning:[/yellow] champion and candidate were trained on different data (dataset "
                "digests differ): their stored test metrics are not comparable, so both are scored on each "
                "one's test rows.",
                highlight=False,
                soft_wrap=True,
            )
        if result.rows:
            _out().print(comparison_table(result, champion_alias, candidate_alias))
        if not result.promoted:
            err.print(f"[red]not promoted:[/red] {result.reason}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_REFUSED)
        color = "yellow" if result.forced else "green"
        _out().print(f"[{color}]{result.reason}[/{color}]", highlight=False, soft_wrap=True)

    return promote_cmd


def _data_label(tags: dict[str, str]) -> str:
    """Training data of a version: file name and the first digest characters (equal digests = same rows)."""
    name = tags.get("dataset_name", "")
    digest = tags.get("dataset_digest", "")[:8]
    return f"{name} ({digest})" if name and digest else name or digest or "?"


def _versions_table(model_name: str, versions: list[VersionInfo], keys: tuple[str, ...]) -> Table:
    table = Table(title=f"{model_name}: {len(versions)} version(s)")
    table.add_column("version", justify="right")
    table.add_column("aliases")
    table.add_column("created (UTC)", no_wrap=True)
    for key in keys:
        table.add_column(key.removeprefix("test_"), justify="right")
    table.add_column("data", overflow="fold")
    table.add_column("rows", justify="right")
    table.add_column("bundle", no_wrap=True)
    table.add_column("run", no_wrap=True)
    for v in versions:
        table.add_row(
            str(v.version),
            ", ".join(v.aliases) or "",
            v.created.strftime("%Y-%m-%d %H:%M"),
            *[_fmt(v.metrics.get(k)) for k in keys],
            _data_label(v.tags),
            v.tags.get("training_rows", "?"),
            v.tags.get("bundle_digest", "")[:12],
            (v.run_id or "")[:12],
        )
    return table


def list_cmd(
    model_name: ModelNameOpt = "tierroute-classifier",
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Metric column to show (repeatable). Default: the promotion gate's keys.",
            show_default=False,
        ),
    ] = None,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """List registered versions with aliases, creation time and key test metrics.

    Also shows the first characters of the bundle digest and of the training run id."""
    from pipelines.registry import KEY_METRICS, RegistryError, list_versions

    keys = tuple(metric) if metric else KEY_METRICS
    try:
        versions = list_versions(model_name, metric_keys=keys, tracking_uri=tracking_uri)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    _out().print(_versions_table(model_name, versions, keys))


def export_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write the bundle into (replaced if it holds a bundle).")
    ],
    model: Annotated[
        str, typer.Option("--model", help="models:/<name>@<alias> or models:/<name>/<version>.")
    ] = "models:/tierroute-classifier@champion",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Write a registered version's bundle to a plain folder usable without MLflow.

    The folder holds model.onnx, tokenizer.json and bundle.json; file hashes and the registered
    bundle digest are verified before it is moved into place."""
    from pipelines.registry import RegistryError, download_bundle, resolve

    try:
        resolved = resolve(model, tracking_uri=tracking_uri)
        path = download_bundle(resolved.uri, out, tracking_uri=tracking_uri)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    label = f"@{resolved.alias} = " if resolved.alias else ""
    _out().print(
        f"exported {resolved.name} {label}v{resolved.version} -> {path}", highlight=False, soft_wrap=True
    )


def rollback_cmd(
    to: Annotated[
        int | None,
        typer.Option(
            "--to",
            help="Version to make champion. Default: the version the current champion was promoted from.",
            show_default=False,
            min=1,
        ),
    ] = None,
    model_name: ModelNameOpt = "tierroute-classifier",
    champion_alias: Annotated[str, typer.Option(help="Alias to move back.")] = "champion",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Move alias `champion` back to the previous champion (or --to VERSION), without checks.

    Recorded on that version like a forced promotion: promoted_by_force=true, promoted_from,
    rolled_back_from, promoted_at. Servers of `@champion` pick it up at /admin/reload or the next poll."""
    from pipelines.registry import RegistryError, rollback

    try:
        result = rollback(model_name, to_version=to, champion_alias=champion_alias, tracking_uri=tracking_uri)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    _out().print(f"[yellow]{result.reason}[/yellow]", highlight=False, soft_wrap=True)


def register(
    root: typer.Typer,
    bench: typer.Typer,
    *,
    eval_checks: EvalCheckFactory | None = None,
    same_rows: PromotionCheck | None = None,
) -> None:
    """Mount `promote` (with the eval-set gate and same-rows comparison it is given), `rollback`,
    `export` and the `models` group."""
    root.command("promote")(promote_command(eval_checks, same_rows))
    root.command("rollback")(rollback_cmd)
    root.command("export")(export_cmd)
    models = typer.Typer(help="Inspect registered classifier versions.", no_args_is_help=True)
    models.command("list")(list_cmd)
    root.add_typer(models, name="models")
