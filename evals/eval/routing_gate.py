"""Promotion by routing value: refuse a candidate that routes worse than the champion on the same rows.

Job: `routing_value_gate(files)` is a promotion check (`pipelines.registry.PromotionCheck`) next to
the macro-F1 gate of `evals.eval.promotion`. For every eval file with per-model outcomes
(`evals.eval.evaluate.OUTCOME_COLUMNS`, e.g. `data/labelled/outcomes.parquet` or a log turned into
rows by `data from-log`), it scores candidate and champion `complexity` on the same rows, overall and
per `source` slice with >= `min_rows` rows, and fails a row when the candidate's APGR is lower than
the champion's by more than the tolerance: the same rule, and the same tolerance, as macro-F1.

Trade-off: the rows are whatever the files hold; the number is held out only if the candidate was
not trained on them (pass a source it did not see, or a later slice of traffic). The note carries
both APGR intervals so a reviewer can tell noise from a regression. With no champion, rows record
the candidate's APGR and pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.eval.evaluate import outcome_arrays, router_score
from evals.eval.routing_value import evaluate_router

ROUTER = "complexity"


def routing_rows(
    name: str,
    weak: np.ndarray,
    strong: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray | None,
    tolerance: float,
    *,
    n_boot: int = 500,
    seed: int = 0,
) -> list[Any]:
    """One `ComparisonRow` `<name>:apgr` for rows with both outcomes; none when there is no gap."""
    from pipelines.registry import ComparisonRow

    m = ~np.isnan(weak) & ~np.isnan(strong)
    n = int(m.sum())
    if n < 2 or float(strong[m].mean() - weak[m].mean()) <= 0:
        return []
    cand = evaluate_router("candidate", candidate[m], weak[m], strong[m], n_boot=n_boot, seed=seed).apgr
    metric = f"{name}:apgr"
    if champion is None:
        return [ComparisonRow(metric, None, cand.estimate, None, True, f"no champion; n={n}")]
    champ = evaluate_router("champion", champion[m], weak[m], strong[m], n_boot=n_boot, seed=seed).apgr
    delta = cand.estimate - champ.estimate
    ok = -delta <= tolerance + 1e-12
    note = (
        f"n={n}, APGR champion {champ.estimate:.3f} [{champ.low:.3f}, {champ.high:.3f}], "
        f"candidate {cand.estimate:.3f} [{cand.low:.3f}, {cand.high:.3f}]"
        + ("" if ok else f"; worse by {-delta:.3f} > tolerance {tolerance:g}")
    )
    return [ComparisonRow(metric, champ.estimate, cand.estimate, delta, ok, note)]


def _complexity(uri: str, texts: list[str], tracking_uri: str | None) -> np.ndarray:
    from evals.io.models import head_labels, load_bundle, predict_in_batches, resolve_model

    bundle = load_bundle(resolve_model(uri, tracking_uri=tracking_uri))
    out = predict_in_batches(bundle, texts)
    return router_score(ROUTER, out.probs, head_labels(bundle), out.p_weak_ok)


def routing_value_gate(
    files: Sequence[Path],
    *,
    tolerance: float | None = None,
    split: str | None = None,
    slice_column: str = "source",
    min_rows: int = 100,
    n_boot: int = 500,
) -> Callable[[Any], list[Any]]:
    """A promotion check comparing candidate and champion APGR on every file with outcomes."""
    from evals.eval.promotion import eval_rows

    def check(ctx: Any) -> list[Any]:
        tol = ctx.tolerance if tolerance is None else tolerance
        rows: list[Any] = []
        for path in files:
            df = eval_rows(Path(path), split)
            outcomes = outcome_arrays(df)
            if outcomes is None:
                continue
            _, weak, strong = outcomes
            texts = [str(t) for t in df["text"].tolist()]
            cand = _complexity(ctx.candidate.uri, texts, ctx.tracking_uri)
            champ = None if ctx.champion is None else _complexity(ctx.champion.uri, texts, ctx.tracking_uri)
            groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(df), dtype=bool))]
            if slice_column in df.columns:
                values = df[slice_column].astype(str).to_numpy()
                groups += [(f"{slice_column}={v}", values == v) for v in sorted(set(values.tolist()))]
            for name, mask in groups:
                if name != "all" and int(mask.sum()) < min_rows:
                    continue
                rows += routing_rows(
                    f"{Path(path).name}:{name}",
                    weak[mask],
                    strong[mask],
                    cand[mask],
                    None if champ is None else champ[mask],
                    tol,
                    n_boot=n_boot,
                )
        return rows

    check.__name__ = "routing_value_gate"
    return check
