"""Batch embeddings for training, with an on-disk cache.

Job: turn texts into the exact vectors serving computes. It runs the same exported ONNX encoder
and the same `serving.model.textprep` tokenisation the bundle uses, so training features and serving
features are identical by construction (not by a parity hope).

Trade-offs:
- Texts are sorted by length before batching: short texts are not padded to the longest text of
  a random batch, which is where most CPU time goes on mixed-length data.
- The cache is a set of `.npz` shards per (encoder sha256, truncation spec), keyed by sha256 of
  the text: training twice on the same texts never re-embeds, and a different encoder or
  truncation can never be served stale vectors. Shards are append-only; delete the folder to reset.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pipelines.train.encoder_export import EMBED_DIM, EncoderArtifact
from serving.model.bundle import BATCH_INVARIANT_PRECISIONS
from serving.model.onnx_session import make_session
from serving.model.textprep import TextTokenizer, TruncationSpec


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Embedder:
    """Embeds texts with an exported encoder; caches by content + encoder + truncation."""

    def __init__(
        self,
        encoder: EncoderArtifact,
        spec: TruncationSpec,
        cache_dir: Path | None = Path(".cache/embeddings"),
        threads: int = 2,
        batch_size: int = 16,
    ) -> None:
        self.encoder = encoder
        self.spec = spec
        self.tokenizer = TextTokenizer(encoder.tokenizer_path, spec)
        self.session = make_session(encoder.path, threads=threads)
        self.batch_size = batch_size
        self.dim = int(getattr(encoder, "dim", EMBED_DIM))  # a static encoder is narrower than MiniLM
        self.cache_dir: Path | None = None
        if cache_dir is not None:
            # a dynamic int8 embedding depends on its batch (activations are quantised per batch), so
            # the batch size is part of what identifies it; fp32 and int8-static are batch-invariant
            batching = f"|batch={batch_size}" if encoder.precision not in BATCH_INVARIANT_PRECISIONS else ""
            key = hashlib.sha256(
                (encoder.sha256 + json.dumps(spec.to_dict(), sort_keys=True) + batching).encode()
            ).hexdigest()[:16]
            self.cache_dir = Path(cache_dir) / key
        self._memory: dict[str, np.ndarray] | None = None
        self.last_stats: dict[str, float] = {}

    def _load_cache(self) -> dict[str, np.ndarray]:
        if self._memory is not None:
            return self._memory
        memory: dict[str, np.ndarray] = {}
        if self.cache_dir is not None and self.cache_dir.is_dir():
            for shard in sorted(self.cache_dir.glob("*.npz")):
                try:
                    with np.load(shard) as data:
                        for k, v in zip(data["keys"], data["vectors"], strict=True):
                            memory[str(k)] = v
                except (OSError, ValueError, KeyError):
                    shard.unlink(missing_ok=True)  # a corrupt shard is just a cache miss
        self._memory = memory
        return memory

    def _save_shard(self, keys: list[str], vectors: np.ndarray) -> None:
        if self.cache_dir is None or not keys:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        name = f"{int(time.time() * 1000)}-{os.getpid()}-{text_key(''.join(keys))[:8]}.npz"
        tmp = self.cache_dir / f".{name}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), vectors=vectors.astype(np.float32))
        os.replace(tmp, self.cache_dir / name)

    def encode_uncached(
        self, texts: Sequence[str], progress: bool = False, desc: str = "embedding"
    ) -> np.ndarray:
        """Embed without touching the cache, length-sorted batches."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        lengths = np.array([len(t) for t in texts])
        order = np.argsort(lengths, kind="stable")
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        iterator: Iterable[np.ndarray] = batches
        if progress:  # live bar on a terminal, a few lines in a log
            from pipelines.train.progress import progress as _progress

            iterator = _progress(batches, desc=desc, unit="batch")
        for idx in iterator:
            batch = self.tokenizer.encode_batch([texts[i] for i in idx])
            out[idx] = self.session.run(["embedding"], batch.feeds())[0]
        return out

    def embed(self, texts: Sequence[str], progress: bool = True, desc: str = "embedding") -> np.ndarray:
        """Embeddings [N, dim] float32 in input order; only unseen texts hit the encoder."""
        cache = self._load_cache()
        keys = [text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in cache and k not in missing:
                missing[k] = t
        start = time.perf_counter()
        if missing:
            new_keys = list(missing)
            vectors = self.encode_uncached([missing[k] for k in new_keys], progress=progress, desc=desc)
            for k, v in zip(new_keys, vectors, strict=True):
                cache[k] = v
            self._save_shard(new_keys, vectors)
        elapsed = time.perf_counter() - start
        self.last_stats = {
            "texts": float(len(texts)),
            "embedded": float(len(missing)),
            "cache_hits": float(len(texts) - len(missing)),
            "seconds": elapsed,
            "texts_per_s": len(missing) / elapsed if missing and elapsed > 0 else 0.0,
        }
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([cache[k] for k in keys]).astype(np.float32)
