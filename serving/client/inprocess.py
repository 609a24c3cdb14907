"""`BundleClassifier`: a local bundle run in process behind the same `classify(texts)` protocol as
the HTTP clients, so a router takes either without caring which. Importing this module does not
import onnxruntime; the bundle module is imported only when a bundle is loaded from a path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from serving.client.contract import ClassifierBadResponse, ClassifierUnavailable
from serving.schemas import ClassifyResponse, ClassifyResult, ModelRef, RoutingThreshold

if TYPE_CHECKING:
    from serving.model.batcher import CancelToken
    from serving.model.bundle import Bundle


class BundleClassifier:
    """In-process adapter: a loaded bundle behind the `ClassifierBackend` protocol.

    Errors from the bundle (a broken model, unexpected outputs) surface as `ClassifierError`
    subclasses, like the HTTP client's, so callers handle one family.
    """

    def __init__(self, bundle: Bundle | str | Path, threads: int = 1) -> None:
        if isinstance(bundle, str | Path):
            from serving.model.bundle import Bundle  # onnxruntime only when a bundle is actually loaded

            bundle = Bundle.load(Path(bundle), threads=threads)
        self.bundle = bundle
        version = bundle.manifest.get("version")
        self.model_ref = ModelRef(
            name=str(bundle.manifest.get("name", "bundle")),
            version=version,
            alias=None,
            routing=RoutingThreshold.from_manifest(bundle.manifest),
        )

    def classify(self, texts: Sequence[str]) -> ClassifyResponse:
        model, results = self.predict_results(texts)
        return ClassifyResponse(model=model, results=results)

    def predict_results(
        self, texts: Sequence[str], cancel: CancelToken | None = None
    ) -> tuple[ModelRef, list[ClassifyResult]]:
        """The model and one result per text. `cancel` (`serving.model.batcher.CancelToken`) aborts a
        running ONNX call (`RunOptions.terminate`): it then raises `ClassifierUnavailable`. This is what
        `serving.client.deadline.CoalescingClassifier` batches and cancels."""
        if isinstance(texts, str):
            raise TypeError("classify() takes a sequence of texts, not a single string")
        try:
            texts = list(texts)
            predictions = self.bundle.predict(texts) if cancel is None else self.bundle.predict(texts, cancel)
            results = [ClassifyResult.model_validate(p.to_result()) for p in predictions]
        except ValidationError as exc:
            raise ClassifierBadResponse(f"bundle output does not fit the classify contract: {exc}") from exc
        except Exception as exc:  # a broken model must read as "classifier unavailable", not crash a router
            raise ClassifierUnavailable(f"bundle {self.model_ref.name} failed: {exc}") from exc
        if len(results) != len(texts):
            raise ClassifierBadResponse(f"bundle returned {len(results)} results for {len(texts)} texts")
        return self.model_ref, results

    async def aclassify(self, texts: Sequence[str]) -> ClassifyResponse:
        """Off the event loop: inference is CPU work."""
        return await asyncio.to_thread(self.classify, texts)


def result_dict(result: ClassifyResult) -> dict[str, Any]:
    """A result as a plain dict, extra heads included (for traces and logs)."""
    return result.model_dump()
