"""`compare` on synthetic statistics: which checks run, Holm decisions, floors, and the report files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evals.drift.checks import DriftConfig, compare
from evals.drift.report import write_drift_report
from pipelines.train.reference_stats import ReferenceStats, compute_stats

HEADS = {"tier": ("simple", "complex", "reasoning")}
FAST = DriftConfig(n_permutations=300, n_boot=200, domain_auc=False)


def _sample(
    rng: np.random.Generator,
    n: int,
    *,
    mix: tuple[float, ...] = (0.5, 0.3, 0.2),
    acc: float = 0.8,
    shift: float = 0.0,
    tokens: float = 40.0,
    labelled: bool = True,
    texts: list[str] | None = None,
) -> ReferenceStats:
    y = rng.choice(3, size=n, p=mix)
    pred = np.where(rng.random(n) < acc, y, rng.integers(0, 3, n))
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), pred] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    centres = np.eye(3, 16) * 3
    emb = centres[y] + rng.normal(size=(n, 16)) + shift
    return compute_stats(
        {"tier": probs},
        HEADS,
        labels={"tier": [HEADS["tier"][i] for i in y]} if labelled else None,
        token_counts=rng.poisson(tokens, n),
        truncated=np.zeros(n, bool),
        embeddings=emb,
        texts=texts or ["plain english text"] * n,
    )


def test_same_distribution_no_drift_and_all_checks_run() -> None:
    rng = np.random.default_rng(0)
    res = compare(_sample(rng, 1000), _sample(rng, 300), FAST)
    names = {c.name for c in res.checks}
    assert names == {
        "performance/tier",
        "label_shift/tier",
        "prediction_mix/tier",
        "confidence/tier",
        "embedding",
        "token_length",
        "language",
    }
    assert not res.drift and res.exit_code == 0
    adj = np.array([c.adjusted_p for c in res.checks])
    raw = np.array([c.p_value for c in res.checks])
    assert np.all(adj >= raw - 1e-12)


def test_unlabelled_current_skips_label_checks() -> None:
    rng = np.random.default_rng(1)
    res = compare(_sample(rng, 800), _sample(rng, 300, labelled=False), FAST)
    assert "performance/tier" in res.skipped and "label_shift/tier" in res.skipped
    assert {c.family for c in res.checks} == {
        "prediction_mix",
        "confidence",
        "embedding",
        "token_length",
        "language",
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"mix": (0.1, 0.2, 0.7)}, {"label_shift/tier", "prediction_mix/tier", "embedding"}),
        ({"acc": 0.45}, {"performance/tier"}),
        ({"shift": 0.5}, {"embedding"}),
        ({"tokens": 15.0}, {"token_length"}),
    ],
)
def test_injected_drift_is_flagged(kwargs: dict[str, object], expected: set[str]) -> None:
    rng = np.random.default_rng(2)
    res = compare(_sample(rng, 1000), _sample(rng, 300, **kwargs), FAST)  # type: ignore[arg-type]
    flagged = {c.name for c in res.checks if c.drift}
    assert expected <= flagged, (flagged, [(c.name, c.adjusted_p) for c in res.checks])
    assert res.exit_code == 1


def test_label_shift_alone_is_not_performance_drift() -> None:
    """A current set of (almost) one class at the same per-class accuracy: macro-F1 over absent classes
    collapses, but the model is no worse on the rows it sees. Only label shift may be reported."""
    rng = np.random.default_rng(6)
    ref = _sample(rng, 1000)
    cur = _sample(rng, 300, mix=(0.98, 0.01, 0.01))
    res = compare(ref, cur, FAST)
    perf = res.check("performance/tier")
    assert perf.detail["current_macro_f1"] < perf.detail["reference_macro_f1"] - 0.2  # the old trap
    assert perf.detail["compared_classes"] == ["simple"]
    assert not perf.drift, perf
    assert res.check("label_shift/tier").drift
    # a real drop on the class that is present is still caught
    worse = compare(ref, _sample(rng, 300, mix=(0.98, 0.01, 0.01), acc=0.4), FAST)
    assert worse.check("performance/tier").drift


def test_language_shift_flagged() -> None:
    rng = np.random.default_rng(3)
    mixed = ["Напишите функцию на Python"] * 60 + ["plain english text"] * 240
    res = compare(_sample(rng, 1000), _sample(rng, 300, texts=mixed), FAST)
    assert res.check("language").drift


def test_effect_floor_suppresses_tiny_but_significant_shift() -> None:
    """Huge samples make a 2-point mix change significant; the PSI floor keeps it from alarming."""
    ref = compute_stats({"tier": np.tile([[0.8, 0.1, 0.1]], (1, 1))}, HEADS)
    ref.heads["tier"].pred_counts = np.array([50000, 30000, 20000])
    cur = compute_stats({"tier": np.tile([[0.8, 0.1, 0.1]], (1, 1))}, HEADS)
    cur.heads["tier"].pred_counts = np.array([52000, 29000, 19000])
    cfg = DriftConfig(checks=("prediction_mix",), n_permutations=200, n_boot=200)
    c = compare(ref, cur, cfg).check("prediction_mix/tier")
    assert c.significant and c.effect < cfg.min_psi and not c.drift
    loose = DriftConfig(checks=("prediction_mix",), n_permutations=200, n_boot=200, min_psi=0.0)
    assert compare(ref, cur, loose).check("prediction_mix/tier").drift


def test_label_set_mismatch_is_skipped_not_crashed() -> None:
    rng = np.random.default_rng(4)
    ref = _sample(rng, 200)
    cur = compute_stats({"tier": np.full((5, 2), 0.5)}, {"tier": ("a", "b")})
    res = compare(ref, cur, FAST)
    assert "head/tier" in res.skipped


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="alpha"):
        DriftConfig(alpha=1.5)
    with pytest.raises(ValueError, match="unknown checks"):
        DriftConfig(checks=("vibes",))


def test_report_files(tmp_path: Path) -> None:
    import json

    rng = np.random.default_rng(5)
    ref, cur = _sample(rng, 600), _sample(rng, 300, mix=(0.2, 0.2, 0.6), acc=0.5)
    res = compare(ref, cur, FAST)
    paths = write_drift_report(res, ref, cur, tmp_path / "rep")
    summary = json.loads(paths["json"].read_text())
    assert summary["drift"] is True and summary["exit_code"] == 1
    assert "performance/tier" in summary["flagged"]
    md = paths["markdown"].read_text()
    assert "DRIFT" in md and "plots/performance_tier.png" in md
    html = paths["html"].read_text()
    assert "<table>" in html and 'class="flag"' in html
    pngs = sorted(p.name for p in (tmp_path / "rep" / "plots").glob("*.png"))
    assert {"embedding.png", "token_length.png", "performance_tier.png", "language.png"} <= set(pngs)
