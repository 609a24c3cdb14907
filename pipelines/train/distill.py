"""Short offline distillation of a layer-truncated MiniLM toward the full model's embeddings.

Job: `tierroute train --encoder-layers N --distil` cuts MiniLM to its first N layers
(`pipelines.train.encoder_export`) and then nudges that student, for a bounded number of texts, to
reproduce the 6-layer teacher's pooled, normalised embedding of the same text (cosine loss), so the
heads trained on top see vectors closer to the ones they would have seen from the full model.

How: teacher vectors come from the exported 6-layer ONNX graph through `Embedder` (cached: training
embeds those texts anyway); the student is the torch BERT body cut to N layers with the same mean
pooling + L2 norm, trained with AdamW on CPU, seeded, on a seeded sample of the train split only
(no labels are read). Texts are tokenised by `serving.model.textprep`, exactly as at serving time.
The result is exported through the same path as any encoder (TorchScript export, ORT BERT fusion),
cached under `models/encoder/<source>/encoder.L{N}d-<digest>.fp32.onnx`, keyed by the texts, the
truncation and every training setting, so the same run twice reuses it.

Trade-off: a few minutes of CPU at training time for a student that has seen only this data
distribution; the full model's weights are the starting point, so nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.train.encoder_export import (
    FULL_LAYERS,
    EncoderArtifact,
    _export_fp32,
    _pooled_module,
    check_layers,
    export_encoder,
    load_torch_encoder,
    source_fingerprint,
)
from serving.model.bundle import sha256_file
from serving.model.textprep import TextTokenizer, TruncationSpec

DISTIL_VERSION = 1


@dataclass(frozen=True)
class DistilConfig:
    """Everything that shapes a distillation run (all of it is in the cache key)."""

    max_texts: int = 3000
    """Texts sampled (seeded) from those given; bounds the CPU time (~1 epoch over them)."""
    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-4
    seed: int = 0
    threads: int = 2


def _sample(texts: Sequence[str], n: int, seed: int) -> list[str]:
    unique = sorted(set(texts))
    if len(unique) <= n:
        return unique
    rng = np.random.default_rng(seed)
    return [unique[i] for i in sorted(rng.choice(len(unique), size=n, replace=False))]


def distil_truncated(
    layers: int,
    texts: Sequence[str],
    teacher_vectors: Callable[[Sequence[str]], np.ndarray],
    spec: TruncationSpec,
    cache_dir: Path = Path("models/encoder"),
    config: DistilConfig = DistilConfig(),
    progress: bool = True,
    echo: Callable[[str], Any] = print,
) -> EncoderArtifact:
    """A `layers`-layer MiniLM distilled toward `teacher_vectors` (the 6-layer embedding of a text)
    on a seeded sample of `texts`; exported, fused and cached like `export_encoder`'s output."""
    layers = check_layers(layers)
    if layers == FULL_LAYERS:
        raise ValueError("distillation needs a truncated student (layers < 6)")
    sample = _sample(texts, config.max_texts, config.seed)
    if not sample:
        raise ValueError("distillation needs at least one text")
    key = hashlib.sha256(
        json.dumps(
            {
                "v": DISTIL_VERSION,
                "layers": layers,
                "spec": spec.to_dict(),
                "config": asdict(config),
                "texts": hashlib.sha256("\0".join(sample).encode("utf-8")).hexdigest(),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    full = export_encoder(cache_dir, "fp32")  # its tokenizer.json, and the source it starts from
    target = Path(cache_dir) / source_fingerprint()[:16]
    model_path = target / f"encoder.L{layers}d-{key}.fp32.onnx"
    meta_path = model_path.with_suffix(".json")
    if model_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return EncoderArtifact(
            model_path, meta["sha256"], full.tokenizer_path, "fp32", layers=layers, distilled=True
        )

    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(max(1, config.threads))
    teacher = np.asarray(teacher_vectors(sample), dtype=np.float32)
    tokenizer = TextTokenizer(full.tokenizer_path, spec)
    body = load_torch_encoder(layers)
    student = _pooled_module(body)
    student.train()
    optimiser = torch.optim.AdamW(student.parameters(), lr=config.lr)
    # length-sorted batches (little padding), visited in a seeded random order each epoch
    order = np.argsort([len(t) for t in sample], kind="stable")
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    rng = np.random.default_rng(config.seed)
    steps: list[np.ndarray] = []
    for _ in range(config.epochs):
        steps.extend(batches[i] for i in rng.permutation(len(batches)))
    iterator: Any = steps
    if progress:
        from pipelines.train.progress import progress as _progress

        iterator = _progress(steps, desc=f"distilling {layers}-layer encoder", unit="batch")
    losses: list[float] = []
    for idx in iterator:
        enc = tokenizer.encode_batch([sample[i] for i in idx])
        feeds = {k: torch.from_numpy(v) for k, v in enc.feeds().items()}
        pooled = student(feeds["input_ids"], feeds["attention_mask"], feeds["token_type_ids"])
        target_vec = torch.from_numpy(teacher[idx])
        loss = (1.0 - (pooled * target_vec).sum(dim=1)).mean()  # both are unit vectors: cosine loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    k = max(1, len(losses) // 10)
    echo(
        f"distilled {layers}-layer encoder on {len(sample)} texts, {len(steps)} steps: "
        f"cosine loss {np.mean(losses[:k]):.4f} (first 10%) -> {np.mean(losses[-k:]):.4f} (last 10%)"
    )
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        tmp_model = Path(tmp) / model_path.name
        _export_fp32(tmp_model, layers, body=body.eval())
        os.replace(tmp_model, model_path)
    digest = sha256_file(model_path)
    meta_path.write_text(
        json.dumps(
            {
                "sha256": digest,
                "layers": layers,
                "distil": asdict(config),
                "texts": len(sample),
                "loss_first": float(np.mean(losses[:k])),
                "loss_last": float(np.mean(losses[-k:])),
            }
        )
    )
    return EncoderArtifact(model_path, digest, full.tokenizer_path, "fp32", layers=layers, distilled=True)
