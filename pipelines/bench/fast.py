"""`tierroute bench fast`: the static fast path, MiniLM-only and two-stage, timed in one run.

Job: a rerunnable benchmark (never a timed test) for a two-stage bundle. From its one folder it loads
the three variants: fast-only (the static first stage, as a plain bundle), MiniLM-only (`full/`) and
the two-stage bundle. It times batch-1 calls on texts of an exact token count (as `bench classify`)
and on real texts (each variant over the same rows, one call per text), and reports p50/p99, the
ratio to MiniLM measured in the same run, and the share of real texts the fast stage answered.
Timings on a busy 2-core box drift 20-30% between runs: read the ratios.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from pipelines.bench.classify import measure, text_of_tokens
from serving.model.bundle import TOKENIZER_FILE, Bundle, read_manifest
from serving.model.two_stage import TWO_STAGE_KEY, TwoStageBundle


@dataclass
class FastRow:
    variant: str
    inputs: str
    p50_ms: float
    p99_ms: float
    share_fast: float | None = None


def load_variants(two_stage_dir: Path, threads: int = 2) -> dict[str, Bundle]:
    """fast-only, MiniLM-only and two-stage bundles from one two-stage folder."""
    manifest = read_manifest(two_stage_dir)
    if TWO_STAGE_KEY not in manifest:
        raise ValueError(f"{two_stage_dir}: not a two-stage bundle (no '{TWO_STAGE_KEY}' block)")
    staged = TwoStageBundle(two_stage_dir, manifest, threads=threads)
    fast = Bundle(two_stage_dir, manifest, threads=threads)  # the first stage alone
    return {"fast-only": fast, "MiniLM-only": staged.full, "two-stage": staged}


def _per_text(bundle: Bundle, texts: Sequence[str]) -> tuple[np.ndarray, float | None]:
    """Latency (ms) of one batch-1 call per text, and the share answered by the fast stage."""
    import time

    for t in texts[:5]:
        bundle.predict([t])
    samples = np.empty(len(texts))
    fast = 0
    for i, t in enumerate(texts):
        start = time.perf_counter()
        pred = bundle.predict([t])[0]
        samples[i] = (time.perf_counter() - start) * 1000.0
        fast += pred.stage == "fast"
    share = fast / len(texts) if isinstance(bundle, TwoStageBundle) and len(texts) else None
    return samples, share


def bench_fast(
    two_stage_dir: Path,
    texts: Sequence[str],
    token_sizes: Sequence[int] = (64, 1024),
    repeats: int = 200,
    threads: int = 2,
) -> list[FastRow]:
    variants = load_variants(two_stage_dir, threads=threads)
    rows: list[FastRow] = []
    for n in token_sizes:
        text = text_of_tokens(Path(two_stage_dir) / TOKENIZER_FILE, n)
        for name, bundle in variants.items():
            s = measure(partial(bundle.predict, [text]), repeats)
            share = None
            if isinstance(bundle, TwoStageBundle):
                share = float(bundle.predict([text])[0].stage == "fast")
            rows.append(
                FastRow(name, f"{n} tokens", float(np.percentile(s, 50)), float(np.percentile(s, 99)), share)
            )
    if texts:
        for name, bundle in variants.items():
            s, share = _per_text(bundle, texts)
            rows.append(
                FastRow(
                    name,
                    f"{len(texts)} real texts",
                    float(np.percentile(s, 50)),
                    float(np.percentile(s, 99)),
                    share,
                )
            )
    return rows
