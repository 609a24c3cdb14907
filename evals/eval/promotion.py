"""Promotion gate on labelled sets: candidate vs champion, paired, overall and per required slice.

Job: `eval_gate(files, ...)` returns a `pipelines.registry.PromotionCheck` for
`registry.promote(extra_checks=[...])`. For every file it scores the candidate and the champion on
the same rows and emits one `ComparisonRow` per head (overall macro-F1) and per required slice
(e.g. `source=routellm_mmlu`). A row fails when the candidate's macro-F1 is lower than the
champion's by more than the tolerance (absolute), the same rule the registry applies to the
stored test metrics; the note carries the paired-bootstrap 95% interval of the difference so a
reviewer can tell a real regression from noise. With no champion yet, rows only record the
candidate's numbers and pass.

Trade-off: the point-estimate rule is simple and matches `tierroute promote`; a purely
interval-based rule would let large regressions through on small slices. Slices smaller than
`min_rows` are reported but never block (their estimates are too noisy to gate on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.io.models import ModelError, head_labels, load_bundle, predict_in_batches, resolve_model
from evals.io.tables import label_columns, read_table, select_split
from evals.stats.bootstrap import paired_bootstrap_diff
from pipelines.train.reference_stats import label_indices
from serving.model.bundle import read_manifest

ALL_SLICES = "*"
AUTO_SPLIT = "auto"


def _predictions(uri: str, texts: list[str], tracking_uri: str | None) -> tuple[dict[str, np.ndarray], Any]:
    bundle = load_bundle(resolve_model(uri, tracking_uri=tracking_uri))
    out = predict_in_batches(bundle, texts)
    return {h: p.argmax(axis=1) for h, p in out.probs.items()}, head_labels(bundle)


def eval_rows(path: Path, split: str | None) -> Any:
    """The rows of `path` the gate scores: one split, or with split "auto" the test split when the
    file has test rows (e.g. the shipped labelled data) and every row otherwise."""
    df = read_table(path)
    if split == AUTO_SPLIT:
        has_test = "split" in df.columns and bool((df["split"] == "test").any())
        split = "test" if has_test else None
    return select_split(df, split, path)


def promotion_checks(request: Any) -> list[Callable[[Any], list[Any]]]:
    """`pipelines.cli.registry.EvalCheckFactory`: validate the files now (bad input is exit 2, not
    a refused promotion), then gate on them at promotion time."""
    from evals.io.tables import InputError

    for path in request.files:
        try:
            df = eval_rows(Path(path), request.split)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        if request.required_slices and request.slice_column and request.slice_column not in df.columns:
            raise ValueError(f"{path}: --slice column {request.slice_column!r} is not in the file")
        unknown = [
            s
            for s in request.required_slices
            if s != ALL_SLICES
            and request.slice_column in df.columns
            and s not in set(df[request.slice_column].astype(str))
        ]
        if unknown:
            raise ValueError(
                f"{path}: required slice(s) {unknown} not found in column {request.slice_column!r}"
            )
    from evals.eval.routing_gate import routing_value_gate

    return [
        eval_gate(
            request.files,
            slice_column=request.slice_column,
            required_slices=request.required_slices,
            tolerance=request.tolerance,
            split=request.split,
        ),
        routing_value_gate(request.files, tolerance=request.tolerance, split=request.split),
    ]


def eval_gate(
    files: Sequence[Path],
    *,
    slice_column: str | None = "source",
    required_slices: Sequence[str] = (),
    tolerance: float | None = None,
    min_rows: int = 30,
    split: str | None = None,
    n_boot: int = 1000,
) -> Callable[[Any], list[Any]]:
    """A promotion check evaluating candidate and champion on `files`.

    required_slices: values of `slice_column` that must not regress (`"*"` = every slice with at
    least `min_rows` labelled rows). tolerance: defaults to the gate's own tolerance."""
    # Over 60 lines: one scoring pass per eval set whose rows feed every slice; kept with its loop.
    from pipelines.registry import ComparisonRow

    def check(ctx: Any) -> list[Any]:
        tol = ctx.tolerance if tolerance is None else tolerance
        rows: list[Any] = []
        for path in files:
            df = eval_rows(Path(path), split)
            texts = [str(t) for t in df["text"].tolist()]
            cand_pred, heads = _predictions(ctx.candidate.uri, texts, ctx.tracking_uri)
            champ_pred = None
            if ctx.champion is not None:
                champ_pred, champ_heads = _predictions(ctx.champion.uri, texts, ctx.tracking_uri)
                heads = {h: labs for h, labs in heads.items() if champ_heads.get(h) == labs}
            labels = label_columns(df, heads)
            groups: list[tuple[str, np.ndarray, bool]] = [("all", np.ones(len(df), bool), True)]
            if slice_column and slice_column in df.columns:
                values = df[slice_column].astype(str).to_numpy()
                for v in sorted(set(values.tolist())):
                    required = ALL_SLICES in required_slices or v in required_slices
                    if required or required_slices:
                        groups.append((f"{slice_column}={v}", values == v, required))
            for head, vals in labels.items():
                y = label_indices(vals, heads[head], head)
                k = len(heads[head])
                for name, mask, required in groups:
                    m = mask & (y >= 0)
                    metric = f"{Path(path).name}:{name}:{head}_macro_f1"
                    n = int(m.sum())
                    if n == 0:
                        continue
                    if champ_pred is None:
                        d = paired_bootstrap_diff(y[m], cand_pred[head][m], cand_pred[head][m], k, n_boot=100)
                        rows.append(ComparisonRow(metric, None, d.current, None, True, f"no champion; n={n}"))
                        continue
                    d = paired_bootstrap_diff(y[m], champ_pred[head][m], cand_pred[head][m], k, n_boot=n_boot)
                    worse = -d.delta.estimate
                    gating = required and n >= min_rows
                    ok = (not gating) or worse <= tol + 1e-12
                    note = (
                        f"n={n}, paired 95% CI of delta [{d.delta.low:+.3f}, {d.delta.high:+.3f}]"
                        + ("" if gating else " (informational: not required or too small)")
                        + ("" if ok else f"; worse by {worse:.3f} > tolerance {tol:g}")
                    )
                    rows.append(ComparisonRow(metric, d.reference, d.current, d.delta.estimate, ok, note))
        return rows

    check.__name__ = "eval_gate"
    return check


def _test_rows_of(version: Any, tracking_uri: str | None) -> tuple[Any, str]:
    """The test split a registered version was measured on: (DataFrame, description).

    The bundle records its training file's path and digest; the file is re-read with the project's
    loader (same derived ids and splits) and must still have that digest. Raises ValueError saying
    why the rows are not available."""
    from pipelines.data.dataset import DataValidationError, load_labelled_file

    handle = resolve_model(version.uri, tracking_uri=tracking_uri)
    manifest = read_manifest(handle.bundle_dir)
    info = manifest.get("training_data") or {}
    path, digest = info.get("path"), info.get("digest")
    if not path or not digest:
        raise ValueError(f"v{version.version}'s bundle does not record its training data")
    heads = head_labels(load_bundle(handle))
    file = Path(path)
    if not file.is_file():
        raise ValueError(
            f"v{version.version} was trained on {path}, which is not found from {Path.cwd()} "
            "(run promote from the project directory it was trained in)"
        )
    try:
        data = load_labelled_file(  # rows may leave heads unlabelled, as `train` allows
            file,
            tuple(heads),
            {h: list(labs) for h, labs in heads.items()},
            min_rows_per_class=1,
            allow_missing_labels=True,
        )
    except (DataValidationError, ValueError) as exc:
        raise ValueError(f"v{version.version}'s training file {path} no longer reads: {exc}") from None
    if data.digest != digest:
        raise ValueError(
            f"v{version.version}'s training file {path} changed since training "
            f"(digest {data.digest[:12]}, recorded {str(digest)[:12]})"
        )
    test = data.split("test")
    if test.empty:
        raise ValueError(f"v{version.version}'s training file {path} has no test rows")
    return test, f"v{version.version} test rows ({path}, {len(test)} rows)"


def same_rows_check(ctx: Any, *, n_boot: int = 1000) -> list[Any]:
    """`pipelines.registry.promote(same_rows_check=...)`: champion and candidate trained on different
    data are both scored on the champion's test rows and on the candidate's, per shared head (same
    label list; a head only one of them has, e.g. a new `domain`, is not compared). A macro-F1 drop
    beyond the tolerance on either set refuses; rows that are not available refuse too (with
    the reason), so only --force promotes without a like-for-like comparison."""
    from pipelines.registry import ComparisonRow

    if ctx.champion is None:
        return []
    rows: list[Any] = []
    for owner, version in (("champion", ctx.champion), ("candidate", ctx.candidate)):
        metric = f"{owner} test rows"
        try:
            df, where = _test_rows_of(version, ctx.tracking_uri)
        except (ValueError, ModelError) as exc:
            rows.append(
                ComparisonRow(metric, None, None, None, False, f"not available: {exc}; --force to override")
            )
            continue
        texts = [str(t) for t in df["text"].tolist()]
        champ_pred, champ_heads = _predictions(ctx.champion.uri, texts, ctx.tracking_uri)
        cand_pred, cand_heads = _predictions(ctx.candidate.uri, texts, ctx.tracking_uri)
        shared = {h: labs for h, labs in cand_heads.items() if champ_heads.get(h) == labs and h in df.columns}
        if not shared:
            rows.append(ComparisonRow(metric, None, None, None, False, f"no shared head labelled in {where}"))
            continue
        for head, labs in shared.items():
            y = label_indices(df[head].tolist(), labs, head)
            m = y >= 0
            d = paired_bootstrap_diff(y[m], champ_pred[head][m], cand_pred[head][m], len(labs), n_boot=n_boot)
            worse = -d.delta.estimate
            ok = worse <= ctx.tolerance + 1e-12
            note = f"same rows: {where}; paired 95% CI of delta [{d.delta.low:+.3f}, {d.delta.high:+.3f}]" + (
                "" if ok else f"; worse by {worse:.3f} > tolerance {ctx.tolerance:g}"
            )
            rows.append(
                ComparisonRow(
                    f"{owner} rows: {head}_macro_f1", d.reference, d.current, d.delta.estimate, ok, note
                )
            )
    return rows
