"""`tierroute bench classify`: in-process latency of a bundle and training embedding throughput.

Job: a rerunnable benchmark (never a timed test) that prints p50/p99 tables. Inputs are built
to an exact token count by cutting a fixed English paragraph with the bundle's own tokenizer,
so runs are comparable across machines and bundles. Timings on a 2-core box drift 20-30% from
run to run: compare numbers from one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from serving.model.bundle import TOKENIZER_FILE, Bundle
from serving.model.textprep import TextTokenizer, TruncationSpec

PARAGRAPH = (
    "Our support team received a request from a customer who wants to understand why the invoice "
    "for the last quarter shows a higher amount than the contract states. Please explain the likely "
    "causes, list the documents we should check, and draft a short, polite reply that asks for the "
    "account number and the invoice date so that the billing department can investigate the issue. "
)


def text_of_tokens(tokenizer_json: Path, n_tokens: int) -> str:
    """A real-English text of exactly `n_tokens` WordPiece tokens (without special tokens)."""
    tok = TextTokenizer(tokenizer_json, TruncationSpec(max_tokens=512, strategy="head"))
    raw = tok._tok  # the underlying tokenizers.Tokenizer (padding/truncation already off)
    reps = 1 + n_tokens // 40
    ids = raw.encode(PARAGRAPH * reps, add_special_tokens=False).ids[:n_tokens]
    text: str = raw.decode(ids)
    return text


@dataclass
class LatencyRow:
    tokens: int
    batch: int
    threads: int
    p50_ms: float
    p99_ms: float
    per_text_ms: float


def measure(fn: Callable[[], object], repeats: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        fn()
    samples = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        fn()
        samples[i] = (time.perf_counter() - t) * 1000.0
    return samples


def bench_bundle(
    bundle_dir: Path,
    token_sizes: Sequence[int] = (16, 64, 256, 1024),
    batches: Sequence[int] = (1, 32),
    threads: Sequence[int] = (1, 2),
    repeats: int = 100,
) -> list[LatencyRow]:
    rows: list[LatencyRow] = []
    for th in threads:
        bundle = Bundle.load(bundle_dir, threads=th)
        for n in token_sizes:
            text = text_of_tokens(bundle_dir / TOKENIZER_FILE, n)
            for b in batches:
                texts = [text] * b
                reps = max(10, repeats // b) if b > 1 else repeats
                s = measure(partial(bundle.predict, texts), reps)
                rows.append(
                    LatencyRow(
                        n,
                        b,
                        th,
                        float(np.percentile(s, 50)),
                        float(np.percentile(s, 99)),
                        float(np.median(s) / b),
                    )
                )
    return rows


def bench_embedding_throughput(
    texts: Sequence[str],
    spec: TruncationSpec,
    threads: int = 2,
    encoder_cache: Path = Path("models/encoder"),
    precision: str = "fp32",
) -> float:
    """Texts/s of the training embedder (cache off, length-sorted batches as `train` runs them)."""
    from pipelines.train.embed import Embedder
    from pipelines.train.encoder_export import export_encoder

    encoder = export_encoder(encoder_cache, precision)  # type: ignore[arg-type]
    batch = 1 if precision == "int8" else 16  # dynamic int8 trains one text per call
    embedder = Embedder(encoder, spec, cache_dir=None, threads=threads, batch_size=batch)
    embedder.encode_uncached(list(texts[:32]))  # warm-up
    t = time.perf_counter()
    embedder.encode_uncached(list(texts))
    return len(texts) / (time.perf_counter() - t)


def latest_bundle(root: Path = Path("models/bundles")) -> Path | None:
    candidates = sorted((p for p in root.glob("*/bundle.json")), key=lambda p: p.stat().st_mtime)
    return candidates[-1].parent if candidates else None
