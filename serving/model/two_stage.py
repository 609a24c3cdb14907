"""Two-stage classification: a static-embedding bundle first, the MiniLM bundle when it is unsure.

Job: serve a `two_stage` bundle. Such a folder is an ordinary static bundle (its own `model.onnx`,
`tokenizer.json`, `bundle.json`, heads trained on the static embeddings) plus a complete MiniLM bundle
in `full/`, and a manifest block

    "two_stage": {"full": "full", "min_confidence": 0.83, "heads": ["tier", "task"], ...}

`Bundle.load` returns a `TwoStageBundle` for it, so the holder, the service, `tierroute eval` and the
router use it like any other bundle. Each text is scored by the fast stage; when its confidence
(the smallest top-class probability over the gating `heads`, default all) reaches `min_confidence`,
that answer stands (`stage: "fast"`); the other texts of the batch are scored again by the full bundle
(`stage: "full"`). The bar is calibrated at training time on the validation split
(`pipelines.train.two_stage`) and stored with the numbers it was chosen from.

Trust: the outer manifest lists `full/bundle.json`'s sha256, and that manifest lists the sha256 of
every file of the full bundle, so one verified load covers both stages; each stage also runs its own
self-check.

Trade-offs: an unsure text pays both stages (the fast one is ~1/50 of the full one); `embedding` in
`predict_arrays` is the fast stage's (every row has one, the same width for all rows), which is
what drift checks of a two-stage bundle compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.model.bundle import Bundle, BundleError, BundleOutput, Prediction, read_manifest

if TYPE_CHECKING:
    from serving.model.batcher import CancelToken

TWO_STAGE_KEY = "two_stage"
STAGE_FAST = "fast"
STAGE_FULL = "full"


def stage_confidence(probs: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, the smallest top-class probability over the heads: sure only when every head is."""
    tops = [np.asarray(p).max(axis=1) for p in probs.values()]
    return np.min(np.stack(tops), axis=0) if tops else np.zeros(0)


class TwoStageBundle(Bundle):
    """A static bundle that hands the texts it is unsure about to the MiniLM bundle in `full/`."""

    def __init__(self, path: Path, manifest: dict[str, Any], threads: int = 1) -> None:
        super().__init__(path, manifest, threads=threads)
        try:
            block = dict(manifest[TWO_STAGE_KEY])
            self.min_confidence = float(block["min_confidence"])
            full_dir = self.path / str(block.get("full", "full"))
            self.gate_heads = [str(h) for h in (block.get("heads") or self.head_names)]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{path}: malformed '{TWO_STAGE_KEY}' block ({exc})") from exc
        if not set(self.gate_heads) <= set(self.head_names):
            raise BundleError(f"{path}: two_stage.heads {self.gate_heads} are not all heads of the bundle")
        if not 0.0 <= self.min_confidence < float("inf"):  # above 1: the fast stage never answers
            raise BundleError(f"{path}: two_stage.min_confidence must be a number >= 0")
        full_manifest = read_manifest(full_dir)
        if TWO_STAGE_KEY in full_manifest:
            raise BundleError(f"{full_dir}: the full stage cannot itself be a two-stage bundle")
        self.full = Bundle(full_dir, full_manifest, threads=threads)
        if [h.name for h in self.full.heads] != self.head_names or any(
            a.labels != b.labels for a, b in zip(self.full.heads, self.heads, strict=True)
        ):
            raise BundleError(f"{path}: the two stages have different heads or label orders")
        if (self.routing is None) != (self.full.routing is None):
            raise BundleError(f"{path}: one stage has a routing head (p_weak_ok) and the other does not")
        self.full.self_check()

    def staged_arrays(
        self, texts: Sequence[str], cancel: CancelToken | None = None
    ) -> tuple[BundleOutput, np.ndarray]:
        """Outputs for `texts` and, per text, True where the fast stage answered."""
        fast = Bundle.predict_arrays(self, texts, cancel)
        sure = stage_confidence({h: fast.probs[h] for h in self.gate_heads}) >= self.min_confidence
        unsure = np.flatnonzero(~sure)
        if len(unsure) == 0:
            return fast, sure
        full = self.full.predict_arrays([texts[int(i)] for i in unsure], cancel)
        probs = {k: v.copy() for k, v in fast.probs.items()}
        for k in probs:
            probs[k][unsure] = full.probs[k]
        token_counts, truncated = fast.token_counts.copy(), fast.truncated.copy()
        token_counts[unsure] = full.token_counts
        truncated[unsure] = full.truncated
        p_weak_ok = None
        if fast.p_weak_ok is not None and full.p_weak_ok is not None:  # both or neither (checked at load)
            p_weak_ok = fast.p_weak_ok.copy()
            p_weak_ok[unsure] = full.p_weak_ok
        out = replace(fast, probs=probs, token_counts=token_counts, truncated=truncated, p_weak_ok=p_weak_ok)
        return out, sure

    def predict_arrays(self, texts: Sequence[str], cancel: CancelToken | None = None) -> BundleOutput:
        return self.staged_arrays(texts, cancel)[0]

    def predict(self, texts: Sequence[str], cancel: CancelToken | None = None) -> list[Prediction]:
        out, sure = self.staged_arrays(texts, cancel)
        preds = self.predictions(out, len(texts))
        for p, fast in zip(preds, sure, strict=True):
            p.stage = STAGE_FAST if fast else STAGE_FULL
        return preds

    def expected_outputs(self) -> dict[str, Any]:
        block = super().expected_outputs()
        for case, pred in zip(block["cases"], self.predict([c["text"] for c in block["cases"]]), strict=True):
            case["stage"] = pred.stage
        return block
