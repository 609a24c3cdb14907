"""`tierroute gate calibrate`: set a gate bundle's threshold by cascade economics.

Job: score the gate data's validation and test rows with a gate bundle exactly as serving does
(checks first, a failed check scores 0), pick the threshold that minimises cost + bad-answer
penalty per 1,000 requests on validation (`pipelines.gate.economics`), report the cost curve and
the chosen point on test, and write a copy of the bundle whose manifest carries the new
threshold and the prices it was chosen for. The source bundle, and any registered version or
alias, is left untouched: registering the copy is a separate, explicit step (CLI `--register`,
alias `candidate` unless told otherwise), so a serving champion never changes by accident.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.gate.economics import CascadePrices, baselines, best_point, cost_curve, curve_table


def served_scores(bundle: Path, prompts: list[str], responses: list[str]) -> np.ndarray:
    """P(acceptable) as served: -1 where a deterministic check fails (rejected at any threshold), else the
    model's probability."""
    from serving.gate.model import GateItem, GateModel

    gate = GateModel.load(bundle, threads=2)
    out = np.zeros(len(prompts), dtype=np.float64)
    step = 64
    for start in range(0, len(prompts), step):
        items = [
            GateItem(p, r)
            for p, r in zip(prompts[start : start + step], responses[start : start + step], strict=True)
        ]
        for k, d in enumerate(gate.decide(items, threshold=0.0)):
            out[start + k] = -1.0 if d.p_acceptable is None else float(d.p_acceptable)
    return out


def calibrate_gate(
    bundle: Path,
    data: Path,
    prices: CascadePrices,
    *,
    choose_split: str = "validation",
    report_split: str = "test",
    limit: int | None = None,
) -> dict[str, Any]:
    """The chosen threshold (on `choose_split`) and the cost curve at it (on `report_split`)."""
    from pipelines.gate.data import load_gate_dataset

    df = load_gate_dataset(data)
    result: dict[str, Any] = {"bundle": str(bundle), "data": str(data), "prices": asdict(prices)}
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in dict.fromkeys((choose_split, report_split)):
        sub = df[df["split"] == split]
        if limit is not None:
            sub = sub.sort_values("id").head(limit)
        if sub.empty:
            raise ValueError(f"{data}: no rows in split {split!r}")
        p = served_scores(bundle, sub["prompt"].astype(str).tolist(), sub["response"].astype(str).tolist())
        scores[split] = (p, sub["acceptable"].to_numpy().astype(bool))
    chosen = best_point(cost_curve(*scores[choose_split], prices))
    p, y = scores[report_split]
    curve = cost_curve(p, y, prices)
    at = cost_curve(p, y, prices, np.array([chosen.threshold]))[0]
    result.update(
        {
            "threshold": chosen.threshold,
            "chosen_on": choose_split,
            "chosen": asdict(chosen),
            "reported_on": report_split,
            "at_threshold": asdict(at),
            "curve": curve_table(curve, 0.05),
            "baselines": baselines(prices),
        }
    )
    return result


def write_calibrated_copy(bundle: Path, out: Path, result: dict[str, Any]) -> Path:
    """Copy `bundle` to `out` with `thresholds.p_acceptable` = the chosen threshold; checks the copy loads."""
    from serving.gate.model import GateModel

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new folder for the calibrated bundle")
    shutil.copytree(bundle, out)
    path = out / "bundle.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["thresholds"]["p_acceptable"] = float(result["threshold"])
    manifest["thresholds"]["target_false_accept_rate"] = float(result["chosen"]["false_accept"])
    manifest["operating_point"] = {
        "rule": "economics",
        "prices": result["prices"],
        "chosen_on": result["chosen_on"],
        "test": result["at_threshold"],
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    GateModel.load(out).self_check()
    return out
