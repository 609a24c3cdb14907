"""Build a two-stage bundle: a static bundle first, a MiniLM bundle for the texts it is unsure about.

Job: calibrate the confidence bar on validation rows and write the bundle `serving.model.two_stage`
serves: a copy of the static bundle, the MiniLM bundle under `full/`, and a `two_stage` manifest
block (bar, how it was chosen, the validation numbers), with `full/bundle.json` listed by sha256 and
the self-check recomputed on the combined model.

The bar: the smallest confidence (smallest top-class probability over the heads) at which the fast
stage's labels agree with the full stage's on at least `target_agreement` of the validation rows it
would answer; so the answers it keeps are, on validation data, nearly the ones MiniLM would give,
and it answers as many texts as that allows. If no bar reaches the target, the bar is 1.0 + (the
fast stage never answers) and the block says so.

Trade-off: agreement with MiniLM, not accuracy against labels, is what is calibrated: it needs no
labels beyond the ones already used, and it bounds how far two-stage can drift from MiniLM-only on
every head at once (routing value included), which is the promise of the fast path.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.train.bundle_build import publish_dir
from serving.model.bundle import MANIFEST, Bundle, read_manifest, sha256_file
from serving.model.two_stage import TWO_STAGE_KEY, TwoStageBundle, stage_confidence

TARGET_AGREEMENT = 0.97
FULL_DIR = "full"


@dataclass(frozen=True)
class Bar:
    min_confidence: float
    share_fast: float
    agreement: float
    rows: int


def predict_in_order(bundle: Bundle, texts: Sequence[str], batch: int = 64) -> dict[str, np.ndarray]:
    """Probabilities per head for `texts` (plain `Bundle.predict_arrays`, length-sorted batches)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    parts: dict[str, list[np.ndarray]] = {h: [] for h in bundle.head_names}
    for i in range(0, len(texts), batch):
        out = bundle.predict_arrays([texts[j] for j in order[i : i + batch]])
        for h in parts:
            parts[h].append(out.probs[h])
    inverse = np.empty(len(texts), dtype=np.int64)
    inverse[order] = np.arange(len(texts))
    return {h: np.concatenate(v)[inverse] for h, v in parts.items()}


def _agreement(fast: dict[str, np.ndarray], full: dict[str, np.ndarray]) -> np.ndarray:
    """Per row: every head's label is the same in both stages."""
    return np.all(np.stack([fast[h].argmax(1) == full[h].argmax(1) for h in fast]), axis=0)


def bar_stats(fast: dict[str, np.ndarray], full: dict[str, np.ndarray], bar: float) -> Bar:
    """Share of rows a fixed bar lets the fast stage answer, and their agreement with the full stage."""
    answered = stage_confidence(fast) >= bar
    agree = _agreement(fast, full)
    rate = float(agree[answered].mean()) if answered.any() else float("nan")
    return Bar(float(bar), float(answered.mean()) if len(answered) else 0.0, rate, len(answered))


def choose_bar(
    fast: dict[str, np.ndarray], full: dict[str, np.ndarray], target: float = TARGET_AGREEMENT
) -> Bar:
    """The lowest confidence bar whose answered rows agree with the full stage on >= `target`."""
    conf = stage_confidence(fast)
    agree = _agreement(fast, full)
    n = len(conf)
    if n == 0:
        return Bar(1.01, 0.0, float("nan"), 0)
    order = np.argsort(-conf, kind="stable")
    cum_agree = np.cumsum(agree[order]) / np.arange(1, n + 1)
    ok = np.flatnonzero(cum_agree >= target)
    # answered set for bar conf[order[k]] is every row with conf >= it; ties make it a prefix anyway
    best: Bar | None = None
    for k in ok[::-1]:
        bar = float(conf[order[k]])
        answered = conf >= bar
        rate = float(agree[answered].mean())
        if rate >= target:
            best = Bar(bar, float(answered.mean()), rate, n)
            break
    return best or Bar(1.01, 0.0, float("nan"), n)


def build_two_stage(
    fast_dir: Path,
    full_dir: Path,
    out_dir: Path,
    validation_texts: Sequence[str],
    *,
    target_agreement: float = TARGET_AGREEMENT,
    min_confidence: float | None = None,
    heads: Sequence[str] | None = None,
) -> tuple[Path, Bar]:
    """Write the two-stage bundle into `out_dir` (atomically); returns it and the chosen bar.

    `min_confidence` fixes the bar instead of calibrating it (its share and agreement on
    `validation_texts` are still recorded). `heads` are the heads whose confidence and agreement gate
    the fast stage (default: all of them; e.g. only `tier`, the head routing reads)."""
    fast = Bundle.load(fast_dir, threads=2)
    full = Bundle.load(full_dir, threads=2)
    if TWO_STAGE_KEY in full.manifest:
        raise ValueError(f"{full_dir}: the full stage must be a plain (MiniLM) bundle")
    if fast.head_names != full.head_names or any(
        a.labels != b.labels for a, b in zip(fast.heads, full.heads, strict=True)
    ):
        raise ValueError(f"{fast_dir} and {full_dir} have different heads or label orders")
    gate = list(heads or fast.head_names)
    if not set(gate) <= set(fast.head_names):
        raise ValueError(f"two-stage heads {gate} are not all heads of {fast_dir} ({fast.head_names})")
    fast_all = predict_in_order(fast, validation_texts)
    full_all = predict_in_order(full, validation_texts)
    fast_probs = {h: fast_all[h] for h in gate}
    full_probs = {h: full_all[h] for h in gate}
    bar = (
        choose_bar(fast_probs, full_probs, target_agreement)
        if min_confidence is None
        else bar_stats(fast_probs, full_probs, min_confidence)
    )
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for f in Path(fast_dir).iterdir():
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        shutil.copytree(full_dir, tmp / FULL_DIR)
        manifest: dict[str, Any] = json.loads((tmp / MANIFEST).read_text(encoding="utf-8"))
        manifest["name"] = f"{manifest['name']}-two-stage"
        manifest["files"][f"{FULL_DIR}/{MANIFEST}"] = sha256_file(tmp / FULL_DIR / MANIFEST)
        manifest[TWO_STAGE_KEY] = {
            "full": FULL_DIR,
            "full_name": full.name,
            "heads": gate,
            "confidence": "min over `heads` of the top-class probability",
            "min_confidence": round(bar.min_confidence, 6),
            "calibration": {
                "split": "validation",
                "rows": bar.rows,
                "target_agreement": target_agreement,
                "agreement": bar.agreement,
                "share_fast": bar.share_fast,
            },
        }
        staged = TwoStageBundle(tmp, {**manifest, "self_check": None})
        manifest["self_check"] = staged.expected_outputs()
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        read_manifest(tmp)  # every listed file present and matching
        publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir, bar
