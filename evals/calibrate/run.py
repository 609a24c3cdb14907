"""`tierroute calibrate`: choose the routing threshold, then store it with the model version and bundle.

Job: score a calibration set (a labelled file, or a prediction log: the logged probabilities are
used as-is), pick the threshold for the objective (`evals.calibrate.thresholds`), and record it
- as MLflow version tags (`routing_threshold` = JSON, `routing_threshold.<score>` = the number)
  when the model is a registered version, and
- in a NEW bundle folder: a copy of the bundle whose `bundle.json` carries
  `thresholds.routing = {score, strong_if_at_least, objective, target, expected_*, calibrated_on,
  calibrated_at, derived_from}`. Files are copied and re-verified against the manifest hashes; the
  folder is written next to its final place and renamed in, and an existing folder is never
  overwritten, so the source bundle (and anything serving it) is left untouched.
Routers apply it as: send to the strong model iff `score >= strong_if_at_least`, where score is the
classifier's `complexity` (or `HEAD:LABEL` / `not:HEAD:LABEL` probabilities; see evals.eval.evaluate).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals.calibrate.thresholds import Objective, ThresholdChoice, choose_threshold, validate_objective
from evals.eval.evaluate import outcome_arrays, router_score
from evals.io.models import (
    ModelError,
    ModelHandle,
    head_labels,
    load_bundle,
    predict_in_batches,
    resolve_model,
)
from evals.io.tables import InputError, is_log, read_logged_predictions, read_table, select_split
from serving.model.bundle import MANIFEST, BundleError, read_manifest, sha256_file


@dataclass
class CalibrationRun:
    choice: ThresholdChoice
    score: str
    model: ModelHandle
    data: Path
    bundle_out: Path | None
    tagged: bool
    routing: dict[str, Any]
    tracking_error: str | None = None


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bundle_with_routing(src: Path, dst: Path, routing: dict[str, Any]) -> Path:
    """Copy bundle `src` to the new folder `dst` with `thresholds.routing` set; atomic, never overwrites."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise InputError(f"{dst} already exists; choose another --bundle-out (bundles are never overwritten)")
    try:
        manifest = read_manifest(src)
    except BundleError as exc:
        raise ModelError(str(exc)) from exc
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        for item in src.iterdir():
            if item.name == MANIFEST or item.name.startswith("."):
                continue
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        new = dict(manifest)
        thresholds = dict(new.get("thresholds") or {})
        thresholds["routing"] = routing
        new["thresholds"] = thresholds
        new["derived_from"] = {
            "bundle": str(src),
            "manifest_sha256": _file_digest(src / MANIFEST),
            "change": "thresholds.routing set by tierroute calibrate",
        }
        new["files"] = {name: sha256_file(tmp / name) for name in manifest["files"]}
        (tmp / MANIFEST).write_text(json.dumps(new, indent=2) + "\n", encoding="utf-8")
        read_manifest(tmp)  # re-verify every copied file against the new manifest
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def run_calibrate(
    model: str,
    data: Path,
    *,
    objective: Objective,
    target: float,
    score: str = "complexity",
    split: str | None = None,
    weak_cost: float | None = None,
    strong_cost: float | None = None,
    bundle_out: Path | None = None,
    write_bundle: bool = True,
    tag_version: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    cache_dir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> CalibrationRun:
    # Over 60 lines: the command's steps in order (read, score, choose, report, store), each a named call.
    data = Path(data)
    try:
        validate_objective(objective, target, weak_cost=weak_cost, strong_cost=strong_cost)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    handle = resolve_model(model, cache_dir=cache_dir)
    bundle = load_bundle(handle)
    heads = head_labels(bundle)
    weak = strong = None
    if is_log(data):
        logged = read_logged_predictions(data, heads)
        probs = logged.probs
        p_weak = logged.p_weak_ok
        outcome_note = "prediction log (no outcomes)"
    else:
        df = select_split(read_table(data), split, data)
        try:
            outcomes = outcome_arrays(df)
        except ValueError as exc:
            raise InputError(f"{data}: {exc}") from exc
        if outcomes is not None:
            outcome_note, weak, strong = outcomes
        else:
            outcome_note = "no outcome columns"
        echo(f"scoring {len(df)} rows with {handle.label}")
        out = predict_in_batches(bundle, [str(t) for t in df["text"].tolist()])
        probs = out.probs
        p_weak = out.p_weak_ok
    try:
        scores = router_score(score, probs, heads, p_weak)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    try:
        choice = choose_threshold(
            objective,
            target,
            scores,
            weak,
            strong,
            weak_cost=weak_cost,
            strong_cost=strong_cost,
            n_boot=n_boot,
            seed=seed,
        )
    except ValueError as exc:
        raise InputError(f"{data}: {exc}") from exc
    routing = {
        "score": score,
        **choice.to_dict(),
        "outcomes": outcome_note,
        "calibrated_on": {"path": str(data), "sha256": _file_digest(data), "split": split or "all"},
        "calibrated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": handle.to_dict(),
    }
    out_path = None
    if write_bundle:
        if bundle_out is None:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            stem = f"{handle.name}-v{handle.version}" if handle.registered else handle.bundle_dir.name
            bundle_out = Path("models") / "bundles" / f"{stem}-calibrated-{stamp}"
        out_path = write_bundle_with_routing(handle.bundle_dir, bundle_out, routing)
    run = CalibrationRun(choice, score, handle, data, out_path, False, routing)
    if tag_version and handle.registered and handle.version is not None:
        from pipelines.registry.tracking import TrackingError, set_version_tags

        try:
            set_version_tags(
                handle.name,
                handle.version,
                {
                    "routing_threshold": json.dumps(_compact(routing), separators=(",", ":")),
                    f"routing_threshold.{score}": f"{choice.threshold:.6g}",
                },
            )
            run.tagged = True
        except TrackingError as exc:
            run.tracking_error = str(exc)
    return run


def _compact(routing: dict[str, Any]) -> dict[str, Any]:
    """The tag value: drop the bulky model block (the tag sits on that version already)."""
    out = {k: v for k, v in routing.items() if k != "model"}
    return json.loads(json.dumps(out, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))
