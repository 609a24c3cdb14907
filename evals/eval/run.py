"""`tierroute eval`: score a model version on a labelled file, write the report, log it to MLflow.

Job: glue between the file/model and `evals.eval.evaluate`: read and validate the file (label columns
named like the model's heads; at least one must be present), predict in batches, compute per-head
metrics with intervals, per-slice tables (`source` by default when the file has it, or any
`--slice` column), confusion and reliability plots (the same plotting code as training), and
routing value when the file has outcome columns; then report.md/html + summary.json, and an MLflow
run linked to the model version (run tags, metrics on the version's logged model, a version tag).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evals.eval.evaluate import (
    HeadEvaluation,
    RoutingEvaluation,
    SliceRow,
    evaluate_head,
    evaluate_routing,
    evaluate_slices,
    outcome_arrays,
    router_score,
)
from evals.io.models import ModelHandle, head_labels, load_bundle, predict_in_batches, resolve_model
from evals.io.report import Block, Heading, Image, Para, Table, pyplot, write_report
from evals.io.tables import InputError, label_columns, read_table, select_split
from pipelines.train.reference_stats import label_indices


@dataclass
class EvalRun:
    model: ModelHandle
    data: Path
    n_rows: int
    heads: list[HeadEvaluation]
    slices: list[SliceRow]
    routing: RoutingEvaluation | None
    report: dict[str, Path] = field(default_factory=dict)
    run_id: str | None = None
    tracking_error: str | None = None

    def flat_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"rows": float(self.n_rows)}
        for h in self.heads:
            out.update(h.flat_metrics())
        for s in self.slices:
            key = f"slice.{s.column}.{s.value}.{s.head}"
            out[f"{key}.macro_f1"] = s.macro_f1.estimate
            out[f"{key}.accuracy"] = s.accuracy.estimate
            out[f"{key}.n"] = float(s.n)
        if self.routing:
            for r in self.routing.routers:
                key = "routing." + r.name.split(" ")[0]
                out[f"{key}.apgr"] = r.apgr.estimate
                out[f"{key}.share_for_50"] = r.share_for_50.estimate
                out[f"{key}.share_for_80"] = r.share_for_80.estimate
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "data": str(self.data),
            "rows": self.n_rows,
            "heads": [h.to_dict() for h in self.heads],
            "slices": [s.to_dict() for s in self.slices],
            "routing": self.routing.to_dict() if self.routing else None,
        }


def _routing_plot(routing: RoutingEvaluation, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4))
    for r in routing.routers:
        c = r.curve
        ax.plot(c.share, c.pgr, label=f"{r.name}: APGR {r.apgr.estimate:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random: APGR 0.500")
    ax.axhline(0.5, color="#ccc", lw=0.8)
    ax.axhline(0.8, color="#ccc", lw=0.8)
    ax.set_xlabel("share of requests sent to the strong model")
    ax.set_ylabel("share of the quality gap recovered")
    ax.set_title(f"routing value on {routing.n} rows ({routing.outcome_source.split(' ')[0]})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _blocks(
    run: EvalRun, out_dir: Path, probs: dict[str, np.ndarray], labels: dict[str, list[Any]]
) -> list[Block]:
    # Over 60 lines: the report's sections in reading order, each built inline where it is printed.
    from pipelines.train.metrics import plot_confusion_matrix, plot_reliability

    plots = out_dir / "plots"
    blocks: list[Block] = [
        Para(
            f"Model **{run.model.label}** on `{run.data}` ({run.n_rows} rows). Intervals: 95% percentile "
            "bootstrap."
        ),
        Table(
            ["head", "n", "accuracy", "macro-F1", "ECE", "log-loss"],
            [[h.head, h.n, h.accuracy.fmt(), h.macro_f1.fmt(), h.ece.fmt(), h.log_loss] for h in run.heads],
        ),
    ]
    for h in run.heads:
        blocks.append(Heading(f"Head `{h.head}`"))
        blocks.append(
            Table(
                ["class", "precision", "recall", "F1", "F1 95% CI", "support"],
                [
                    [
                        r["label"],
                        r["precision"],
                        r["recall"],
                        r["f1"],
                        f"[{r['f1_low']:.3f}, {r['f1_high']:.3f}]",
                        r["support"],
                    ]
                    for r in h.per_class
                ],
            )
        )
        m = [i for i, v in enumerate(labels[h.head]) if v is not None]
        y = [str(labels[h.head][i]) for i in m]
        p = probs[h.head][m]
        plot_confusion_matrix(y, p, h.labels, plots / f"confusion_{h.head}.png", f"{h.head}: {run.data.name}")
        plot_reliability(y, p, h.labels, plots / f"reliability_{h.head}.png", f"{h.head}: {run.data.name}")
        blocks.append(Image(f"plots/confusion_{h.head}.png", f"confusion matrix {h.head}"))
        blocks.append(Image(f"plots/reliability_{h.head}.png", f"reliability {h.head}"))
    if run.slices:
        blocks.append(Heading("Slices"))
        blocks.append(
            Para(
                "Macro-F1 averages over the classes present in a slice (in its labels or predictions); in a "
                "slice whose rows share one true class it mostly reflects stray predictions, so read "
                "accuracy there."
            )
        )
        blocks.append(
            Table(
                ["column", "value", "head", "n", "accuracy", "macro-F1"],
                [[s.column, s.value, s.head, s.n, s.accuracy.fmt(), s.macro_f1.fmt()] for s in run.slices],
            )
        )
    if run.routing:
        r = run.routing
        blocks.append(Heading("Routing value"))
        blocks.append(
            Para(
                f"{r.n} rows with outcomes ({r.outcome_source}). APGR = area under the "
                "share-of-gap-recovered curve; "
                "random routing scores 0.5. Shares are the strong-model share needed to recover 50% / 80% "
                "of the "
                "quality gap."
            )
        )
        blocks.append(
            Table(
                [
                    "router",
                    "APGR",
                    "share for 50% gap",
                    "share for 80% gap",
                    "weak quality",
                    "strong quality",
                ],
                [
                    [
                        v.name,
                        v.apgr.fmt(),
                        v.share_for_50.fmt(),
                        v.share_for_80.fmt(),
                        v.curve.weak_quality,
                        v.curve.strong_quality,
                    ]
                    for v in r.routers
                ],
            )
        )
        _routing_plot(r, plots / "routing_curve.png")
        blocks.append(Image("plots/routing_curve.png", "routing curve"))
    return blocks


MIN_RELIABLE_ROWS = 100
"""Below this many rows a macro-F1 interval is wider than about +-0.1: say so next to the numbers."""


def eval_warnings(bundle_dir: Path, data: Path, split: str | None, rows: int) -> list[str]:
    """What makes these numbers less than they look: a small set, or the model's own training rows."""
    from serving.model.bundle import BundleError, read_manifest

    out: list[str] = []
    if rows < MIN_RELIABLE_ROWS:
        out.append(f"only {rows} rows: the intervals are wide (aim for >= {MIN_RELIABLE_ROWS} labelled rows)")
    try:
        trained_on = (read_manifest(bundle_dir).get("training_data") or {}).get("path")
    except BundleError:
        trained_on = None
    if (
        trained_on
        and Path(trained_on).resolve() == Path(data).resolve()
        and split not in ("test", "validation")
    ):
        which = "its training split" if split == "train" else "all rows, including its training split"
        out.append(
            f"{data} is the file this model was trained on and {which} is scored: the numbers are "
            "optimistic; use --split test"
        )
    return out


def run_eval(
    model: str,
    data: Path,
    *,
    slices: Sequence[str] | None = None,
    split: str | None = None,
    router: str = "complexity",
    out_dir: Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    log_to_mlflow: bool = True,
    cache_dir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> EvalRun:
    """Everything `tierroute eval` does; raises InputError / ModelError / ValueError on bad input."""
    # Over 60 lines: the command's steps in order (read, predict, score, report, log), each a named call.
    data = Path(data)
    df = select_split(read_table(data), split, data)
    handle = resolve_model(model, cache_dir=cache_dir)
    bundle = load_bundle(handle)
    heads = head_labels(bundle)
    labels = label_columns(df, heads)
    if not labels:
        raise InputError(f"{data}: no label column named like the model's heads ({', '.join(heads)})")
    slice_cols = list(slices) if slices else (["source"] if "source" in df.columns else [])
    missing = [c for c in slice_cols if c not in df.columns]
    if missing:
        raise InputError(f"{data}: slice column(s) {missing} not in the file")
    outcomes = outcome_arrays(df)
    texts = [str(t) for t in df["text"].tolist()]
    for warning in eval_warnings(handle.bundle_dir, data, split, len(texts)):
        echo(f"warning: {warning}")
    echo(f"scoring {len(texts)} rows with {handle.label}")
    out = predict_in_batches(bundle, texts)
    head_evals: list[HeadEvaluation] = []
    slice_rows: list[SliceRow] = []
    for name, values in labels.items():
        try:
            y = label_indices(values, heads[name], name)
        except ValueError as exc:
            raise InputError(f"{data}: {exc}") from exc
        m = y >= 0
        if not m.any():
            continue
        head_evals.append(
            evaluate_head(name, heads[name], y[m], out.probs[name][m], n_boot=n_boot, seed=seed)
        )
        for col in slice_cols:
            slice_rows += evaluate_slices(
                col, df[col].tolist(), name, y, out.probs[name], len(heads[name]), n_boot=n_boot, seed=seed
            )
    if not head_evals:
        raise InputError(f"{data}: the label columns {list(labels)} hold no labels")
    routing = None
    if outcomes is not None:
        source, weak, strong = outcomes
        try:
            scores = {f"model ({router})": router_score(router, out.probs, heads, out.p_weak_ok)}
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        scores["prompt length (tokens)"] = out.token_counts.astype(np.float64)
        routing = evaluate_routing(source, weak, strong, scores, n_boot=n_boot, seed=seed)
    run = EvalRun(handle, data, len(df), head_evals, slice_rows, routing)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = Path(out_dir) if out_dir is not None else Path("reports") / "eval" / stamp
    blocks = _blocks(run, target, out.probs, labels)
    run.report = write_report(target, f"Evaluation: {handle.label} on {data.name}", blocks, run.to_dict())
    if log_to_mlflow:
        from pipelines.registry.tracking import TrackingError, log_run

        key = data.stem
        version_tags = {
            f"eval.{key}.{h.head}_macro_f1": f"{h.macro_f1.estimate:.4f} [{h.macro_f1.low:.4f}, "
            f"{h.macro_f1.high:.4f}]"
            for h in head_evals
        }
        try:
            run.run_id = log_run(
                kind="eval",
                run_name=f"eval-{key}-{stamp}",
                params={
                    "model": model,
                    "data": str(data),
                    "split": split or "all",
                    "slices": ",".join(slice_cols),
                    "router_score": router,
                    "n_boot": n_boot,
                    "seed": seed,
                },
                metrics=run.flat_metrics(),
                tags={"tierroute.eval_data": str(data)},
                report_dir=target,
                model_name=handle.name if handle.registered else None,
                model_version=handle.version,
                version_tags=version_tags,
            )
        except TrackingError as exc:
            run.tracking_error = str(exc)
    return run
