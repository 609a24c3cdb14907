"""Measure the drift checks: false-alarm rate on clean re-splits, detection of injected drift.

Job: `tierroute bench drift` and the drift tests share this code. A held-out pool (labelled rows
the model never trained on) is scored once; then
- `false_alarms`: for each seed, the pool is shuffled and cut into a disjoint reference and
  current set from the same distribution; the share of seeds with any drift flagged estimates the
  family-wise false-alarm rate (it should stay at or below alpha);
- `injected`: four known shifts (`evals.drift.synthetic`: source mix, another script, flipped
  labels, truncated texts) are applied to a current set and every flagged check is recorded.
Re-splits reuse the pool's predictions and embeddings (row indices), so one seed costs one
`compare`; only transliterated and truncated texts are re-encoded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evals.drift.checks import DriftConfig, DriftResult, compare
from evals.drift.synthetic import flip_labels, resample_sources, to_other_script, truncate_words
from evals.io.tables import label_columns
from evals.stats.shift_tests import holm
from pipelines.train.reference_stats import ReferenceStats, compute_stats
from serving.model.bundle import Bundle, BundleOutput


@dataclass
class Pool:
    """A scored held-out set: the DataFrame (with a `row` column) and the model outputs per row."""

    df: Any
    out: BundleOutput
    heads: dict[str, tuple[str, ...]]

    def stats(
        self, rows: np.ndarray, *, labelled: bool = True, df: Any = None, seed: int = 0
    ) -> ReferenceStats:
        """Statistics of pool rows `rows`; `df` (same length as rows) may override texts/labels."""
        frame = self.df.iloc[rows] if df is None else df
        labels = label_columns(frame, self.heads) if labelled else {}
        return compute_stats(
            {h: p[rows] for h, p in self.out.probs.items()},
            self.heads,
            labels=labels or None,
            token_counts=self.out.token_counts[rows],
            truncated=self.out.truncated[rows],
            embeddings=self.out.embedding[rows],
            texts=[str(t) for t in frame["text"].tolist()],
            seed=seed,
        )


def make_pool(bundle: Bundle, df: Any, n: int | None = None, seed: int = 0) -> Pool:
    from evals.io.models import predict_in_batches

    frame = df if n is None or n >= len(df) else df.sample(n=n, random_state=seed)
    frame = frame.reset_index(drop=True).copy()
    frame["row"] = np.arange(len(frame))
    out = predict_in_batches(bundle, [str(t) for t in frame["text"].tolist()])
    return Pool(frame, out, {h.name: h.labels for h in bundle.heads})


def _stats_for_texts(
    bundle: Bundle, frame: Any, heads: Mapping[str, Sequence[str]], seed: int
) -> ReferenceStats:
    from evals.io.models import predict_in_batches

    texts = [str(t) for t in frame["text"].tolist()]
    out = predict_in_batches(bundle, texts)
    return compute_stats(
        out.probs,
        heads,
        labels=label_columns(frame, heads) or None,
        token_counts=out.token_counts,
        truncated=out.truncated,
        embeddings=out.embedding,
        texts=texts,
        seed=seed,
    )


def false_alarms(
    pool: Pool,
    seeds: Sequence[int],
    *,
    n_ref: int,
    n_cur: int,
    config: DriftConfig,
    alphas: Sequence[float] = (0.01, 0.05, 0.1),
    labelled: bool = True,
) -> dict[str, Any]:
    """Family-wise false-alarm rate over clean re-splits, at `config.alpha` (with effect floors) and,
    from the same raw p-values, at each of `alphas` (Holm, no floors: the test's own level)."""
    n = len(pool.df)
    if n_ref + n_cur > n:
        raise ValueError(f"pool of {n} rows cannot give {n_ref} + {n_cur} disjoint rows")
    alarms = 0
    by_alpha = dict.fromkeys(alphas, 0)
    per_check: dict[str, int] = {}
    raw: list[list[float]] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        perm = rng.permutation(n)
        ref = pool.stats(perm[:n_ref], seed=seed)
        cur = pool.stats(perm[n_ref : n_ref + n_cur], labelled=labelled, seed=seed + 1)
        res = compare(ref, cur, replace(config, seed=seed))
        alarms += res.drift
        for c in res.checks:
            per_check[c.name] = per_check.get(c.name, 0) + int(c.p_value <= config.alpha)
        p = [c.p_value for c in res.checks]
        raw.append(p)
        adj = holm(p)
        for a in alphas:
            by_alpha[a] += bool(np.any(adj <= a))
    k = len(seeds)
    return {
        "seeds": k,
        "n_ref": n_ref,
        "n_cur": n_cur,
        "alarms": alarms,
        "rate": alarms / k,
        "rate_by_alpha": {str(a): by_alpha[a] / k for a in alphas},
        "unadjusted_rejections_per_check": {name: v / k for name, v in per_check.items()},
        "raw_p_values": raw,
    }


SCENARIOS = ("source_mix", "other_script", "flipped_labels", "truncated")


def injected(
    pool: Pool,
    bundle: Bundle,
    *,
    n_ref: int,
    n_cur: int,
    config: DriftConfig,
    seed: int = 0,
    flip_share: float = 0.3,
    scenarios: Sequence[str] = SCENARIOS,
) -> dict[str, DriftResult]:
    """Run each injected-drift scenario against a reference drawn from the same pool."""
    n = len(pool.df)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    ref_rows, rest = perm[:n_ref], perm[n_ref:]
    ref = pool.stats(ref_rows, seed=seed)
    cur_rows = rest[:n_cur]
    cur_df = pool.df.iloc[cur_rows].reset_index(drop=True)
    results: dict[str, DriftResult] = {}
    for name in scenarios:
        if name == "source_mix":
            rest_df = pool.df.iloc[rest]
            counts = rest_df["source"].value_counts()
            top = [s for s in counts.index[:3]]
            maths = [s for s in counts.index if any(k in str(s) for k in ("gsm8k", "math", "svamp"))]
            chosen = (maths[:2] + [s for s in top if s not in maths])[:3]
            weights = dict(zip(chosen, (0.6, 0.3, 0.1), strict=False))
            frame = resample_sources(rest_df, weights, n_cur, seed=seed)
            cur = pool.stats(frame["row"].to_numpy(), seed=seed + 1)
        elif name == "other_script":
            cur = _stats_for_texts(bundle, to_other_script(cur_df, 1.0, seed), pool.heads, seed + 1)
        elif name == "flipped_labels":
            frame = cur_df
            for head, labs in pool.heads.items():
                if head in frame.columns:
                    frame = flip_labels(frame, head, labs, flip_share, seed)
            cur = pool.stats(cur_rows, df=frame, seed=seed + 1)
        elif name == "truncated":
            cur = _stats_for_texts(bundle, truncate_words(cur_df, 6), pool.heads, seed + 1)
        else:
            raise ValueError(f"unknown scenario {name!r}; choose from {SCENARIOS}")
        results[name] = compare(ref, cur, replace(config, seed=seed))
    return results
