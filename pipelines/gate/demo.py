"""The demo's gate step (`tierroute demo`): build the gate data, train, register, promote the gate.

Job: one call the demo makes after the classifier, so that out of the box a `tierroute-gate@champion`
exists for `serve` to load, and the demo can print the gate's held-out numbers next to the
classifier's. Promotion uses the gate's own check (`pipelines.gate.promotion`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def train_and_promote_gate(
    echo: Callable[[str], None], rebuild_data: bool = True, config: Any = None
) -> dict[str, Any]:
    """Gate data (rebuilt if asked or missing) -> `gate train` (defaults unless `config`) -> promote;
    returns the numbers to print."""
    from pipelines.gate.data import build_gate_dataset
    from pipelines.gate.promotion import GATE_KEY_METRICS, same_rows_check
    from pipelines.gate.train import GateTrainConfig, train_gate
    from pipelines.registry import promote

    config = config if config is not None else GateTrainConfig()
    if rebuild_data or not Path(config.data).is_file():
        build_gate_dataset(out=Path(config.data))
    result = train_gate(config, progress=False, echo=echo)
    promo = promote(
        config.model_name, metric_keys=GATE_KEY_METRICS, extra_checks=[same_rows_check(Path(config.data))]
    )
    if not promo.promoted:
        echo(f"gate candidate not promoted: {promo.reason}")
    test = result.report["test"]
    hand = result.report.get("refusal_hand_labels", {})
    return {
        "version": result.version,
        "champion": promo.champion_version,
        "promoted": promo.promoted,
        "threshold": result.threshold,
        "false_escalation_by_source": {
            k: v["false_escalation"] for k, v in test["false_escalation_by_source"].items() if v["acceptable"]
        },
        "catch_rate_by_reason": {k: v for k, v in test["reject_rate_by_reason"]["gate"].items() if k != "ok"},
        "false_escalation": test["reject_rate_by_reason"]["gate"].get("ok"),
        "refusal_accuracy": {k: hand[k]["accuracy"] for k in ("phrase", "combined") if k in hand},
        "economics": result.report["economics"]["at_threshold"],
        "train_s": result.timings.get("total_s"),
    }
