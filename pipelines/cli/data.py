"""`tierroute data ...`: build the default labelled set, validate a user's labelled file, turn the
service's own traffic into labelled rows and merge labelled files.

Job: the `data` command group, mounted by `register(root, bench)`. `data build` turns data/raw/ into
data/labelled/ (and refreshes the data card's tables); `data validate` runs exactly the validation the
trainer runs first and prints a summary, or the error and exit code 2 (bad input, as for `train`);
`data from-log` turns a prediction/outcome log into `weak_ok` rows (`pipelines.data.from_log`);
`data merge` concatenates labelled files (e.g. the default set and those rows) for `train`.
Heavy imports (pandas, pyarrow, scipy) happen inside the commands so `tierroute --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from serving.cli.errors import fail

data_app = typer.Typer(
    help=(
        "Labelled request data: build the default set from data/raw/ (public sources, see data/README.md) "
        "or validate your own CSV/JSONL/Parquet file before training on it."
    ),
    no_args_is_help=True,
)


def _table(title: str, header: list[str], rows: list[list[str]]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _cross_rows(by: dict[str, dict[str, int]], keys: list[str], columns: list[str]) -> list[list[str]]:
    rows = [
        [k, *(f"{by.get(k, {}).get(c, 0):,}" for c in columns), f"{sum(by.get(k, {}).values()):,}"]
        for k in keys
    ]
    totals = [sum(by.get(k, {}).get(c, 0) for k in keys) for c in columns]
    rows.append(["total", *(f"{t:,}" for t in totals), f"{sum(totals):,}"])
    return rows


@data_app.command("build")
def build(
    raw: Annotated[
        Path,
        typer.Option("--raw", help="Folder of raw sources (one sub-folder per source, each with SOURCE.md)."),
    ] = Path("data/raw"),
    out: Annotated[
        Path, typer.Option("--out", help="Output folder for requests.parquet and summary.json.")
    ] = Path("data/labelled"),
    card: Annotated[
        Path,
        typer.Option(
            "--card",
            help="Data card whose generated count tables are refreshed from the new summary "
            "(skipped if the file or its marker comments are missing).",
        ),
    ] = Path("data/README.md"),
    update_card: Annotated[
        bool, typer.Option("--update-card/--no-update-card", help="Refresh the data card's count tables.")
    ] = True,
    commercial_only: Annotated[
        bool,
        typer.Option(
            "--commercial-only",
            help="Leave out rows whose licence forbids commercial use (AlpacaEval, CC BY-NC 4.0). "
            "The data card is not refreshed; pass --out to keep the default set.",
        ),
    ] = False,
    keep_proxy_labels: Annotated[
        bool,
        typer.Option(
            "--keep-proxy-labels",
            help="Write the proxy tier/task labels the default build leaves empty (each source's "
            "empty_heads, see data/README.md): the table the label ablation scores on. The data card is "
            "not refreshed; pass --out to keep the default set.",
        ),
    ] = False,
) -> None:
    """Build the default labelled set: label maps -> dedup -> sampling -> near-duplicate-safe split.

    Writes OUT/requests.parquet (id, text, source, tier, task, weak_ok, split, group, licence,
    commercial, label_kind) and OUT/summary.json, byte-for-byte identical on every rebuild from the
    same raw files, plus OUT/outcomes.parquet (the routing targets of every outcome source, see
    `pipelines.data.outcomes`), and prints rows per source/tier/task/split.
    """
    # Over 60 lines: option declarations plus the printed summary tables of one build.
    from rich.console import Console

    from pipelines.data.build import build_dataset
    from pipelines.data.card import update_card as refresh_card
    from pipelines.data.labels import TASKS, TIERS, UNLABELLED
    from pipelines.data.outcomes import OUTCOMES_NAME, build_outcomes

    console = Console()
    try:
        report = build_dataset(raw, out, commercial_only=commercial_only, keep_proxy_labels=keep_proxy_labels)
        outcomes = build_outcomes(raw, out, commercial_only=commercial_only)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise fail(f"data build failed: {exc}", code=1) from exc
    s = report.summary
    sources = sorted(s["source_tier"])
    tier_columns = list(TIERS) + (
        [UNLABELLED] if any(UNLABELLED in counts for counts in s["source_tier"].values()) else []
    )
    console.print(
        _table(
            "Rows per source and tier",
            ["source", *tier_columns, "rows"],
            _cross_rows(s["source_tier"], sources, tier_columns),
        )
    )
    console.print(
        _table(
            "Rows per task and split",
            ["task", "train", "validation", "test", "rows"],
            _cross_rows(
                {t: {sp: s["split_task"][sp].get(t, 0) for sp in s["split_task"]} for t in TASKS},
                list(TASKS),
                ["train", "validation", "test"],
            ),
        )
    )
    console.print(
        _table(
            "Rows per tier and split",
            ["tier", "train", "validation", "test", "rows"],
            _cross_rows(
                {t: {sp: s["split_tier"][sp].get(t, 0) for sp in s["split_tier"]} for t in TIERS},
                list(TIERS),
                ["train", "validation", "test"],
            ),
        )
    )
    console.print(f"wrote {report.path} ({report.rows:,} rows) and {report.summary_path}")
    console.print(f"digest {report.digest}  built in {report.seconds:.1f} s")
    console.print(f"wrote {out / OUTCOMES_NAME} ({len(outcomes):,} outcome rows)")
    if update_card and not commercial_only and not keep_proxy_labels:
        if refresh_card(card, s):
            console.print(f"refreshed the count tables of {card}")
        else:
            console.print(
                f"[yellow]data card {card} not found or has no generated-table markers; left alone[/]"
            )


@data_app.command("validate")
def validate(
    file: Annotated[
        Path, typer.Argument(help="Labelled file: .csv, .jsonl or .parquet with a 'text' column.")
    ],
    label_columns: Annotated[
        str,
        typer.Option(
            "--label-columns",
            help="Comma-separated label columns, one classifier head each (e.g. tier,task). "
            "tier and task must use the default label sets; other columns use the labels they contain.",
        ),
    ] = "tier,task",
    min_rows_per_class: Annotated[
        int,
        typer.Option(
            "--min-rows-per-class", min=1, help="Fewest rows a class may have (it must split three ways)."
        ),
    ] = 8,
    allow_missing_labels: Annotated[
        bool,
        typer.Option(
            "--allow-missing-labels", help="Keep rows with an empty label (that head ignores them)."
        ),
    ] = False,
) -> None:
    """Validate a labelled file exactly as `tierroute train` does first; exit 2 with the reason if unusable.

    Checks: readable file of a known type, a 'text' column and every label column (close names are
    suggested), non-empty string texts, labels inside the declared sets, >= --min-rows-per-class rows per
    class, unique ids (if an 'id' column exists) and split values (if a 'split' column exists).
    """
    from rich.console import Console

    from pipelines.data.dataset import DataValidationError, load_labelled_file

    columns = [c.strip() for c in label_columns.split(",") if c.strip()]
    try:
        data = load_labelled_file(
            file, columns, min_rows_per_class=min_rows_per_class, allow_missing_labels=allow_missing_labels
        )
    except DataValidationError as exc:
        raise fail(exc) from exc  # exit 2: bad input, the same code `train` gives
    console = Console()
    df = data.df
    split_counts = df["split"].value_counts()
    console.print(
        f"[green]OK[/] {file}: {len(df):,} rows; "
        + ", ".join(f"{s} {int(split_counts.get(s, 0)):,}" for s in ("train", "validation", "test"))
    )
    for column in data.label_columns:
        counts = df[column].value_counts(dropna=True)
        rows = [[label, f"{int(counts.get(label, 0)):,}"] for label in data.label_sets[column]]
        missing = int(df[column].isna().sum())
        if missing:
            rows.append(["(missing)", f"{missing:,}"])
        console.print(_table(f"{column}", ["label", "rows"], rows))
    console.print(f"digest {data.digest}")


@data_app.command("from-log")
def from_log(
    log: Annotated[
        list[Path],
        typer.Argument(
            help="Prediction log(s) written by `TIERROUTE_PREDICTION_LOG_TEXTS=1 tierroute serve --policy "
            "... --prediction-log FILE` (JSONL; several files are read in order, e.g. rotated ones)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Labelled file to write: .parquet, .csv or .jsonl.")
    ] = Path("data/labelled/traffic.parquet"),
    licence: Annotated[
        str, typer.Option("--licence", help="Licence recorded on every row: your deployment's own terms.")
    ] = "own-traffic",
    commercial: Annotated[
        bool,
        typer.Option("--commercial/--non-commercial", help="Value of the `commercial` column of every row."),
    ] = True,
    labels: Annotated[
        str,
        typer.Option(
            "--labels",
            help="tier/task of the rows: 'none' leaves them empty (honest: the log holds only the served "
            "model's own guesses; `tierroute train` fits each head on the rows labelled for it, so the "
            "rows train the weak_ok and routing heads only); 'predicted' copies the logged prediction "
            "(it adds no information and reinforces the model's own mistakes).",
        ),
    ] = "none",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the text hash that assigns the split.")] = 0,
) -> None:
    """Turn a prediction/outcome log into labelled `weak_ok` rows (the labelled-data schema).

    One row per routed request whose cascade ran stage 1 and gated it, with text:
    weak_ok = the gate accepted stage 1's answer AND no user feedback (POST /v1/feedback) marked it
    bad. Feedback overrides the gate on an accepted answer; on a rejected one the user judged the
    stage-2 answer, so weak_ok stays false. The last feedback per request id wins.

    Skipped and counted: records without text (the log stores only a hash unless the service runs
    with TIERROUTE_PREDICTION_LOG_TEXTS=1; hashed rows cannot train), requests without a cascade or
    whose stage 1 was skipped or failed at the provider (no verdict), and plain /v1/classify records.

    Columns: id (traffic:<request id>), text, source=traffic, tier, task (see --labels), weak_ok, split
    (seeded hash of the text, 70/15/15: repeats share a split), group (text hash), licence, commercial,
    label_kind (traffic_gate, or traffic_feedback when feedback overrode the gate). Exit 2 when the log
    is unreadable or yields no rows.
    """
    from rich.console import Console

    from pipelines.data.from_log import rows_from_log, write_frame
    from serving.prediction_log import PredictionLogError

    if labels not in ("none", "predicted"):
        raise fail(f"--labels must be 'none' or 'predicted', got {labels!r}")
    missing = [str(p) for p in log if not p.is_file()]
    if missing:
        raise fail(f"log file(s) not found: {', '.join(missing)}")
    try:
        df, report = rows_from_log(log, licence=licence, commercial=commercial, labels=labels, seed=seed)  # type: ignore[arg-type]
    except PredictionLogError as exc:
        raise fail(str(exc)) from exc
    console = Console()
    r = report
    console.print(
        _table(
            "Log records",
            ["what", "count"],
            [
                ["records read (predictions and routed requests)", f"{r.records:,}"],
                ["routed requests", f"{r.routed:,}"],
                ["rows written", f"{r.rows:,}"],
                ["  weak_ok = True", f"{r.weak_ok_true:,}"],
                ["  weak_ok = False", f"{r.weak_ok_false:,}"],
                ["  of which feedback overrode the gate", f"{r.feedback_overrides:,}"],
                ["skipped: no text (hashed; TIERROUTE_PREDICTION_LOG_TEXTS=1)", f"{r.skipped_no_text:,}"],
                ["skipped: no stage-1 verdict (no cascade, skipped or failed)", f"{r.skipped_no_verdict:,}"],
                ["skipped: not routed (/v1/classify)", f"{r.skipped_not_routed:,}"],
                ["feedback records (distinct ids)", f"{r.feedback:,}"],
                ["  for ids not in the log", f"{r.feedback_unmatched:,}"],
            ],
        )
    )
    if df.empty:
        raise fail("no labelled rows in the log (see the skipped counts above)")
    try:
        write_frame(df, out)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    console.print(f"wrote {out} ({len(df):,} rows)")


@data_app.command("merge")
def merge(
    files: Annotated[
        list[Path], typer.Argument(help="Labelled files to concatenate (CSV/TSV/JSONL/JSON/Parquet).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Merged file to write: .parquet, .csv or .jsonl.")],
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require",
            help="Drop rows whose value in this column is empty (repeatable), e.g. --require weak_ok to "
            "train a weak_ok head on the rows that have one.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Concatenate labelled files into one (union of their columns; a cell a file lacks is empty).

    E.g. `tierroute data merge data/labelled/requests.parquet traffic.parquet --require weak_ok --out
    merged.parquet`, then `tierroute train --data merged.parquet --label-columns tier,task,weak_ok`.
    Rows keep their own split column; ids must not repeat across files (exit 2 if they do).
    """
    from rich.console import Console

    from pipelines.data.dataset import DataValidationError, read_frame
    from pipelines.data.from_log import merge_frames, write_frame

    try:
        frames = [read_frame(p) for p in files]
        merged, dropped = merge_frames(frames, require=list(require or []))
        write_frame(merged, out)
    except (DataValidationError, ValueError) as exc:
        raise fail(exc) from exc
    Console().print(
        f"wrote {out} ({len(merged):,} rows from {len(files)} files"
        + (f"; {dropped:,} rows without {', '.join(require or [])} dropped" if dropped else "")
        + ")"
    )


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Mount the `data` command group on the root app (`bench` is unused: no data benchmarks)."""
    del bench
    root.add_typer(data_app, name="data")
