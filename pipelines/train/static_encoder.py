"""A static-embedding encoder distilled from the same MiniLM, exported as a tiny ONNX lookup graph.

Job: the fast path's encoder. `model2vec` distils one vector per vocabulary token from the local
all-MiniLM-L6-v2 (a forward pass per token, PCA to 256 dims, SIF weighting folded into the vectors;
no hub access, about a minute on 2 cores, done once per machine and cached under `models/encoder/`
like the MiniLM export). The sentence embedding is the mean of its token vectors, L2-normalised.

How it is served: the vectors are re-indexed by the MiniLM `tokenizer.json` (token string -> row),
and the graph takes the same inputs as the MiniLM encoder (`input_ids`, `attention_mask`,
`token_type_ids`) and outputs `embedding`:

    w = weight[input_ids] * attention_mask       # 0 for [CLS]/[SEP]/[PAD]/[UNK] and removed tokens
    e = sum_t w_t * vectors[input_ids_t] / max(sum_t w_t, 1)
    embedding = e / max(|e|, 1e-12)

So the bundle writer, the embedder, `serving.model.bundle.Bundle` and the service use it unchanged:
a static bundle is an ordinary `kind: "classifier"` bundle whose `encoder.type` is `"static"`.

Trade-offs:
- Reusing the MiniLM tokenizer (rather than model2vec's rewritten one) keeps token counts and
  truncation identical to the MiniLM bundle; model2vec's own tokenizer splits text the same way
  (same WordPiece vocabulary, `[unused*]` removed), and `export_static_encoder` checks that the
  graph's embeddings match `StaticModel.encode` (cosine >= 0.999) before caching the graph.
- The vectors stay float32 (model2vec defaults to float16): 30 MB instead of 15, and no rounding
  between training and serving.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.train.encoder_export import ENCODER_NAME, EncoderArtifact, source_fingerprint, source_model_dir
from serving.model.bundle import sha256_file

STATIC_EXPORT_VERSION = 1  # bump to invalidate cached static encoders when the recipe changes
STATIC_DIM = 256
PARITY_TEXTS = (
    "What is the capital of France?",
    "Write a Python function that merges two sorted lists and explain its complexity.",
    "Prove that there are infinitely many primes. Use Euclid's argument, step by step.",
    "Résumé: the café's naïve coöperation — 42 % of 7,300 items; ünïcödé and emoji 🙂.",
)


@dataclass(frozen=True)
class StaticEncoderArtifact(EncoderArtifact):
    """A distilled static encoder: an `EncoderArtifact` whose graph is a token-vector lookup."""

    dim: int = STATIC_DIM
    model2vec_version: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "name": f"static:{ENCODER_NAME}",
            "type": "static",
            "package": f"model2vec=={self.model2vec_version}",
            "distilled_from": ENCODER_NAME,
            "sha256": self.sha256,
            "dim": self.dim,
            "pooling": "mean",
            "normalize": True,
            "precision": self.precision,
        }


def static_fingerprint(pca_dims: int) -> str:
    h = hashlib.sha256(f"static-v{STATIC_EXPORT_VERSION}|pca={pca_dims}|{source_fingerprint()}".encode())
    return h.hexdigest()


def distil_vectors(pca_dims: int = STATIC_DIM) -> Any:
    """model2vec's `StaticModel` distilled from the local MiniLM (float32 vectors)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from model2vec.distill import distill

    return distill(model_name=str(source_model_dir()), pca_dims=pca_dims, quantize_to="float32", device="cpu")


def lookup_tables(static_model: Any, tokenizer_json: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vectors [V, D], weights [V]) indexed by the ids of `tokenizer_json` (the MiniLM WordPiece).

    A token the distilled vocabulary lacks, the unknown token and the special tokens get weight 0
    (model2vec drops the unknown token and adds no special tokens)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    m2v_tok = static_model.tokenizer
    emb = np.asarray(static_model.embedding, dtype=np.float32)
    mapping = getattr(static_model, "token_mapping", None)
    extra_w = getattr(static_model, "weights", None)
    vocab = tok.get_vocab()
    size = max(vocab.values()) + 1
    vectors = np.zeros((size, emb.shape[1]), dtype=np.float32)
    weights = np.zeros(size, dtype=np.float32)
    unk = static_model.unk_token_id
    special = {t for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")}
    for token, idx in vocab.items():
        j = m2v_tok.token_to_id(token)
        if token in special or j is None or j == unk:
            continue
        row = int(mapping[j]) if mapping is not None else j
        v = emb[row]
        if extra_w is not None:
            v = v * float(extra_w[j])
        vectors[idx] = v
        weights[idx] = 1.0
    return vectors, weights


def static_graph(vectors: np.ndarray, weights: np.ndarray) -> Any:
    """The ONNX lookup graph: (input_ids, attention_mask, token_type_ids) -> embedding [N, D]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dim = int(vectors.shape[1])
    inits = [
        numpy_helper.from_array(vectors.astype(np.float32), "static_vectors"),
        numpy_helper.from_array(weights.astype(np.float32), "static_weights"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "eps"),
    ]
    nodes = [
        helper.make_node("Gather", ["static_weights", "input_ids"], ["tok_w"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["tok_w", "mask_f"], ["w"]),  # [N, T]
        helper.make_node("Gather", ["static_vectors", "input_ids"], ["tok_v"], axis=0),  # [N, T, D]
        helper.make_node("Unsqueeze", ["w", "axis1"], ["w_row"]),  # [N, 1, T]
        helper.make_node("MatMul", ["w_row", "tok_v"], ["summed3"]),  # [N, 1, D]
        helper.make_node("Squeeze", ["summed3", "axis1"], ["summed"]),  # [N, D]
        helper.make_node("ReduceSum", ["w", "axis1"], ["count_raw"], keepdims=1),  # [N, 1]
        helper.make_node("Max", ["count_raw", "one"], ["count"]),
        helper.make_node("Div", ["summed", "count"], ["mean"]),
        helper.make_node("Mul", ["mean", "mean"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axis1"], ["sqsum"], keepdims=1),
        helper.make_node("Sqrt", ["sqsum"], ["norm_raw"]),
        helper.make_node("Max", ["norm_raw", "eps"], ["norm"]),
        helper.make_node("Div", ["mean", "norm"], ["embedding"]),
        # token_type_ids is accepted (same feeds as the MiniLM graph) and unused
        helper.make_node("Shape", ["token_type_ids"], ["tt_shape"]),
    ]
    ids = ["batch", "seq"]
    graph = helper.make_graph(
        nodes,
        "static_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ids),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ids),
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ids),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tierroute")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def export_static_encoder(
    cache_dir: Path = Path("models/encoder"), pca_dims: int = STATIC_DIM
) -> StaticEncoderArtifact:
    """Return the cached static encoder, distilling and exporting it first if needed."""
    from importlib.metadata import version

    from pipelines.train.encoder_export import export_encoder

    fingerprint = static_fingerprint(pca_dims)
    target = Path(cache_dir) / f"static-{fingerprint[:16]}"
    model_path = target / "encoder.static.onnx"
    tokenizer_path = target / "tokenizer.json"
    meta_path = target / "encoder.static.json"
    m2v_version = version("model2vec")
    if model_path.is_file() and meta_path.is_file() and tokenizer_path.is_file():
        meta = json.loads(meta_path.read_text())
        return StaticEncoderArtifact(
            model_path, meta["sha256"], tokenizer_path, "fp32", int(meta["dim"]), meta["model2vec"]
        )
    minilm = export_encoder(cache_dir, "fp32")  # for its tokenizer.json (cached; exports once)
    static_model = distil_vectors(pca_dims)
    vectors, weights = lookup_tables(static_model, minilm.tokenizer_path)
    target.mkdir(parents=True, exist_ok=True)
    import onnx

    with tempfile.TemporaryDirectory(dir=target) as tmp:
        tmp_model = Path(tmp) / model_path.name
        onnx.save(static_graph(vectors, weights), str(tmp_model))
        cosine = _parity_with_model2vec(static_model, tmp_model, minilm.tokenizer_path)
        if cosine < 0.999:
            raise RuntimeError(
                f"static graph disagrees with model2vec's own encode (min cosine {cosine:.4f})"
            )
        tmp_tok = Path(tmp) / "tokenizer.json"
        tmp_tok.write_bytes(minilm.tokenizer_path.read_bytes())
        os.replace(tmp_tok, tokenizer_path)
        os.replace(tmp_model, model_path)
    digest = sha256_file(model_path)
    meta_path.write_text(
        json.dumps(
            {
                "sha256": digest,
                "dim": int(vectors.shape[1]),
                "model2vec": m2v_version,
                "source_fingerprint": fingerprint,
                "model2vec_min_cosine": cosine,
                "vocabulary_rows_used": int(weights.sum()),
            }
        )
    )
    return StaticEncoderArtifact(
        model_path, digest, tokenizer_path, "fp32", int(vectors.shape[1]), m2v_version
    )


def _parity_with_model2vec(static_model: Any, graph_path: Path, tokenizer_json: Path) -> float:
    """Min cosine between the graph's embeddings and `StaticModel.encode` on `PARITY_TEXTS`."""
    from serving.model.onnx_session import make_session
    from serving.model.textprep import TextTokenizer, TruncationSpec

    tok = TextTokenizer(tokenizer_json, TruncationSpec(max_tokens=512, strategy="head"))
    session = make_session(graph_path)
    ours = session.run(["embedding"], tok.encode_batch(list(PARITY_TEXTS)).feeds())[0]
    theirs = np.asarray(static_model.encode(list(PARITY_TEXTS)), dtype=np.float32)
    theirs = theirs / np.maximum(np.linalg.norm(theirs, axis=1, keepdims=True), 1e-12)
    return float(np.min(np.sum(ours * theirs, axis=1)))
