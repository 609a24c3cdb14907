"""Load and run a classifier bundle: `model.onnx` + `tokenizer.json` + `bundle.json`.

Job: everything serving needs to turn texts into per-head probabilities with onnxruntime,
tokenizers and numpy only (no torch, no scikit-learn). The manifest describes the bundle
(schema version, labels per head, encoder hash, truncation, thresholds, training-data digest,
metrics) and lists a sha256 per file; loading verifies all of it, so a tampered, truncated or
mismatched bundle fails with a message naming the file instead of serving garbage.

Trade-off: verifying hashes reads the whole model file once at load (~90 MB, ~0.1 s); we pay it
to make hot reloads of a half-copied bundle impossible to serve.

`bundle.json` itself cannot list its own hash, so two more checks cover it (schema version 2):
- `self_check` in the manifest: the outputs (labels and probabilities) the bundle gave for a few
  fixed texts when it was built. `Bundle.self_check()` recomputes them on every load and refuses
  the bundle if they differ, so reordered labels, a swapped graph or an edited head cannot serve.
- Bundles from the registry are compared with the version's `bundle_digest` tag (a digest of every
  file, bundle.json included: `folder_digest`) by `serving.model.source`.
Version-1 bundles (no expectations) are refused with a message asking to re-export them.

Routing head (optional manifest block `routing`, issue #13): a logistic head on the embedding plus the
request features (`serving.model.textprep.request_features`, fed as a second graph input
`request_features`), whose output `p_weak_ok` is the calibrated probability that the cheap model's answer
is as good as the strong model's. When a bundle has it, `complexity = 1 - p_weak_ok` (calibrated and
monotone: the router's `complexity >= threshold` then means "P(cheap is not good enough) >= threshold"),
and `tier` stays the tier head's label. Bundles without the block load and serve exactly as before
(`p_weak_ok` is null, `complexity` the tier formula).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.model.onnx_session import make_session
from serving.model.textprep import (
    FEATURE_EDGE_CHARS,
    REQUEST_FEATURE_NAMES,
    REQUEST_FEATURES_VERSION,
    TextTokenizer,
    TruncationSpec,
    request_feature_matrix,
)

if TYPE_CHECKING:
    from serving.model.batcher import CancelToken

BUNDLE_SCHEMA_VERSION = 2
MANIFEST = "bundle.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
REQUIRED_KEYS = ("schema_version", "kind", "name", "encoder", "text", "heads", "files", "self_check")
TIER_HEAD = "tier"
SELF_CHECK_TEXTS = (
    "What is the capital of France?",
    "Prove that there are infinitely many primes.",
    "Write a Python function that merges two sorted lists and explain its complexity.",
    "Summarise this article about the history of tea in three sentences.",
    "Hi! How are you today?",
    "Design a fault-tolerant distributed job scheduler and compare it with Kubernetes CronJobs.",
)
"""Fixed texts whose outputs every bundle records at build time (`self_check.cases`)."""
SELF_CHECK_ATOL = {"fp32": 2e-3, "int8": 2e-2, "int8-static": 2e-2}
"""Allowed |probability - recorded| per precision: room for other CPUs and thread counts, far below
what reordered labels or another head produce."""


class BundleError(Exception):
    """A bundle that cannot be served: missing, corrupt, tampered or from another schema."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_digest(folder: Path, known: Mapping[str, str] | None = None) -> str:
    """sha256 over every file of a bundle folder (relative path + the file's sha256), order-independent.

    The same digest `tierroute` records as a registry version's `bundle_digest` tag. `known` maps
    relative paths to sha256 digests already verified (the manifest's `files`), to skip re-reading them.
    """
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = f.relative_to(folder).as_posix()
        digest = (known or {}).get(rel) or sha256_file(f)
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def read_manifest(path: Path, *, verify_files: bool = True) -> dict[str, Any]:
    """Load `bundle.json`, check its schema, and (by default) every listed file's sha256."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"bundle folder not found: {path}")
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST}; not a tierroute bundle")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: expected a JSON object")
    if "schema_version" in manifest and manifest["schema_version"] != BUNDLE_SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema_version {manifest['schema_version']!r}, this runtime reads "
            f"{BUNDLE_SCHEMA_VERSION}; re-export the bundle with a matching tierroute"
        )
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{manifest_path}: missing keys {missing}")
    check = manifest["self_check"]
    if not isinstance(check, dict) or not isinstance(check.get("cases"), list) or not check["cases"]:
        raise BundleError(f"{manifest_path}: 'self_check' must hold the expected outputs ('cases')")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{manifest_path}: 'files' must map file names to sha256 digests")
    if verify_files:
        for name, digest in files.items():
            f = path / name
            if not f.is_file():
                raise BundleError(f"{path}: listed file {name} is missing")
            actual = sha256_file(f)
            if actual != digest:
                raise BundleError(
                    f"{f}: sha256 {actual[:12]}… does not match the manifest ({str(digest)[:12]}…): "
                    "the file was modified or only partly copied"
                )
    return manifest


@dataclass(frozen=True)
class HeadSpec:
    name: str
    labels: tuple[str, ...]
    output: str


@dataclass(frozen=True)
class BundleOutput:
    """Raw arrays for a batch: probabilities per head, embeddings, token bookkeeping."""

    probs: dict[str, np.ndarray]
    embedding: np.ndarray
    token_counts: np.ndarray
    truncated: np.ndarray
    p_weak_ok: np.ndarray | None = None
    """[N] calibrated P(cheap model is good enough), when the bundle has a routing head."""

    def complexity(self) -> np.ndarray | None:
        """`complexity` per text: 1 - p_weak_ok with a routing head, else the tier formula (None without
        a tier head)."""
        return complexity_of(self.probs.get(TIER_HEAD), self.p_weak_ok)


@dataclass
class Prediction:
    """One text's result; `to_result()` gives the HTTP contract shape."""

    labels: dict[str, str]
    probs: dict[str, dict[str, float]]
    tokens: int
    truncated: bool
    complexity: float | None = None
    confidence: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    p_weak_ok: float | None = None
    stage: str | None = None  # two-stage bundles: "fast" or "full" (serving.model.two_stage)

    def to_result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for head, label in self.labels.items():
            out[head] = label
            out[f"{head}_probs"] = self.probs[head]
        out["complexity"] = self.complexity
        out["confidence"] = self.confidence
        out["p_weak_ok"] = self.p_weak_ok
        out["tokens"] = self.tokens
        out["truncated"] = self.truncated
        if self.stage is not None:
            out["stage"] = self.stage
        return out


def complexity_from_tier_probs(probs: np.ndarray) -> np.ndarray:
    """Expected tier index / (K-1): 0 = surely the cheapest tier, 1 = surely the strongest."""
    k = probs.shape[1]
    return (probs @ np.arange(k, dtype=np.float64)) / max(k - 1, 1)


def complexity_of(tier_probs: np.ndarray | None, p_weak_ok: np.ndarray | None) -> np.ndarray | None:
    """`1 - p_weak_ok` when the bundle has a routing head (monotone, calibrated), else the tier formula."""
    if p_weak_ok is not None:
        return 1.0 - np.asarray(p_weak_ok, dtype=np.float64)
    return complexity_from_tier_probs(tier_probs) if tier_probs is not None else None


@dataclass(frozen=True)
class RoutingSpec:
    """The manifest's `routing` block: graph input/output names and the request features it reads."""

    input: str
    output: str
    features: tuple[str, ...]
    features_version: int = REQUEST_FEATURES_VERSION
    """The `request_features` version the head was trained on; served the same (older ones too)."""

    @classmethod
    def from_manifest(cls, path: Path, block: Any) -> RoutingSpec:
        try:
            version = int(block["features_version"])
            spec = cls(str(block["input"]), str(block["output"]), tuple(block["features"]), version)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{path}: malformed 'routing' block in the manifest ({exc})") from exc
        if spec.features != REQUEST_FEATURE_NAMES or version not in FEATURE_EDGE_CHARS:
            raise BundleError(
                f"{path}: the routing head reads request features {list(spec.features)} (version {version}); "
                f"this runtime computes {list(REQUEST_FEATURE_NAMES)} "
                f"(versions {sorted(FEATURE_EDGE_CHARS)}): "
                "re-train the bundle with a matching tierroute"
            )
        return spec


def open_tokenizer(bundle_dir: Path, spec: TruncationSpec) -> TextTokenizer:
    """The bundle's tokenizer.json with `spec`; a BundleError naming the file if it will not load."""
    try:
        return TextTokenizer(bundle_dir / TOKENIZER_FILE, spec)
    except Exception as exc:
        raise BundleError(f"{bundle_dir / TOKENIZER_FILE}: cannot load tokenizer ({exc})") from exc


def open_session(bundle_dir: Path, threads: int) -> Any:
    """An onnxruntime session on the bundle's model.onnx; a BundleError naming the file if it fails."""
    try:
        return make_session(bundle_dir / MODEL_FILE, threads=threads)
    except Exception as exc:
        raise BundleError(f"{bundle_dir / MODEL_FILE}: onnxruntime cannot load it ({exc})") from exc


def run_session(session: Any, outputs: list[str], feeds: dict[str, Any], cancel: CancelToken | None) -> Any:
    """`session.run`, aborted (BundleError) when `cancel` fires while it runs."""
    if cancel is None:
        return session.run(outputs, feeds)
    if cancel.cancelled:
        raise BundleError("cancelled: nobody waits for this call")
    import onnxruntime as ort

    options = ort.RunOptions()
    cancel.on_cancel(lambda: setattr(options, "terminate", True))
    try:
        return session.run(outputs, feeds, options)
    except Exception as exc:
        if cancel.cancelled:
            raise BundleError("cancelled: nobody waits for this call") from exc
        raise


BATCH_INVARIANT_PRECISIONS = ("fp32", "int8-static")
"""Encoders whose output for a text does not depend on its batch-mates (static int8 has fixed scales)."""


def runs_per_item(manifest: dict[str, Any]) -> bool:
    """True for dynamic int8 encoders (precision `int8`): they quantise activations per batch
    (DynamicQuantizeLinear), so a text's embedding would depend on its batch-mates. Such bundles run one
    text per session call, which is also how training embedded their texts. fp32 and `int8-static`
    (calibrated, fixed scales) batch."""
    return str(manifest.get("encoder", {}).get("precision", "fp32")) not in BATCH_INVARIANT_PRECISIONS


class Bundle:
    """A loaded, verified classifier bundle backed by one onnxruntime session."""

    def __init__(self, path: Path, manifest: dict[str, Any], threads: int = 1) -> None:
        self.path = Path(path)
        self.manifest = manifest
        if manifest["kind"] != "classifier":
            raise BundleError(f"{path}: bundle kind is {manifest['kind']!r}, expected 'classifier'")
        try:
            self.spec = TruncationSpec.from_dict(manifest["text"])
            self.heads = [HeadSpec(h["name"], tuple(h["labels"]), h["output"]) for h in manifest["heads"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{path}: malformed manifest ({exc})") from exc
        if not self.heads:
            raise BundleError(f"{path}: the manifest declares no heads")
        self.tokenizer = open_tokenizer(self.path, self.spec)
        self.session = open_session(self.path, threads)
        outputs = {o.name for o in self.session.get_outputs()}
        wanted = {h.output for h in self.heads} | {"embedding"}
        if not wanted <= outputs:
            raise BundleError(f"{path}: graph lacks outputs {sorted(wanted - outputs)}")
        self.routing = (
            RoutingSpec.from_manifest(self.path, manifest["routing"]) if manifest.get("routing") else None
        )
        if self.routing is not None:
            inputs = {i.name for i in self.session.get_inputs()}
            if self.routing.input not in inputs or self.routing.output not in outputs:
                raise BundleError(
                    f"{path}: the manifest declares a routing head but the graph lacks "
                    f"input {self.routing.input!r} or output {self.routing.output!r}"
                )
        self._output_names = ["embedding", *[h.output for h in self.heads]]
        if self.routing is not None:
            self._output_names.append(self.routing.output)
        self.per_item = runs_per_item(manifest)

    @classmethod
    def load(cls, path: Path, threads: int = 1) -> Bundle:
        manifest = read_manifest(Path(path))
        if "two_stage" in manifest and cls is Bundle:  # static first stage + MiniLM in full/
            from serving.model.two_stage import TwoStageBundle

            return TwoStageBundle(Path(path), manifest, threads=threads)
        return cls(Path(path), manifest, threads=threads)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def head_names(self) -> list[str]:
        return [h.name for h in self.heads]

    def predict_arrays(self, texts: Sequence[str], cancel: CancelToken | None = None) -> BundleOutput:
        """Raw outputs for `texts`. `cancel` (see `serving.model.batcher.CancelToken`) aborts the call when
        nobody waits for it any more: ONNX Runtime stops at its next node (`RunOptions.terminate`)
        and BundleError("cancelled") is raised."""
        if not texts:
            dim = int(self.manifest["encoder"].get("dim", 384))
            return BundleOutput(
                probs={h.name: np.zeros((0, len(h.labels)), np.float32) for h in self.heads},
                embedding=np.zeros((0, dim), np.float32),
                token_counts=np.zeros(0, np.int64),
                truncated=np.zeros(0, bool),
                p_weak_ok=np.zeros(0, np.float32) if self.routing is not None else None,
            )
        if self.per_item and len(texts) > 1:
            parts = [self.predict_arrays([t], cancel) for t in texts]
            return BundleOutput(
                probs={h.name: np.concatenate([o.probs[h.name] for o in parts]) for h in self.heads},
                embedding=np.concatenate([o.embedding for o in parts]),
                token_counts=np.concatenate([o.token_counts for o in parts]),
                truncated=np.concatenate([o.truncated for o in parts]),
                p_weak_ok=(
                    np.concatenate([o.p_weak_ok for o in parts if o.p_weak_ok is not None])
                    if self.routing is not None
                    else None
                ),
            )
        batch = self.tokenizer.encode_batch(texts)
        feeds = batch.feeds()
        if self.routing is not None:
            feeds[self.routing.input] = request_feature_matrix(texts, self.routing.features_version)
        values = run_session(self.session, self._output_names, feeds, cancel)
        probs = {
            h.name: np.asarray(v) for h, v in zip(self.heads, values[1 : 1 + len(self.heads)], strict=True)
        }
        return BundleOutput(
            probs=probs,
            embedding=np.asarray(values[0]),
            token_counts=batch.token_counts,
            truncated=batch.truncated,
            p_weak_ok=np.asarray(values[-1]).reshape(-1) if self.routing is not None else None,
        )

    def predict(self, texts: Sequence[str], cancel: CancelToken | None = None) -> list[Prediction]:
        return self.predictions(self.predict_arrays(texts, cancel), len(texts))

    def predictions(self, out: BundleOutput, n: int) -> list[Prediction]:
        """The first `n` rows of `out` as `Prediction`s."""
        tier = out.probs.get(TIER_HEAD)
        complexity = out.complexity()
        results: list[Prediction] = []
        for i in range(n):
            labels: dict[str, str] = {}
            probs: dict[str, dict[str, float]] = {}
            for h in self.heads:
                p = out.probs[h.name][i]
                labels[h.name] = h.labels[int(np.argmax(p))]
                probs[h.name] = {lab: float(v) for lab, v in zip(h.labels, p, strict=True)}
            results.append(
                Prediction(
                    labels=labels,
                    probs=probs,
                    tokens=int(out.token_counts[i]),
                    truncated=bool(out.truncated[i]),
                    complexity=float(np.clip(complexity[i], 0.0, 1.0)) if complexity is not None else None,
                    confidence=float(tier[i].max()) if tier is not None else None,
                    p_weak_ok=float(out.p_weak_ok[i]) if out.p_weak_ok is not None else None,
                )
            )
        return results

    def expected_outputs(self) -> dict[str, Any]:
        """The manifest's `self_check` block for this bundle as it is now (written at build time)."""
        precision = str(self.manifest.get("encoder", {}).get("precision", "fp32"))
        cases = [
            {"text": text, "labels": p.labels, "probs": p.probs}
            | ({"p_weak_ok": p.p_weak_ok} if p.p_weak_ok is not None else {})
            for text, p in zip(SELF_CHECK_TEXTS, self.predict(list(SELF_CHECK_TEXTS)), strict=True)
        ]
        return {"atol": SELF_CHECK_ATOL.get(precision, SELF_CHECK_ATOL["int8"]), "cases": cases}

    def self_check(self) -> None:
        """Known inputs -> the outputs recorded at build time (labels and probabilities within
        `atol`), probabilities summing to 1, normalised embeddings; raises BundleError."""
        self._check_expected()
        out = self.predict_arrays(list(SELF_CHECK_TEXTS))
        for h in self.heads:
            p = out.probs[h.name]
            if p.shape != (len(SELF_CHECK_TEXTS), len(h.labels)):
                raise BundleError(f"self-check: head {h.name} returned shape {p.shape}")
            if not np.all(np.isfinite(p)) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
                raise BundleError(f"self-check: head {h.name} probabilities do not sum to 1")
        norms = np.linalg.norm(out.embedding, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise BundleError("self-check: embeddings are not L2-normalised")

    def _check_expected(self) -> None:
        try:
            check = self.manifest["self_check"]
            atol = float(check["atol"])
            cases = [(str(c["text"]), dict(c["labels"]), dict(c["probs"])) for c in check["cases"]]
            routing = [None if c.get("p_weak_ok") is None else float(c["p_weak_ok"]) for c in check["cases"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{self.path}: malformed 'self_check' in the manifest ({exc})") from exc
        got = self.predict([text for text, _, _ in cases])
        for k, (recorded, pred) in enumerate(zip(routing, got, strict=True)):
            if (recorded is None) != (pred.p_weak_ok is None) or (
                pred.p_weak_ok is not None and not abs(pred.p_weak_ok - (recorded or 0.0)) <= atol
            ):
                raise BundleError(
                    f"self-check case {k}: p_weak_ok {pred.p_weak_ok} differs from the recorded {recorded}; "
                    "the manifest does not describe this graph: refusing it"
                )
        for k, ((_, labels, probs), pred) in enumerate(zip(cases, got, strict=True)):
            for head in self.heads:
                problem = compare_expected(head.name, labels.get(head.name), probs.get(head.name), pred, atol)
                if problem is not None:
                    raise BundleError(
                        f"self-check case {k}: {problem}; the manifest does not describe this graph "
                        "(labels reordered or edited, or another model.onnx): refusing it"
                    )


def compare_expected(head: str, label: Any, probs: Any, pred: Prediction, atol: float) -> str | None:
    """Why `pred` differs from the recorded label/probabilities of `head`, or None when it matches.

    The label is compared only when the recorded winner led by more than 2*atol (a near-tie may
    legitimately flip on another CPU); the probabilities always are, label by label."""
    if not isinstance(probs, Mapping) or not probs:
        return f"no recorded probabilities for head {head}"
    got = pred.probs.get(head, {})
    if set(got) != set(probs):
        return f"head {head} has labels {sorted(got)}, recorded {sorted(probs)}"
    ranked = sorted((float(v) for v in probs.values()), reverse=True)
    if len(ranked) > 1 and ranked[0] - ranked[1] > 2 * atol and pred.labels.get(head) != label:
        return f"head {head} predicts {pred.labels.get(head)!r}, recorded {label!r}"
    worst = max(abs(got[lab] - float(p)) for lab, p in probs.items())
    if not worst <= atol:
        return f"head {head} probabilities differ from the recorded ones by {worst:.4f} > {atol}"
    return None
