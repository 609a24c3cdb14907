"""Leave-one-source-out (LOSO) routing value: how well a router trained elsewhere routes a new source.

Job: for every outcome source, train a router without that source's rows, score the held-out rows
and report APGR and the strong-model share needed for 50% / 80% of the quality gap (CPT(50%),
CPT(80%)), each with a bootstrap interval, next to fixed baselines on the same rows: prompt length
(longer -> strong), random routing (a constant score: APGR exactly 0.5) and any precomputed score
such as the previous default model's `complexity`.

Trade-offs: a source is the unit of transfer because a deployment's traffic is a new source; a
random split would reward learning each source's style. Bootstrap intervals resample rows of the
held-out source only (the training rows are fixed), so they show evaluation noise, not training
noise. Sources with fewer than `min_rows` rows are skipped (their APGR interval would be too wide to
choose by).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from pipelines.train.routing_value import RoutingValue, evaluate_router

FitScore = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(train mask, held-out mask) -> score of the held-out rows (higher: send to the strong model)."""


@dataclass(frozen=True)
class LosoResult:
    source: str
    rows: int
    router: str
    value: RoutingValue
    held_out: bool
    """False for a fixed baseline score that may have seen this source (e.g. the previous model)."""

    def to_dict(self) -> dict[str, object]:
        head = {"source": self.source, "rows": self.rows, "router": self.router, "held_out": self.held_out}
        return head | self.value.to_dict()


def leave_one_source_out(
    sources: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    routers: Mapping[str, FitScore],
    baselines: Mapping[str, np.ndarray] | None = None,
    *,
    seen_by: Mapping[str, set[str]] | None = None,
    min_rows: int = 100,
    n_boot: int = 500,
    seed: int = 0,
) -> list[LosoResult]:
    """LOSO routing value of every router, plus baselines and random, per held-out source.

    `routers` are trained per fold through their `FitScore`; `baselines` are fixed per-row scores.
    `seen_by[name]` names the sources a baseline was trained on (marked `held_out=False` there).
    """
    src = np.asarray(sources).astype(str)
    w = np.asarray(weak, dtype=np.float64)
    s = np.asarray(strong, dtype=np.float64)
    if not (src.shape == w.shape == s.shape) or src.ndim != 1:
        raise ValueError("sources, weak and strong must be 1-D arrays of equal length")
    results: list[LosoResult] = []
    for source in sorted(set(src.tolist())):
        test = src == source
        n = int(test.sum())
        if n < min_rows or not np.any(~test):
            continue
        scored: list[tuple[str, np.ndarray, bool]] = [("random", np.zeros(n), True)]
        for name, base in (baselines or {}).items():
            held = source not in (seen_by or {}).get(name, set())
            scored.append((name, np.asarray(base, dtype=np.float64)[test], held))
        for name, fit_score in routers.items():
            scored.append((name, np.asarray(fit_score(~test, test), dtype=np.float64), True))
        for name, score, held in scored:
            value = evaluate_router(name, score, w[test], s[test], n_boot=n_boot, seed=seed)
            results.append(LosoResult(source, n, name, value, held))
    return results


def markdown_table(results: list[LosoResult]) -> str:
    """One line per (source, router): APGR [95% CI], CPT(50%), CPT(80%)."""
    lines = [
        "| held-out source | rows | router | APGR [95% CI] | CPT(50%) | CPT(80%) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        a = r.value.apgr
        mark = "" if r.held_out else " (saw this source)"
        lines.append(
            f"| {r.source} | {r.rows:,} | {r.router}{mark} | {a.estimate:.3f} [{a.low:.3f}, {a.high:.3f}] | "
            f"{r.value.share_for_50.estimate:.2f} | {r.value.share_for_80.estimate:.2f} |"
        )
    return "\n".join(lines)


def mean_apgr(results: list[LosoResult], router: str) -> float:
    """Mean held-out APGR of one router over the sources it was scored on (NaN if none)."""
    values = [r.value.apgr.estimate for r in results if r.router == router]
    return float(np.mean(values)) if values else float("nan")


# ------------------------------------------------------------------------------ `tierroute train`'s report

HEAD_ROUTER = "routing head"
LENGTH_ROUTER = "prompt length"
PREVIOUS_ROUTER = "previous champion (complexity)"
_METRIC_PREFIX = {HEAD_ROUTER: "loso", LENGTH_ROUTER: "loso_length", "random": "loso_random"}


def routing_loso(
    sources: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    log_tokens: np.ndarray,
    fit_score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    previous: np.ndarray | None = None,
    min_rows: int = 100,
    n_boot: int = 200,
    seed: int = 0,
) -> list[LosoResult]:
    """LOSO of the routing head on every source with quality rows (NaN quality rows: training only).

    `fit_score(train_sources_mask_over_all_rows, held_out_rows_mask)` trains on every row whose source
    is not the held-out one and returns the held-out rows' "send to strong" score."""
    src = np.asarray(sources).astype(str)
    w = np.asarray(weak, dtype=np.float64)
    s = np.asarray(strong, dtype=np.float64)
    scored = np.isfinite(w) & np.isfinite(s)
    q_src = src[scored]

    def fold(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        del train
        held = set(q_src[test].tolist())
        test_all = np.zeros(src.size, dtype=bool)
        test_all[np.flatnonzero(scored)[test]] = True
        return fit_score(~np.isin(src, list(held)), test_all)

    baselines: dict[str, np.ndarray] = {LENGTH_ROUTER: np.asarray(log_tokens, dtype=np.float64)[scored]}
    if previous is not None:
        baselines[PREVIOUS_ROUTER] = np.asarray(previous, dtype=np.float64)
    return leave_one_source_out(
        q_src,
        w[scored],
        s[scored],
        {HEAD_ROUTER: fold},
        baselines,
        seen_by={PREVIOUS_ROUTER: set(q_src.tolist())},
        min_rows=min_rows,
        n_boot=n_boot,
        seed=seed,
    )


def loso_metrics(results: list[LosoResult]) -> dict[str, float]:
    """MLflow metrics of a LOSO report: `loso_apgr_<source>`, `loso_cpt50_<source>`, `loso_cpt80_<source>`
    for the routing head (prefix `loso_length_`, `loso_random_`, `loso_previous_` for the baselines),
    plus `loso_apgr_mean` / `loso_apgr_min` (and the baselines' means). NaN values are left out."""
    out: dict[str, float] = {}
    prefix = _METRIC_PREFIX | {PREVIOUS_ROUTER: "loso_previous"}
    per_router: dict[str, list[float]] = {}
    for r in results:
        p = prefix.get(r.router)
        if p is None:
            continue
        keyed = {
            f"{p}_apgr_{r.source}": r.value.apgr.estimate,
            f"{p}_cpt50_{r.source}": r.value.share_for_50.estimate,
            f"{p}_cpt80_{r.source}": r.value.share_for_80.estimate,
        }
        out.update({k: float(v) for k, v in keyed.items() if np.isfinite(v)})
        if np.isfinite(r.value.apgr.estimate):
            per_router.setdefault(p, []).append(float(r.value.apgr.estimate))
    for p, values in per_router.items():
        out[f"{p}_apgr_mean"] = float(np.mean(values))
        out[f"{p}_apgr_min"] = float(np.min(values))
    return out
