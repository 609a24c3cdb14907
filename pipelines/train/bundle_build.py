"""Write a self-describing classifier bundle: one ONNX graph + tokenizer + manifest.

Job: convert each sklearn head with skl2onnx (`zipmap` off: a plain probability tensor), splice
the heads into the encoder graph so `input_ids -> embedding -> <head>_probs` is ONE artifact,
and write `bundle.json` with everything serving needs to use and verify it (see
`serving.model.bundle`). The graph also outputs `embedding`, which drift checks reuse.

Trade-offs: splicing by hand (prefixing each head's names and appending its nodes) is used
instead of `onnx.compose.merge_models` because merging several heads onto one shared input
needs repeated merges with output bookkeeping, and the optimizer's opset declarations clash
with skl2onnx's; opset imports are reconciled explicitly here. One merged graph runs
at the same speed as encoder + heads called separately; its value is one hash-checked file.

Writes are atomic: the bundle is assembled in a temporary sibling folder and renamed into place,
so a crash never leaves a half-written bundle where serving could pick it up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.train.encoder_export import EMBED_DIM, EncoderArtifact
from pipelines.train.heads import FittedHead
from pipelines.train.routing import ROUTING_INPUT, ROUTING_OUTPUT, RoutingHead, routing_head_to_onnx
from serving.model.bundle import (
    BUNDLE_SCHEMA_VERSION,
    MANIFEST,
    MODEL_FILE,
    TOKENIZER_FILE,
    Bundle,
    sha256_file,
)
from serving.model.textprep import TruncationSpec

ML_DOMAIN = "ai.onnx.ml"


def head_to_onnx(head: FittedHead, input_name: str = "embedding", width: int = EMBED_DIM) -> Any:
    """skl2onnx graph of one head: input `input_name` [N, width] -> `probabilities` [N, K]."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    return convert_sklearn(
        head.model,
        initial_types=[(input_name, FloatTensorType([None, width]))],
        options={id(head.model): {"zipmap": False}},
        target_opset={"": 17, ML_DOMAIN: 3},
    )


def merge_heads(
    encoder_path: Path,
    heads: Sequence[FittedHead],
    routing: RoutingHead | None = None,
    width: int = EMBED_DIM,
) -> Any:
    """The encoder graph with every head appended, reading the shared `embedding` tensor [N, width].

    With a routing head the graph gains a second input `request_features` [N, F] (computed by
    `serving.model.textprep.request_feature_matrix`) and an output `p_weak_ok` [N, 1]: the routing
    pipeline (scaler + logistic) reads `Concat(embedding, request_features)`."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(encoder_path))
    graph = model.graph
    if [o.name for o in graph.output] != ["embedding"]:
        raise ValueError(f"{encoder_path}: expected a single 'embedding' output")
    opsets: dict[str, int] = {}
    for imp in model.opset_import:
        opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
    for head in heads:
        prefix = f"{head.name}__"
        h = onnx.compose.add_prefix(head_to_onnx(head, width=width), prefix)
        for imp in h.opset_import:
            opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
        head_input = prefix + "embedding"
        for node in h.graph.node:
            for i, name in enumerate(node.input):
                if name == head_input:
                    node.input[i] = "embedding"
        graph.node.extend(h.graph.node)
        graph.initializer.extend(h.graph.initializer)
        out = f"{head.name}_probs"
        graph.node.append(
            helper.make_node("Identity", [prefix + "probabilities"], [out], name=f"{out}_identity")
        )
        graph.output.append(
            helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", len(head.labels)])
        )
    if routing is not None:
        _append_routing(graph, routing, opsets, width)
    del model.opset_import[:]
    for domain, version in sorted(opsets.items()):
        model.opset_import.append(helper.make_opsetid(domain, version))
    return model


def _append_routing(graph: Any, routing: RoutingHead, opsets: dict[str, int], width: int = EMBED_DIM) -> None:
    import onnx
    from onnx import TensorProto, helper

    n_feat = len(routing.describe()["features"])
    prefix = "routing__"
    h = onnx.compose.add_prefix(routing_head_to_onnx(routing, width + n_feat), prefix)
    for imp in h.opset_import:
        opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
    graph.input.append(helper.make_tensor_value_info(ROUTING_INPUT, TensorProto.FLOAT, ["batch", n_feat]))
    graph.node.append(
        helper.make_node(
            "Concat", ["embedding", ROUTING_INPUT], [prefix + "routing_input"], axis=1, name="routing_concat"
        )
    )
    graph.node.extend(h.graph.node)
    graph.initializer.extend(h.graph.initializer)
    graph.initializer.extend(
        [
            helper.make_tensor("routing_slice_start", TensorProto.INT64, [1], [1]),
            helper.make_tensor("routing_slice_end", TensorProto.INT64, [1], [2]),
            helper.make_tensor("routing_slice_axis", TensorProto.INT64, [1], [1]),
        ]
    )
    graph.node.append(
        helper.make_node(
            "Slice",
            [prefix + "probabilities", "routing_slice_start", "routing_slice_end", "routing_slice_axis"],
            [ROUTING_OUTPUT],
            name="p_weak_ok_slice",
        )
    )
    graph.output.append(helper.make_tensor_value_info(ROUTING_OUTPUT, TensorProto.FLOAT, ["batch", 1]))


def publish_dir(tmp: Path, out_dir: Path) -> None:
    """Move a fully written folder into place, replacing any previous one (two renames, no partial state)."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def build_bundle(
    out_dir: Path,
    encoder: EncoderArtifact,
    heads: Sequence[FittedHead],
    spec: TruncationSpec,
    *,
    name: str = "tierroute-classifier",
    metadata: dict[str, Any] | None = None,
    routing: RoutingHead | None = None,
) -> Path:
    """Assemble and atomically write a bundle folder; returns its path. `routing`: an optional routing
    head (`p_weak_ok`), described in the manifest's `routing` block (see `serving.model.bundle`)."""
    import onnx

    if not heads:
        raise ValueError("a bundle needs at least one head")
    names = [h.name for h in heads]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate head names: {names}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    metadata = dict(metadata or {})
    thresholds = metadata.pop("thresholds", {"min_confidence": 0.5})
    return write_bundle(
        out_dir,
        lambda path: onnx.save(
            merge_heads(encoder.path, heads, routing, int(getattr(encoder, "dim", EMBED_DIM))), str(path)
        ),
        encoder,
        heads,
        kind="classifier",
        name=name,
        text=spec.to_dict(),
        thresholds=thresholds,
        metadata=metadata,
        expected_outputs=lambda folder, manifest: Bundle(folder, manifest).expected_outputs(),
        extra={"routing": routing.describe()} if routing is not None else None,
    )


def write_bundle(
    out_dir: Path,
    save_graph: Callable[[Path], None],
    encoder: EncoderArtifact,
    heads: Sequence[FittedHead],
    *,
    kind: str,
    name: str,
    text: dict[str, Any],
    thresholds: dict[str, Any],
    metadata: dict[str, Any],
    expected_outputs: Callable[[Path, dict[str, Any]], Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write graph + tokenizer + `bundle.json` into a temp folder beside `out_dir`, then publish it.

    One writer for every bundle kind (classifier, gate): the manifest lists every file's sha256 and
    `self_check`, what the finished bundle answers for fixed inputs (computed by `expected_outputs`
    on the folder itself), so a load can tell a tampered manifest."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_graph(tmp / MODEL_FILE)
        shutil.copyfile(encoder.tokenizer_path, tmp / TOKENIZER_FILE)
        manifest: dict[str, Any] = {
            "schema_version": BUNDLE_SCHEMA_VERSION,
            "kind": kind,
            "name": name,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "encoder": encoder.describe(),
            "text": text,
            **(extra or {}),
            "heads": [{"name": h.name, "labels": list(h.labels), "output": f"{h.name}_probs"} for h in heads],
            "calibration": {
                h.name: {"method": "temperature", "temperature": h.temperature, "C": h.C} for h in heads
            },
            "thresholds": thresholds,
            "training_data": metadata.pop("training_data", {}),
            "metrics": metadata.pop("metrics", {}),
            **metadata,
            "files": {
                MODEL_FILE: sha256_file(tmp / MODEL_FILE),
                TOKENIZER_FILE: sha256_file(tmp / TOKENIZER_FILE),
            },
        }
        manifest["self_check"] = expected_outputs(tmp, {**manifest, "self_check": None})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
