"""Promotion of a gate version: `tierroute promote --model-name tierroute-gate`.

Job: a gate-appropriate promotion check. The stored test metrics compared are the served gate's
accept recall (1 - false escalation) and reject recall (1 - false accept), both higher-is-better;
and, because two versions may have been tested on different rows, `same_rows_check` downloads
champion and candidate, scores the SAME held-out rows of the gate data with each (checks first,
each at its own threshold) and refuses the candidate when its false-escalation or false-accept
rate is worse than the champion's by more than the tolerance.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from pipelines.registry.promote import ComparisonRow, PromotionCheck, PromotionContext

GATE_KEY_METRICS: tuple[str, ...] = ("test_gate_accept_recall", "test_gate_reject_recall")
DEFAULT_GATE_DATA = Path("data/gate/gate.parquet")


def is_gate_model(model_name: str) -> bool:
    """Registered gate models are named like the default, `tierroute-gate` (or end in `-gate`)."""
    return model_name == "tierroute-gate" or model_name.endswith("-gate")


def same_rows_rates(
    bundle: Path, prompts: list[str], responses: list[str], y: np.ndarray
) -> dict[str, float]:
    """False escalation (good rejected) and false accept (bad accepted) at the bundle's own threshold."""
    from pipelines.gate.calibrate import served_scores
    from serving.gate.model import GateModel

    threshold = GateModel.load(bundle).threshold
    accept = served_scores(bundle, prompts, responses) >= threshold
    good = y.astype(bool)
    return {
        "false_escalation": float(np.mean(~accept[good])) if good.any() else 0.0,
        "false_accept": float(np.mean(accept[~good])) if (~good).any() else 0.0,
    }


def same_rows_check(
    data: Path = DEFAULT_GATE_DATA, split: str = "test", limit: int | None = None
) -> PromotionCheck:
    """A PromotionCheck scoring champion and candidate on the same `split` rows of `data`."""

    def gate_same_rows(ctx: PromotionContext) -> list[ComparisonRow]:
        if ctx.champion is None:
            return [ComparisonRow("gate same rows", None, None, None, True, "no champion")]
        from pipelines.gate.data import load_gate_dataset
        from pipelines.registry import download_bundle

        df = load_gate_dataset(data)
        df = df[df["split"] == split].sort_values("id")
        if limit is not None:
            df = df.head(limit)
        prompts, responses = df["prompt"].astype(str).tolist(), df["response"].astype(str).tolist()
        y = df["acceptable"].to_numpy()
        from serving.model.bundle import BundleError

        rates = {}
        with tempfile.TemporaryDirectory(prefix="tierroute-gate-promote-") as tmp:
            for who, info in (("champion", ctx.champion), ("candidate", ctx.candidate)):
                uri = f"models:/{ctx.model_name}/{info.version}"
                bundle = download_bundle(uri, Path(tmp) / who, tracking_uri=ctx.tracking_uri)
                try:
                    rates[who] = same_rows_rates(Path(bundle), prompts, responses, y)
                except BundleError as exc:
                    if who == "candidate":
                        raise
                    # e.g. a gate trained with older signals: this runtime can neither score nor serve it
                    note = f"champion v{info.version} does not load in this runtime ({exc}); not compared"
                    return [ComparisonRow("gate same rows", None, None, None, True, note)]
        rows = []
        for key in ("false_escalation", "false_accept"):
            champ, cand = rates["champion"][key], rates["candidate"][key]
            worse = cand - champ
            ok = worse <= ctx.tolerance + 1e-12
            note = f"{len(df)} {split} rows, lower is better"
            if not ok:
                note = f"worse by {worse:.4f} > tolerance {ctx.tolerance:g} on {len(df)} {split} rows"
            rows.append(ComparisonRow(f"gate_{key} (same rows)", champ, cand, worse, ok, note))
        return rows

    return gate_same_rows
