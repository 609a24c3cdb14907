"""`tierroute drift`: resolve the reference and the current set, run the checks, write and log the report.

Job: the glue between files/registry and `evals.drift.checks.compare`:
- `--reference` is one of: a `reference_stats.npz`; a bundle folder or `models:/` URI whose bundle
  carries `reference_stats.npz` (written at training time, on the test split; for registered
  versions the training run's `reference/reference_stats.npz` artifact is the fallback); or a
  labelled/unlabelled data file, summarised on the fly with `--model` (its `test` split when it has
  a `split` column, unless `--reference-split` says otherwise).
- `--current` is a data file (labels optional) or a prediction log from `serving.prediction_log`
  (predictions are taken from the log; texts, when logged, are re-embedded for the input checks).
- The model that scores the current set is `--model`, else the reference's model.
Exit codes: 0 no drift, 1 drift, 2 bad input (unreadable file, unknown labels, missing reference).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.drift.checks import DriftConfig, DriftResult, compare
from evals.io.models import (
    ModelError,
    ModelHandle,
    head_labels,
    load_bundle,
    predict_in_batches,
    resolve_model,
)
from evals.io.tables import (
    TABLE_SUFFIXES,
    InputError,
    LoggedPredictions,
    is_log,
    label_columns,
    read_logged_predictions,
    read_table,
    select_split,
)
from pipelines.train.reference_stats import FILENAME, ReferenceStats, ReferenceStatsError, compute_stats
from serving.model.bundle import BundleError, read_manifest

REFERENCE_ARTIFACT = f"reference/{FILENAME}"
AUTO = "auto"


MIN_CURRENT_ROWS = 30
"""Fewer current rows than this and no check has the power to see anything but a gross shift, so
"no drift" would be a claim the data cannot support: `tierroute drift` refuses (exit 2) instead."""


class DriftInputError(Exception):
    """Anything the user must fix before drift can run (exit status 2)."""


@dataclass
class DriftRun:
    result: DriftResult
    reference: ReferenceStats
    current: ReferenceStats
    model: ModelHandle | None
    report: dict[str, Path]
    run_id: str | None = None
    tracking_error: str | None = None


def _stats_from_table(
    path: Path, split: str | None, handle: ModelHandle, seed: int, role: str
) -> ReferenceStats:
    df = select_split(read_table(path), split, path)
    bundle = load_bundle(handle)
    heads = head_labels(bundle)
    texts = [str(t) for t in df["text"].tolist()]
    out = predict_in_batches(bundle, texts)
    try:
        return compute_stats(
            out.probs,
            heads,
            labels=label_columns(df, heads) or None,
            token_counts=out.token_counts,
            truncated=out.truncated,
            embeddings=out.embedding,
            texts=texts,
            meta={"source": str(path), "split": split or "all", "model": handle.label, "role": role},
            seed=seed,
        )
    except ValueError as exc:
        raise DriftInputError(f"{path}: {exc}") from exc


def _stats_from_log(
    path: Path, logged: LoggedPredictions, handle: ModelHandle | None, seed: int
) -> ReferenceStats:
    embeddings = None
    if logged.texts is not None and handle is not None:
        out = predict_in_batches(load_bundle(handle), logged.texts)
        embeddings = out.embedding
    return compute_stats(
        logged.probs,
        logged.heads,
        token_counts=logged.token_counts,
        truncated=logged.truncated,
        embeddings=embeddings,
        texts=logged.texts,
        meta={
            "source": str(path),
            "kind": "prediction log",
            "model": ", ".join(f"{k} ({v} rows)" for k, v in logged.models.items()),
        },
        seed=seed,
    )


def _is_table(spec: str) -> bool:
    return Path(spec).suffix.lower() in TABLE_SUFFIXES and Path(spec).is_file()


def resolve_reference(
    spec: str, model: str | None, split: str | None, seed: int, cache_dir: Path | None
) -> tuple[ReferenceStats, ModelHandle | None]:
    """The reference statistics and, when the reference names one, its model."""
    if spec.endswith(".npz"):
        try:
            return ReferenceStats.load(Path(spec)), (
                resolve_model(model, cache_dir=cache_dir) if model else None
            )
        except ReferenceStatsError as exc:
            raise DriftInputError(str(exc)) from exc
    if _is_table(spec):
        if model is None:
            raise DriftInputError(f"--reference {spec} is a data file: pass --model to score it")
        handle = resolve_model(model, cache_dir=cache_dir)
        path = Path(spec)
        if split == AUTO:
            split = _auto_split(path)
        return _stats_from_table(path, split, handle, seed, "reference"), handle
    handle = resolve_model(spec, cache_dir=cache_dir)
    stats_file = handle.bundle_dir / FILENAME
    if not stats_file.is_file() and handle.run_id:
        import tempfile

        from pipelines.registry.tracking import download_run_artifact

        got = download_run_artifact(
            handle.run_id, REFERENCE_ARTIFACT, Path(tempfile.mkdtemp(prefix="tierroute-ref-"))
        )
        if got is not None:
            stats_file = got
    if not stats_file.is_file():
        raise DriftInputError(
            f"{handle.label} carries no {FILENAME}: pass a labelled data file as --reference "
            "(with --model) or retrain with a tierroute that stores reference statistics"
        )
    try:
        stats = ReferenceStats.load(stats_file)
    except ReferenceStatsError as exc:
        raise DriftInputError(str(exc)) from exc
    stats.meta.setdefault("model", handle.label)
    try:
        training = read_manifest(handle.bundle_dir, verify_files=False).get("training_data") or {}
    except BundleError:
        training = {}
    if training.get("digest"):
        stats.meta.setdefault("digest", training["digest"])
    return stats, (resolve_model(model, cache_dir=cache_dir) if model else handle)


def _auto_split(path: Path) -> str | None:
    df = read_table(path)
    if "split" in df.columns and (df["split"] == "test").any():
        return "test"
    return None


def run_drift(
    reference: str,
    current: Path,
    *,
    model: str | None = None,
    out_dir: Path | None = None,
    config: DriftConfig | None = None,
    reference_split: str | None = AUTO,
    current_split: str | None = None,
    log_to_mlflow: bool = True,
    cache_dir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> DriftRun:
    """Everything `tierroute drift` does; raises DriftInputError / InputError / ModelError on bad input."""
    # Over 60 lines: the command's steps in order (reference, current, compare, report, log), each a named
    # call.
    from evals.drift.report import write_drift_report

    config = config or DriftConfig()
    current = Path(current)
    if not current.is_file():
        raise DriftInputError(f"current set not found: {current}")
    ref_stats, handle = resolve_reference(reference, model, reference_split, config.seed, cache_dir)
    echo(f"reference: {ref_stats.n_rows} rows ({ref_stats.meta.get('source', reference)})")
    if is_log(current):
        logged = read_logged_predictions(current, {n: h.labels for n, h in ref_stats.heads.items()})
        cur_stats = _stats_from_log(current, logged, handle, config.seed + 7)
    else:
        if handle is None:
            raise DriftInputError(
                "the current set is a data file: pass --model (or a model-version --reference)"
            )
        cur_stats = _stats_from_table(current, current_split, handle, config.seed + 7, "current")
    echo(f"current: {cur_stats.n_rows} rows ({current})")
    if cur_stats.n_rows < MIN_CURRENT_ROWS:
        raise DriftInputError(
            f"{current}: {cur_stats.n_rows} row(s) is too few for the drift tests to have power "
            f"(minimum {MIN_CURRENT_ROWS}); a 'no drift' answer would mean nothing. Collect more rows."
        )
    result = compare(ref_stats, cur_stats, config)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir is not None else Path("reports") / "drift" / stamp
    report = write_drift_report(result, ref_stats, cur_stats, out, title=f"Drift report: {current.name}")
    run = DriftRun(result, ref_stats, cur_stats, handle, report)
    if log_to_mlflow:
        from pipelines.registry.tracking import TrackingError, log_run

        metrics: dict[str, Any] = {
            "drift": float(result.drift),
            "checks_flagged": float(sum(c.drift for c in result.checks)),
        }
        for c in result.checks:
            metrics[f"{c.name}.p"] = c.p_value
            metrics[f"{c.name}.adjusted_p"] = c.adjusted_p
            metrics[f"{c.name}.{c.effect_name}"] = c.effect
        try:
            run.run_id = log_run(
                kind="drift",
                run_name=f"drift-{current.stem}-{stamp}",
                params={"reference": reference, "current": str(current), **config.to_dict()},
                metrics=metrics,
                tags={"tierroute.drift": "true" if result.drift else "false"},
                report_dir=out,
                model_name=handle.name if handle and handle.registered else None,
                model_version=handle.version if handle else None,
                version_tags={"last_drift_result": "drift" if result.drift else "no drift"},
            )
        except TrackingError as exc:
            run.tracking_error = str(exc)
    return run


BAD_INPUT = (DriftInputError, InputError, ModelError)
