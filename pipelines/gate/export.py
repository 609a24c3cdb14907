"""Write the gate bundle: ONE ONNX graph (prompt encoder + response encoder + heads) + tokenizer + manifest.

Job: turn the trained gate heads into a self-describing, hash-checked bundle (`kind: "gate"`) that
`serving.gate.model.GateModel` runs with onnxruntime, tokenizers and numpy only.

Graph design (measured in evals/RESULTS.md, "Response gate"):
- Inputs: `prompt_input_ids`, `prompt_attention_mask`, `prompt_token_type_ids` [B, Tp],
  `response_input_ids`, `response_attention_mask`, `response_token_type_ids` [B, Tr] (int64, each
  side padded on its own, so a short prompt is not padded to the response's length), and
  `signals` [B, S] (float32, `serving.gate.signals`).
- The exported sentence encoder is applied twice: its nodes are copied with a `prompt__` and a
  `response__` prefix on every intermediate tensor, while both copies read the SAME initializers.
  The file therefore holds the weights once (an `onnx.compose.add_prefix` on a second copy would
  duplicate ~90 MB, 23 MB for int8), and the two sides keep their own token budgets.
- Features = concat(prompt_emb, response_emb, prompt_emb * response_emb, cosine, signals): the
  elementwise product and its sum (the cosine of the two L2-normalised embeddings) let the head
  score "does this answer fit this request" (off-instruction answers).
- Heads (skl2onnx logistic regressions, zipmap off) read `features`: `acceptable_probs` [B, 2]
  (columns unacceptable, acceptable) and, when trained, `reason_probs` [B, K]. The graph also
  outputs `prompt_embedding` and `response_embedding` for drift monitoring.

Writes are atomic (temporary sibling folder, then rename), like the classifier's bundles.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.train.bundle_build import head_to_onnx, write_bundle
from pipelines.train.encoder_export import EMBED_DIM, EncoderArtifact
from pipelines.train.heads import FittedHead
from serving.gate.model import GATE_KIND, INPUT_SIDES, SIGNALS_INPUT, GateModel
from serving.gate.signals import SIGNAL_NAMES, SIGNALS_VERSION
from serving.model.textprep import TruncationSpec

ML_DOMAIN = "ai.onnx.ml"
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FEATURES = "features"


def feature_dim() -> int:
    return 3 * EMBED_DIM + 1 + len(SIGNAL_NAMES)


def _copy_encoder(encoder: Any, side: str) -> tuple[list[Any], str]:
    """The encoder's nodes with `<side>__`-prefixed tensors (initializers shared); returns nodes, output."""
    import onnx

    graph = encoder.graph
    shared = {init.name for init in graph.initializer}
    inputs = {name: f"{side}_{name}" for name in ENCODER_INPUTS}

    def rename(name: str) -> str:
        if not name or name in shared:
            return name
        if name in inputs:
            return inputs[name]
        return f"{side}__{name}"

    nodes = []
    for i, node in enumerate(graph.node):
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = f"{side}__{node.name or f'{node.op_type}_{i}'}"
        new.input[:] = [rename(n) for n in node.input]
        new.output[:] = [rename(n) for n in node.output]
        nodes.append(new)
    return nodes, rename(graph.output[0].name)


def build_gate_graph(encoder_path: Path, heads: Sequence[FittedHead]) -> Any:
    """The full gate graph (see the module docstring)."""
    # Over 60 lines: one ONNX graph assembled node by node; the nodes reference each other by name.
    import onnx
    from onnx import TensorProto, helper

    encoder = onnx.load(str(encoder_path))
    if [o.name for o in encoder.graph.output] != ["embedding"]:
        raise ValueError(f"{encoder_path}: expected a single 'embedding' output")
    nodes: list[Any] = []
    graph_inputs = []
    embeddings = {}
    for side in INPUT_SIDES:
        side_nodes, out = _copy_encoder(encoder, side)
        nodes += side_nodes
        emb = f"{side}_embedding"
        nodes.append(helper.make_node("Identity", [out], [emb], name=f"{side}_embedding_identity"))
        embeddings[side] = emb
        for name in ENCODER_INPUTS:
            graph_inputs.append(
                helper.make_tensor_value_info(f"{side}_{name}", TensorProto.INT64, ["batch", f"{side}_seq"])
            )
    graph_inputs.append(
        helper.make_tensor_value_info(SIGNALS_INPUT, TensorProto.FLOAT, ["batch", len(SIGNAL_NAMES)])
    )
    nodes.append(
        helper.make_node(
            "Mul", [embeddings["prompt"], embeddings["response"]], ["pr_product"], name="pr_product"
        )
    )
    nodes.append(
        helper.make_node(
            "ReduceSum", ["pr_product", "pr_cosine_axes"], ["pr_cosine"], keepdims=1, name="pr_cosine"
        )
    )
    nodes.append(
        helper.make_node(
            "Concat",
            [embeddings["prompt"], embeddings["response"], "pr_product", "pr_cosine", SIGNALS_INPUT],
            [FEATURES],
            axis=1,
            name="features_concat",
        )
    )
    initializers = list(encoder.graph.initializer)
    initializers.append(helper.make_tensor("pr_cosine_axes", TensorProto.INT64, [1], [1]))
    opsets: dict[str, int] = {}
    for imp in encoder.opset_import:
        opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
    outputs = [
        helper.make_tensor_value_info(embeddings[s], TensorProto.FLOAT, ["batch", EMBED_DIM])
        for s in INPUT_SIDES
    ]
    for head in heads:
        prefix = f"{head.name}__"
        h = onnx.compose.add_prefix(head_to_onnx(head, FEATURES, feature_dim()), prefix)
        for imp in h.opset_import:
            opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
        for node in h.graph.node:
            node.input[:] = [FEATURES if n == prefix + FEATURES else n for n in node.input]
        nodes += list(h.graph.node)
        initializers += list(h.graph.initializer)
        out = f"{head.name}_probs"
        nodes.append(helper.make_node("Identity", [prefix + "probabilities"], [out], name=f"{out}_identity"))
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", len(head.labels)]))
    graph = helper.make_graph(nodes, "tierroute_gate", graph_inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    )
    model.ir_version = encoder.ir_version
    onnx.checker.check_model(model, full_check=False)
    return model


def build_gate_bundle(
    out_dir: Path,
    encoder: EncoderArtifact,
    heads: Sequence[FittedHead],
    prompt_spec: TruncationSpec,
    response_spec: TruncationSpec,
    *,
    threshold: float,
    target_false_accept_rate: float,
    reason_refusal: float = 0.0,
    name: str = "tierroute-gate",
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Assemble and atomically write a gate bundle folder; returns its path."""
    import onnx

    if not heads or heads[0].name != "acceptable" or heads[0].labels != ("unacceptable", "acceptable"):
        raise ValueError("the first head must be 'acceptable' with labels (unacceptable, acceptable)")
    return write_bundle(
        out_dir,
        lambda path: onnx.save(build_gate_graph(encoder.path, heads), str(path)),
        encoder,
        heads,
        kind=GATE_KIND,
        name=name,
        text={"prompt": prompt_spec.to_dict(), "response": response_spec.to_dict()},
        extra={"signals": {"version": SIGNALS_VERSION, "names": list(SIGNAL_NAMES)}},
        thresholds={
            "p_acceptable": float(threshold),
            "target_false_accept_rate": float(target_false_accept_rate),
            "reason_refusal": float(reason_refusal),
        },
        metadata=dict(metadata or {}),
        expected_outputs=lambda folder, manifest: GateModel(folder, manifest).expected_outputs(),
    )
