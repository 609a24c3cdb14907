"""The MLflow pyfunc flavour of a classifier bundle: `mlflow.pyfunc.load_model(...).predict(texts)`.

Job: wrap `serving.model.bundle.Bundle` so a registered version can be scored through MLflow's generic
interface (pyfunc, `mlflow.evaluate`, `mlflow models serve`). The bundle files travel as the
model artifact named "bundle" (`artifacts={"bundle": <bundle dir>}`), so a downloaded model folder
holds exactly one `bundle.json`; serving and `pipelines.registry.export.download_bundle` find the bundle by
looking for that file, not by a hard-coded path.

Trade-offs:
- The class is pickled by reference (`pipelines.registry.pyfunc.BundlePyfunc`): loading needs the
  `tierroute` package installed (it is, editable, in the project venv). We do not ship the code
  with `code_paths`: MLflow prepends such a copy to `sys.path` for the rest of the process, which
  would shadow the live `serving` package with a stale copy inside our own services.
- `predict` is typed with `pd.DataFrame` so MLflow validates nothing and passes a DataFrame with a
  `text` column or a plain list of strings straight through; a column signature would reject lists.
- Inference runs with one ONNX Runtime thread unless `model_config={"threads": N}` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

TEXT_COLUMN = "text"


def texts_from_input(model_input: Any) -> list[str]:
    """A list of strings from a DataFrame (`text` column, or a single column), Series, array, dict or list."""
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN in model_input.columns:
            values = model_input[TEXT_COLUMN].tolist()
        elif len(model_input.columns) == 1:
            values = model_input.iloc[:, 0].tolist()
        else:
            raise ValueError(
                f"input DataFrame needs a {TEXT_COLUMN!r} column; got columns {list(model_input.columns)}"
            )
    elif isinstance(model_input, dict):
        if TEXT_COLUMN not in model_input:
            raise ValueError(f"input dict needs a {TEXT_COLUMN!r} key; got {sorted(model_input)}")
        raw = model_input[TEXT_COLUMN]
        values = [raw] if isinstance(raw, str) else list(raw)
    elif isinstance(model_input, str):
        values = [model_input]
    elif isinstance(model_input, pd.Series | np.ndarray | list | tuple):
        values = list(model_input)
    else:
        raise ValueError(
            f"unsupported input type {type(model_input).__name__}; pass a list of str or a DataFrame"
        )
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise ValueError(f"every text must be a string; rows {bad[:10]} are not")
    return [str(v) for v in values]


class BundlePyfunc(PythonModel):
    """Runs the ONNX bundle logged under the model artifact "bundle"; one result row per text."""

    def load_context(self, context: Any) -> None:
        from pipelines.registry.hashing import find_bundle_dir
        from serving.model.bundle import Bundle

        config = dict(getattr(context, "model_config", None) or {})
        path = find_bundle_dir(Path(context.artifacts["bundle"]))
        self._bundle = Bundle.load(path, threads=int(config.get("threads", 1)))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        texts = texts_from_input(model_input)
        rows = [p.to_result() for p in self._bundle.predict(texts)]
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        if not rows:
            columns = []
            for head in self._bundle.head_names:
                columns += [head, f"{head}_probs"]
            return pd.DataFrame(
                columns=[*columns, "complexity", "confidence", "p_weak_ok", "tokens", "truncated"]
            )
        return pd.DataFrame(rows, index=index)
