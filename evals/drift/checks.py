"""Drift checks: compare a current set's statistics with the reference's and decide, at a stated alpha.

Job: `compare(reference, current, config) -> DriftResult`, pure numpy/scipy on two `ReferenceStats`
(the reference from training time or a labelled file, the current one computed the same way).

Checks (each runs only when both sides carry what it needs):
- performance/<head>   (labelled on both sides) macro-recall drop over the classes present on both
                       sides (>= MIN_CLASS_ROWS rows each), so label shift is not read as degradation:
                       one-sided permutation test on pooled (truth, prediction) rows; bootstrap 95%
                       intervals for delta macro-F1, delta accuracy and every per-class F1 delta
                       (reported, not part of the decision);
- label_shift/<head>   (labelled on both sides) chi-square on the label mix, PSI as effect size;
- prediction_mix/<head> chi-square on the predicted-label mix, PSI;
- confidence/<head>    chi-square on the 10-bin top-class-probability histogram, PSI;
- embedding            RBF-kernel MMD permutation test on embedding subsamples (+ domain-classifier AUC);
- token_length         two-sample KS on token counts (before truncation);
- language             chi-square on script-bucket counts (see pipelines.data.language), PSI.

Decision: p-values of every check that ran are adjusted with Holm's step-down method, so the chance
of flagging anything on a set drawn from the reference distribution is at most alpha (family-wise),
whatever the dependence between checks. A check flags drift when its adjusted p-value is <= alpha
AND its effect reaches the configured floor (PSI, KS statistic, macro-F1 drop). Floors keep huge
prediction logs, where every negligible change is "significant", from alarming; they can only
lower the false-alarm rate. Exit status: 0 no drift, 1 drift.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from evals.drift.embedding import mmd_permutation_test
from evals.stats.bootstrap import (
    f1_from_confusion,
    independent_bootstrap_diff,
    macro_f1_from_confusion,
    macro_recall_from_confusion,
    permutation_test_diff,
)
from evals.stats.shift_tests import bonferroni, chi2_homogeneity, holm, ks_two_sample, psi
from pipelines.data.language import BUCKETS
from pipelines.train.reference_stats import HeadStats, ReferenceStats

Correction = Literal["holm", "bonferroni", "none"]
FAMILIES = (
    "performance",
    "label_shift",
    "prediction_mix",
    "confidence",
    "embedding",
    "token_length",
    "language",
)


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds of `tierroute drift`; defaults are argued in the README ("Drift defaults, and why")."""

    alpha: float = 0.01
    correction: Correction = "holm"
    n_permutations: int = 2000
    max_embedding_rows: int = 500
    n_boot: int = 1000
    min_expected: float = 5.0
    min_psi: float = 0.02
    min_ks: float = 0.05
    min_f1_drop: float = 0.01
    domain_auc: bool = True
    checks: tuple[str, ...] = FAMILIES
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.correction not in ("holm", "bonferroni", "none"):
            raise ValueError(f"correction must be holm, bonferroni or none, got {self.correction!r}")
        if self.n_permutations < 100:
            raise ValueError(f"n_permutations must be >= 100, got {self.n_permutations}")
        if self.max_embedding_rows < 20:
            raise ValueError(f"max_embedding_rows must be >= 20, got {self.max_embedding_rows}")
        if self.n_boot < 100:
            raise ValueError(f"n_boot must be >= 100, got {self.n_boot}")
        for name in ("min_psi", "min_ks", "min_f1_drop"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        unknown = set(self.checks) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown checks {sorted(unknown)}; choose from {list(FAMILIES)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = ",".join(self.checks)
        return d


@dataclass
class CheckResult:
    name: str
    family: str
    head: str | None
    test: str
    statistic: float
    p_value: float
    effect_name: str
    effect: float
    effect_floor: float
    n_ref: int
    n_cur: int
    adjusted_p: float = 1.0
    significant: bool = False
    drift: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriftResult:
    checks: list[CheckResult]
    skipped: dict[str, str]
    config: DriftConfig
    reference: dict[str, Any]
    current: dict[str, Any]

    @property
    def drift(self) -> bool:
        return any(c.drift for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 1 if self.drift else 0

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "exit_code": self.exit_code,
            "alpha": self.config.alpha,
            "correction": self.config.correction,
            "flagged": [c.name for c in self.checks if c.drift],
            "checks": [c.to_dict() for c in self.checks],
            "skipped": self.skipped,
            "config": self.config.to_dict(),
            "reference": self.reference,
            "current": self.current,
        }


def _mix_check(
    family: str, head: str | None, ref: np.ndarray, cur: np.ndarray, config: DriftConfig, names: list[str]
) -> CheckResult:
    res = chi2_homogeneity(ref, cur, config.min_expected)
    rs, cs = float(np.sum(ref)), float(np.sum(cur))
    return CheckResult(
        name=family if head is None else f"{family}/{head}",
        family=family,
        head=head,
        test="chi-square",
        statistic=res.statistic,
        p_value=res.p_value,
        effect_name="psi",
        effect=psi(ref, cur),
        effect_floor=config.min_psi,
        n_ref=int(rs),
        n_cur=int(cs),
        detail={
            "categories": names,
            "reference_share": (np.asarray(ref) / max(rs, 1.0)).round(4).tolist(),
            "current_share": (np.asarray(cur) / max(cs, 1.0)).round(4).tolist(),
            "dof": res.dof,
        },
    )


MIN_CLASS_ROWS = 5
"""A class is compared only with at least this many true rows on both sides (else its recall is noise)."""


def _performance_check(head: str, ref: HeadStats, cur: HeadStats, config: DriftConfig) -> CheckResult:
    """Has the model got worse on the kinds of rows the current set has?

    Decision statistic: macro recall (balanced accuracy) over the classes with >= MIN_CLASS_ROWS true
    rows on both sides, both samples restricted to rows of those classes. Per-class recall does not
    depend on the label mix, so label shift alone (reported by label_shift/<head>) is not read as
    degradation; macro-F1 over classes absent from the current set was (a maths-only sample "fell"
    from 0.77 to 0.16 while its accuracy rose). Macro-F1, accuracy and per-class F1 are still reported."""
    # Over 60 lines: one permutation test plus its per-class intervals over the same arrays.
    k = len(ref.labels)
    rt_all, rp_all = ref.labelled_pairs()
    ct_all, cp_all = cur.labelled_pairs()
    ref_support = np.bincount(rt_all, minlength=k)
    cur_support = np.bincount(ct_all, minlength=k)
    shared = np.flatnonzero((ref_support >= MIN_CLASS_ROWS) & (cur_support >= MIN_CLASS_ROWS))
    keep_r = np.isin(rt_all, shared)
    keep_c = np.isin(ct_all, shared)
    rt, rp = rt_all[keep_r], rp_all[keep_r]
    ct, cp = ct_all[keep_c], cp_all[keep_c]
    if shared.size == 0:
        observed, p = 0.0, 1.0
    else:
        observed, p = permutation_test_diff(
            rt,
            rp,
            ct,
            cp,
            k,
            metric="macro_recall",
            alternative="less",
            n_permutations=config.n_permutations,
            seed=config.seed,
        )
    seed = config.seed + 1
    mf1 = independent_bootstrap_diff(
        rt_all, rp_all, ct_all, cp_all, k, metric="macro_f1", n_boot=config.n_boot, seed=seed
    )
    acc = independent_bootstrap_diff(
        rt_all, rp_all, ct_all, cp_all, k, metric="accuracy", n_boot=config.n_boot, seed=seed
    )
    per_class = []
    ref_f1 = f1_from_confusion(np.bincount(rt_all * k + rp_all, minlength=k * k).reshape(k, k))
    cur_f1 = f1_from_confusion(np.bincount(ct_all * k + cp_all, minlength=k * k).reshape(k, k))
    for j, label in enumerate(ref.labels):
        row: dict[str, Any] = {
            "label": label,
            "reference_f1": float(ref_f1[j]),
            "current_f1": float(cur_f1[j]),
            "reference_support": int(ref_support[j]),
            "current_support": int(cur_support[j]),
            "compared": bool(j in shared),
        }
        if np.isfinite(ref_f1[j]) and np.isfinite(cur_f1[j]):
            d = independent_bootstrap_diff(
                rt_all, rp_all, ct_all, cp_all, k, metric="f1", class_index=j, n_boot=config.n_boot, seed=seed
            )
            row.update(delta=d.delta.estimate, low=d.delta.low, high=d.delta.high)
        per_class.append(row)
    return CheckResult(
        name=f"performance/{head}",
        family="performance",
        head=head,
        test="permutation (macro-recall drop on shared classes)",
        statistic=observed,
        p_value=p,
        effect_name="macro_recall_drop",
        effect=-observed,
        effect_floor=config.min_f1_drop,
        n_ref=int(rt.size),
        n_cur=int(ct.size),
        detail={
            "compared_classes": [ref.labels[j] for j in shared],
            "reference_macro_recall": float(macro_recall_from_confusion(_cm(rt, rp, k))) if rt.size else None,
            "current_macro_recall": float(macro_recall_from_confusion(_cm(ct, cp, k))) if ct.size else None,
            "reference_macro_f1": float(macro_f1_from_confusion(_cm(rt_all, rp_all, k))),
            "current_macro_f1": float(macro_f1_from_confusion(_cm(ct_all, cp_all, k))),
            "delta_macro_f1": mf1.delta.to_dict(),
            "delta_accuracy": acc.delta.to_dict(),
            "reference_accuracy": acc.reference,
            "current_accuracy": acc.current,
            "per_class": per_class,
        },
    )


def _cm(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def planned_checks(reference: ReferenceStats, current: ReferenceStats, config: DriftConfig) -> int:
    """How many checks `compare` will run (an upper bound; fixes the permutation count up front)."""
    want = set(config.checks)
    m = 0
    for _head in set(reference.heads) & set(current.heads):
        m += len(want & {"performance", "label_shift", "prediction_mix", "confidence"})
    return m + len(want & {"embedding", "token_length", "language"})


def permutations_needed(alpha: float, n_checks: int) -> int:
    """Permutations for which the p-value floor 1/(B+1) is half the smallest Holm threshold alpha/m,
    so a permutation test can reach significance at all after the correction."""
    return int(np.ceil(2.0 * max(n_checks, 1) / alpha))


def compare(
    reference: ReferenceStats, current: ReferenceStats, config: DriftConfig | None = None
) -> DriftResult:
    """Run every applicable check, adjust p-values, decide.

    The permutation count is raised when needed so the smallest attainable p-value, 1/(B+1), is
    below the strictest Holm threshold alpha/m; otherwise the embedding and performance checks
    could never fire (300 permutations cannot beat 0.01/7)."""
    # Over 60 lines: a flat sequence of checks, a few lines each; splitting would only pass the same arrays
    # around.
    config = config or DriftConfig()
    needed = permutations_needed(config.alpha, planned_checks(reference, current, config))
    if config.correction != "none" and needed > config.n_permutations:
        config = replace(config, n_permutations=needed)
    want = set(config.checks)
    checks: list[CheckResult] = []
    skipped: dict[str, str] = {}
    shared = [h for h in reference.heads if h in current.heads]
    for head in current.heads:
        if head not in reference.heads:
            skipped[f"head/{head}"] = "head not in the reference statistics"
    for head in shared:
        ref, cur = reference.heads[head], current.heads[head]
        if ref.labels != cur.labels:
            skipped[f"head/{head}"] = (
                f"label sets differ: reference {list(ref.labels)} vs current {list(cur.labels)}"
            )
            continue
        names = list(ref.labels)
        if "performance" in want:
            if ref.has_labels and cur.has_labels:
                checks.append(_performance_check(head, ref, cur, config))
            else:
                skipped[f"performance/{head}"] = "needs labels on both sides"
        if "label_shift" in want:
            rl, cl = ref.label_counts, cur.label_counts
            if rl is not None and cl is not None and rl.sum() > 0 and cl.sum() > 0:
                checks.append(_mix_check("label_shift", head, rl, cl, config, names))
            else:
                skipped[f"label_shift/{head}"] = "needs labels on both sides"
        if "prediction_mix" in want:
            checks.append(_mix_check("prediction_mix", head, ref.pred_counts, cur.pred_counts, config, names))
        if "confidence" in want:
            bins = [
                f"{a:.1f}-{b:.1f}"
                for a, b in zip(np.linspace(0, 0.9, 10), np.linspace(0.1, 1, 10), strict=True)
            ]
            checks.append(
                _mix_check("confidence", head, ref.confidence_hist, cur.confidence_hist, config, bins)
            )
    if "embedding" in want:
        if reference.embeddings is not None and current.embeddings is not None:
            if min(len(reference.embeddings), len(current.embeddings)) < 10:
                skipped["embedding"] = "needs >= 10 embedded rows on each side"
            else:
                r = mmd_permutation_test(
                    reference.embeddings,
                    current.embeddings,
                    n_permutations=config.n_permutations,
                    max_rows=config.max_embedding_rows,
                    seed=config.seed,
                    with_domain_auc=config.domain_auc,
                )
                checks.append(
                    CheckResult(
                        name="embedding",
                        family="embedding",
                        head=None,
                        test="MMD (RBF) permutation",
                        statistic=r.mmd2,
                        p_value=r.p_value,
                        effect_name="mmd2",
                        effect=r.mmd2,
                        effect_floor=0.0,
                        n_ref=r.n_ref,
                        n_cur=r.n_cur,
                        detail={
                            "bandwidth": r.bandwidth,
                            "domain_auc": r.domain_auc,
                            "n_permutations": r.n_permutations,
                        },
                    )
                )
        else:
            skipped["embedding"] = "needs embeddings on both sides (texts for the current set)"
    if "token_length" in want:
        if (
            reference.token_counts is not None
            and current.token_counts is not None
            and len(current.token_counts)
        ):
            r2 = ks_two_sample(reference.token_counts, current.token_counts)
            checks.append(
                CheckResult(
                    name="token_length",
                    family="token_length",
                    head=None,
                    test="Kolmogorov-Smirnov",
                    statistic=r2.statistic,
                    p_value=r2.p_value,
                    effect_name="ks_d",
                    effect=r2.statistic,
                    effect_floor=config.min_ks,
                    n_ref=len(reference.token_counts),
                    n_cur=len(current.token_counts),
                    detail={
                        "reference_median": float(np.median(reference.token_counts)),
                        "current_median": float(np.median(current.token_counts)),
                        "reference_p90": float(np.quantile(reference.token_counts, 0.9)),
                        "current_p90": float(np.quantile(current.token_counts, 0.9)),
                        "reference_truncated_share": reference.truncated_share,
                        "current_truncated_share": current.truncated_share,
                    },
                )
            )
        else:
            skipped["token_length"] = "needs token counts on both sides"
    if "language" in want:
        if reference.language is not None and current.language is not None:
            ref_l = np.array([reference.language.get(b, 0) for b in BUCKETS], dtype=np.float64)
            cur_l = np.array([current.language.get(b, 0) for b in BUCKETS], dtype=np.float64)
            if ref_l.sum() > 0 and cur_l.sum() > 0:
                checks.append(_mix_check("language", None, ref_l, cur_l, config, list(BUCKETS)))
        else:
            skipped["language"] = "needs texts on both sides"
    _decide(checks, config)
    return DriftResult(checks, skipped, config, reference.summary(), current.summary())


def _decide(checks: list[CheckResult], config: DriftConfig) -> None:
    if not checks:
        return
    p = np.array([c.p_value for c in checks])
    if config.correction == "holm":
        adj = holm(p)
    elif config.correction == "bonferroni":
        adj = bonferroni(p)
    else:
        adj = p
    for c, a in zip(checks, adj, strict=True):
        c.adjusted_p = float(a)
        c.significant = bool(a <= config.alpha)
        c.drift = c.significant and c.effect >= c.effect_floor
