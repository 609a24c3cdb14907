"""Render a `DriftResult` as report.md + report.html + summary.json + PNG plots.

Job: turn the numbers into something a person can act on: a verdict line, one table of every
check (statistic, effect, raw and Holm-adjusted p-value, decision), then one section per family
with the plot that shows *what* moved (mix bars, confidence histogram, token-length ECDF, a 2-D
PCA view of the embedding samples, per-class F1 deltas with intervals).

Trade-off: plots are regenerated from the statistics, not from raw rows, so a report can be
made from stored reference statistics alone; the PCA view is a picture for humans (the test runs
in the full 384-d space).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evals.drift.checks import CheckResult, DriftResult
from evals.io.report import Block, Heading, Image, Para, Table, pyplot, write_report
from pipelines.train.reference_stats import ReferenceStats

FAMILY_TITLES = {
    "performance": "Performance drift (labelled sets)",
    "label_shift": "Label shift",
    "prediction_mix": "Prediction drift: predicted-label mix",
    "confidence": "Prediction drift: confidence histogram",
    "embedding": "Input drift: embedding space",
    "token_length": "Input drift: token length",
    "language": "Input drift: language (script) mix",
}


def _bar_plot(check: CheckResult, path: Path) -> None:
    plt = pyplot()
    names = check.detail["categories"]
    ref = np.asarray(check.detail["reference_share"])
    cur = np.asarray(check.detail["current_share"])
    keep = (ref + cur) > 0
    names = [n for n, k in zip(names, keep, strict=True) if k]
    ref, cur = ref[keep], cur[keep]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.5, 0.75 * len(names) + 2), 3.4))
    ax.bar(x - 0.2, ref, 0.4, label=f"reference (n={check.n_ref})", color="#7a9cc6")
    ax.bar(x + 0.2, cur, 0.4, label=f"current (n={check.n_cur})", color="#e08a4b")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("share of rows")
    ax.set_title(f"{check.name}: PSI {check.effect:.3f}, adj. p {check.adjusted_p:.2g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ecdf_plot(ref: np.ndarray, cur: np.ndarray, check: CheckResult, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for vals, label, color in ((ref, "reference", "#7a9cc6"), (cur, "current", "#e08a4b")):
        v = np.sort(np.maximum(vals, 1))
        ax.step(
            v, np.arange(1, v.size + 1) / v.size, where="post", label=f"{label} (n={v.size})", color=color
        )
    ax.set_xscale("log")
    ax.set_xlabel("tokens per text (before truncation)")
    ax.set_ylabel("cumulative share")
    ax.set_title(f"token length: KS D {check.statistic:.3f}, adj. p {check.adjusted_p:.2g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pca_plot(ref: np.ndarray, cur: np.ndarray, check: CheckResult, path: Path, seed: int = 0) -> None:
    plt = pyplot()
    rng = np.random.default_rng(seed)
    r = ref[rng.permutation(len(ref))[:500]].astype(np.float64)
    c = cur[rng.permutation(len(cur))[:500]].astype(np.float64)
    z = np.vstack([r, c])
    mu = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mu, full_matrices=False)
    pr, pc = (r - mu) @ vt[:2].T, (c - mu) @ vt[:2].T
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.scatter(pr[:, 0], pr[:, 1], s=6, alpha=0.5, label="reference", color="#7a9cc6")
    ax.scatter(pc[:, 0], pc[:, 1], s=6, alpha=0.5, label="current", color="#e08a4b")
    auc = check.detail.get("domain_auc")
    extra = f", domain AUC {auc:.2f}" if auc is not None else ""
    ax.set_title(f"embeddings (PCA 2-D): adj. p {check.adjusted_p:.2g}{extra}", fontsize=9)
    ax.legend(fontsize=8, markerscale=2)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _f1_plot(check: CheckResult, path: Path) -> None:
    plt = pyplot()
    rows = [r for r in check.detail["per_class"] if "delta" in r]
    if not rows:
        return
    y = np.arange(len(rows))
    d = np.array([r["delta"] for r in rows])
    lo = d - np.array([r["low"] for r in rows])
    hi = np.array([r["high"] for r in rows]) - d
    fig, ax = plt.subplots(figsize=(5.2, 0.35 * len(rows) + 1.6))
    ax.errorbar(d, y, xerr=[lo, hi], fmt="o", color="#444", capsize=3)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(y, [r["label"] for r in rows])
    ax.set_xlabel("F1 current - reference (95% bootstrap interval)")
    ax.set_title(
        f"{check.name}: macro-recall {check.statistic:+.3f} (shared classes), adj. p {check.adjusted_p:.2g}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _verdict(result: DriftResult) -> str:
    flagged = [c.name for c in result.checks if c.drift]
    if flagged:
        return (
            f"**DRIFT** in {len(flagged)} of {len(result.checks)} checks: {', '.join(flagged)} "
            f"(family-wise alpha {result.config.alpha:g}, {result.config.correction} correction)."
        )
    return (
        f"**No drift**: none of {len(result.checks)} checks is significant at family-wise alpha "
        f"{result.config.alpha:g} ({result.config.correction} correction) with an effect above its floor."
    )


def build_blocks(
    result: DriftResult, reference: ReferenceStats, current: ReferenceStats, out_dir: Path
) -> list[Block]:
    # Over 60 lines: the report's sections in reading order, each built inline where it is printed.
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    blocks: list[Block] = [Para(_verdict(result))]
    ref_desc = ", ".join(
        f"{k}: {v}" for k, v in reference.meta.items() if k in ("source", "model", "split", "digest")
    )
    cur_desc = ", ".join(f"{k}: {v}" for k, v in current.meta.items() if k in ("source", "model", "split"))
    blocks.append(
        Para(f"Reference: {reference.n_rows} rows ({ref_desc}). Current: {current.n_rows} rows ({cur_desc}).")
    )
    blocks.append(
        Table(
            ["check", "test", "statistic", "effect", "effect floor", "p", "adjusted p", "decision"],
            [
                [
                    c.name,
                    c.test,
                    c.statistic,
                    f"{c.effect_name}={c.effect:.3g}",
                    c.effect_floor,
                    c.p_value,
                    c.adjusted_p,
                    "DRIFT" if c.drift else ("significant, below floor" if c.significant else "ok"),
                ]
                for c in result.checks
            ],
        )
    )
    if result.skipped:
        blocks.append(Para("Skipped: " + "; ".join(f"`{k}` ({v})" for k, v in result.skipped.items()) + "."))
    for family, title in FAMILY_TITLES.items():
        checks = [c for c in result.checks if c.family == family]
        if not checks:
            continue
        blocks.append(Heading(title))
        for c in checks:
            fname = c.name.replace("/", "_") + ".png"
            if family == "performance":
                d = c.detail
                blocks.append(
                    Para(
                        f"`{c.head}`: macro-F1 {d['reference_macro_f1']:.3f} -> {d['current_macro_f1']:.3f} "
                        f"(delta {d['delta_macro_f1']['estimate']:+.3f}, 95% CI "
                        f"[{d['delta_macro_f1']['low']:+.3f}, "
                        f"{d['delta_macro_f1']['high']:+.3f}]); accuracy {d['reference_accuracy']:.3f} -> "
                        f"{d['current_accuracy']:.3f}. Decision on macro recall over the classes present "
                        f"on both sides ({', '.join(d.get('compared_classes', [])) or 'none'}): "
                        f"{c.statistic:+.3f}, one-sided permutation p = {c.p_value:.3g}."
                    )
                )
                blocks.append(
                    Table(
                        ["class", "F1 ref", "F1 cur", "delta", "95% CI", "support ref", "support cur"],
                        [
                            [
                                r["label"],
                                r["reference_f1"],
                                r["current_f1"],
                                r.get("delta"),
                                f"[{r['low']:+.3f}, {r['high']:+.3f}]" if "low" in r else "–",
                                r["reference_support"],
                                r["current_support"],
                            ]
                            for r in d["per_class"]
                        ],
                    )
                )
                _f1_plot(c, plots / fname)
            elif (
                family == "embedding" and reference.embeddings is not None and current.embeddings is not None
            ):
                auc = c.detail.get("domain_auc")
                blocks.append(
                    Para(
                        f"MMD^2 {c.statistic:.4g} on {c.n_ref} + {c.n_cur} rows, "
                        f"{c.detail['n_permutations']} "
                        f"permutations, p = {c.p_value:.3g}"
                        + (
                            f"; a logistic domain classifier separates the sets with AUC {auc:.3f}"
                            if auc
                            else ""
                        )
                        + "."
                    )
                )
                _pca_plot(reference.embeddings, current.embeddings, c, plots / fname)
            elif (
                family == "token_length"
                and reference.token_counts is not None
                and current.token_counts is not None
            ):
                d = c.detail
                blocks.append(
                    Para(
                        f"median tokens {d['reference_median']:.0f} -> {d['current_median']:.0f}, p90 "
                        f"{d['reference_p90']:.0f} -> {d['current_p90']:.0f}; truncated share "
                        f"{_pct(d['reference_truncated_share'])} -> {_pct(d['current_truncated_share'])}."
                    )
                )
                _ecdf_plot(reference.token_counts, current.token_counts, c, plots / fname)
            elif "categories" in c.detail:
                _bar_plot(c, plots / fname)
            if (plots / fname).is_file():
                blocks.append(Image(f"plots/{fname}", c.name))
    blocks.append(Heading("Method"))
    blocks.append(
        Para(
            "Every check yields a p-value; p-values are adjusted together with "
            f"{result.config.correction} so the chance of any false alarm on a set drawn from the reference "
            f"distribution is at most {result.config.alpha:g}. A check flags drift when its adjusted "
            "p-value is at "
            "most alpha and its effect reaches the floor (PSI for mixes, KS D for token length, macro-recall "
            "drop on the classes present on both sides for "
            "performance). Mix tests are Pearson chi-square tests with categories of expected count < "
            f"{result.config.min_expected:g} pooled; embeddings use an RBF-kernel MMD permutation test "
            f"({result.config.n_permutations} permutations, <= {result.config.max_embedding_rows} rows per "
            "side); "
            "performance uses a one-sided permutation test on macro recall over shared classes (label "
            "shift alone does not move it) with bootstrap intervals for every delta."
        )
    )
    return blocks


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}%"


def write_drift_report(
    result: DriftResult,
    reference: ReferenceStats,
    current: ReferenceStats,
    out_dir: Path,
    title: str = "Drift report",
) -> dict[str, Path]:
    blocks = build_blocks(result, reference, current, Path(out_dir))
    summary = result.to_dict()
    summary["reference"]["meta"] = reference.meta
    summary["current"]["meta"] = current.meta
    return write_report(Path(out_dir), title, blocks, summary)
