"""Static int8 (QDQ) quantisation of the encoder, calibrated on real training texts.

Job: turn the fused fp32 encoder into an int8 graph whose activation scales are fixed at export time
(`onnxruntime.quantization.quantize_static`, QDQ format, per-channel int8 weights). Unlike dynamic
quantisation (`DynamicQuantizeLinear` picks a scale per call from the batch it sees), a static scale does
not depend on the batch, so a text's embedding is the same alone or batched and int8 bundles can batch.

How:
- Calibration texts are real training requests, tokenised by `serving.model.textprep` exactly as serving
  does (same truncation spec). They run ONE TEXT PER CALL: no padding, so the activation ranges describe
  real tokens only. Padding positions that a batch adds may fall outside those ranges and be clipped;
  that is harmless, because their keys are masked in attention and pooling ignores them.
- Only `MatMul` is quantised (the attention output projection and both feed-forward layers: ~85% of
  the weights; ORT's QDQ quantiser has no rule for the fused `Attention` op, whose QKV projection stays
  fp32); the embedding lookup + LayerNorm, softmax, the attention-mask arithmetic and the final mean
  pooling + L2 normalisation stay fp32 (a mask of -10000 in a calibrated range would crush
  every real attention score to zero: the padding trap).
- Which method and which exclusions were measured, and the numbers, are in evals/RESULTS.md ("Speed").

Trade-off: calibration adds ~1 min to the first int8-static export on a machine (cached afterwards, keyed
by the calibration texts' digest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from serving.model.textprep import TextTokenizer, TruncationSpec

CALIBRATION_TEXTS = 384
"""Training texts used to calibrate activation ranges (a few hundred is what ORT's guides use)."""
CALIBRATION_METHOD = "minmax"
"""Activation ranges: min/max over the calibration texts (see `quantize_encoder_static` for why only it)."""
QUANTISED_OPS: tuple[str, ...] = ("MatMul",)
"""Op types that get int8 QDQ; every other op stays fp32 (see the module docstring)."""


def calibration_digest(texts: Sequence[str], spec: TruncationSpec, method: str) -> str:
    """Digest of what the calibrated scales depend on: texts, truncation and method."""
    h = hashlib.sha256(f"{method}|{sorted(spec.to_dict().items())}|".encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()


def default_calibration_texts(
    data: Path = Path("data/labelled/requests.parquet"), n: int = CALIBRATION_TEXTS, seed: int = 0
) -> list[str]:
    """`n` texts of the shipped data's train split, stratified by source (seeded): the fixed calibration set.

    A fixed set keeps one int8-static encoder per machine (like the fp32 one), whatever a run trains on."""
    import pandas as pd

    if not Path(data).is_file():
        raise FileNotFoundError(
            f"{data}: the calibration texts for --precision int8-static come from the shipped training data; "
            "run `tierroute data build` or pass calibration texts"
        )
    df = pd.read_parquet(data, columns=["text", "split", "source"])
    train = df[df["split"] == "train"]
    if len(train) <= n:
        return train["text"].astype(str).tolist()
    share = n / len(train)
    parts = [
        g.sample(n=max(1, round(len(g) * share)), random_state=seed)
        for _, g in train.groupby("source", sort=True)
    ]
    picked = pd.concat(parts)
    return picked["text"].astype(str).head(n).tolist()


class TextCalibrationReader:
    """`CalibrationDataReader` over texts: one text per call, tokenised as serving tokenises it."""

    def __init__(self, tokenizer_json: Path, texts: Sequence[str], spec: TruncationSpec) -> None:
        self._tokenizer = TextTokenizer(tokenizer_json, spec)
        self._texts = list(texts)
        self._iter: Iterator[dict[str, Any]] | None = None

    def _feeds(self) -> Iterator[dict[str, Any]]:
        for text in self._texts:
            yield self._tokenizer.encode_batch([text]).feeds()

    def get_next(self) -> dict[str, Any] | None:
        if self._iter is None:
            self._iter = self._feeds()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def fp32_nodes(model_path: Path) -> list[str]:
    """MatMuls that stay fp32: those reading a GELU output (each layer's feed-forward down-projection).

    Their input is the widest and most outlier-heavy activation of BERT (1,536 channels after GELU); one
    per-tensor int8 scale for it cost the most: cosine to fp32 0.940 with every MatMul quantised, 0.995
    with these six kept fp32 (300 test texts, evals/RESULTS.md "Speed")."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    gelu = {"Gelu", "BiasGelu", "FastGelu", "QuickGelu"}
    return [n.name for n in graph.node if n.op_type == "MatMul" and producer.get(n.input[0]) in gelu]


def quantize_encoder_static(
    src: Path,
    out_path: Path,
    tokenizer_json: Path,
    texts: Sequence[str],
    spec: TruncationSpec,
    *,
    method: str = CALIBRATION_METHOD,
    op_types: Sequence[str] = QUANTISED_OPS,
    nodes_to_exclude: Sequence[str] | None = None,
) -> None:
    """Write the static int8 QDQ version of the fp32 encoder `src` to `out_path`.

    `nodes_to_exclude` defaults to `fp32_nodes(src)`: the feed-forward down-projections stay fp32."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # Percentile and Entropy (histogram calibrators) need every calibration batch to have one shape; with
    # one unpadded text per call they fail in onnxruntime 1.32, so MinMax is the one offered
    methods: dict[str, tuple[Any, dict[str, Any]]] = {"minmax": (CalibrationMethod.MinMax, {})}
    if method not in methods:
        raise ValueError(f"calibration method must be one of {sorted(methods)}, got {method!r}")
    calib_method, calib_options = methods[method]

    class _Reader(TextCalibrationReader, CalibrationDataReader):  # ORT checks isinstance
        pass

    # symbolic shape inference types the outputs of the fused contrib ops (Attention, SkipLayerNorm...);
    # without it they are never calibrated and the MatMuls silently get weight-only quantisation
    inferred = Path(out_path).with_name(Path(out_path).stem + ".inferred.onnx")
    quant_pre_process(str(src), str(inferred), skip_optimization=True, auto_merge=True)
    try:
        quantize_static(
            str(inferred),
            str(out_path),
            _Reader(tokenizer_json, texts, spec),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(fp32_nodes(src) if nodes_to_exclude is None else nodes_to_exclude),
            calibrate_method=calib_method,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, **calib_options},
        )
    finally:
        inferred.unlink(missing_ok=True)
