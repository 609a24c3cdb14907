"""Train, evaluate, export and register the learned response gate (`tierroute gate train`).

Job: data/gate/gate.parquet -> embeddings of prompt and response (the same exported encoder and
`serving.model.textprep` code as serving, each side with its own token budget) + `serving.gate.signals`
-> a calibrated logistic head P(acceptable) and a reason head -> a threshold for the configured
target false-accept rate -> test metrics next to the string-match baselines on the same rows ->
one ONNX gate bundle (parity-checked against the sklearn heads) -> MLflow run + registered model
`tierroute-gate` with alias `candidate`.

Evaluation is of the SERVED decision: the deterministic checks run first and short-circuit, the
model scores only what passes, so the threshold is calibrated (on validation) and reported (on
test) for "checks, then model". The baselines on the same test rows are (a) the refusal phrase
list alone and (b) all deterministic checks; the learned gate alone is reported too.

Trade-offs: features are frozen sentence embeddings, so the gate learns "does this look like an
acceptable answer to this kind of request" from ~10k labelled rows; it cannot verify facts. The
acceptability labels are partly relative (judge preference, CoCoNoT pairs; see the data card),
so the metrics measure agreement with those labels, not ground truth about helpfulness.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipelines.gate.data import length_bin
from pipelines.gate.economics import CascadePrices, baselines, best_point, cost_curve, curve_table
from pipelines.gate.heads import fit_logistic_head, fit_mlp_head
from pipelines.train.embed import Embedder
from pipelines.train.encoder_export import EncoderArtifact, Precision, export_encoder
from pipelines.train.heads import FittedHead, fit_head
from serving.gate.checks import check_response
from serving.gate.refusals import is_refusal
from serving.gate.signals import signals_batch
from serving.model.textprep import TruncationSpec

COARSE_REASON = {
    "ok": "ok",
    "refusal": "refusal",
    "clarification": "refusal",
    "incorrect": "incorrect",
    "garbage": "garbage",
    "truncated": "truncated",
    "off_instruction": "off_instruction",
}
REASON_LABELS: tuple[str, ...] = ("ok", "refusal", "incorrect", "garbage", "truncated", "off_instruction")
ACCEPT_LABELS: tuple[str, str] = ("unacceptable", "acceptable")
CHECK_FAILED_SCORE = -1.0
"""The served score of a response a deterministic check rejects: below every threshold in [0, 1]."""
MLP_MIN_TRAIN_ROWS = 2000
"""`head="auto"` fits the MLP acceptability head from this many training rows on, else the logistic one."""
LISTED_WRONG_SOURCES: tuple[str, ...] = ("truthfulqa:incorrect", "mmlu_pro:wrong_option")
"""Sources whose rows are a data set's listed wrong answer to a question (see `listed_wrong_weight`)."""
PARITY_TOLERANCE = 1e-4
PARITY_ROWS = 128
SPLITS = ("train", "validation", "test")


@dataclass
class GateTrainConfig:
    """Everything that shapes a gate training run; logged as MLflow params."""

    data: Path = Path("data/gate/gate.parquet")
    out_dir: Path = Path("models/bundles")
    encoder_cache: Path = Path("models/encoder")
    embedding_cache: Path | None = Path(".cache/embeddings")
    precision: Precision = "int8"
    prompt_tokens: int = 48
    prompt_head_tokens: int = 16
    response_tokens: int = 96
    response_head_tokens: int = 48
    target_false_accept: float | None = None
    """None: threshold by cascade economics (`prices`); a value: the old fixed false-accept target."""
    prices: CascadePrices = field(default_factory=CascadePrices)
    reason_head: bool = True
    head: Literal["auto", "mlp", "logistic"] = "auto"
    """The acceptability head: a one-hidden-layer MLP (`pipelines.gate.heads`), a logistic regression, or
    `auto`: the MLP from `MLP_MIN_TRAIN_ROWS` training rows on (the default data has 6,578), else the
    logistic head (on a 700-row slice the MLP stops early and ranks worse: held-out ROC-AUC 0.55-0.75
    against the logistic head's 0.82)."""
    hidden: int = 128
    alpha: float = 1e-2
    """The MLP's hidden units and L2 penalty."""
    seeds: int = 3
    """MLPs fitted (random states seed, seed + 1, ...) and averaged into one head (`merge_mlps`): the
    validation-chosen threshold and the strong-answer escalation moved by up to 0.12 and 0.09 between
    single seeds; the average moves less."""
    listed_wrong_weight: float = 0.2
    """Training weight of the listed wrong answers (`LISTED_WRONG_SOURCES`) in the acceptability head.
    Frozen sentence embeddings barely tell a listed wrong answer from its right twin (held-out pair
    accuracy 0.58 on MMLU-Pro, 0.73 on TruthfulQA): at full weight the head learns to distrust every
    short factual sentence ("The capital of France is Paris." p 0.28) instead. They stay in validation
    and test at full weight, so the threshold and every reported number still count them. 0.2 was
    chosen on the validation split from {0, 0.1, 0.2, 0.4} (evals/RESULTS.md, "Response gate")."""
    cs: tuple[float, ...] = (0.25, 1.0, 4.0)
    """Inverse regularisation strengths tried for each logistic head (fewer, smaller: fast to fit)."""
    cv_folds: int = 2
    model_name: str = "tierroute-gate"
    experiment: str = "tierroute-gate"
    register: bool = True
    alias: str = "candidate"
    raw_dir: Path | None = None
    """Raw data (for the hand-labelled refusal responses); None: `data/raw` next to `data`'s folder."""
    refusal_labels: Path | None = None
    tracking_uri: str | None = None
    limit: int | None = None
    """Use at most this many rows (hash-stratified by split and reason): quick runs and tests."""
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.listed_wrong_weight <= 1.0:
            raise ValueError(f"listed_wrong_weight must be in [0, 1], got {self.listed_wrong_weight}")
        if self.head not in ("auto", "mlp", "logistic"):
            raise ValueError(f"head must be 'auto', 'mlp' or 'logistic', got {self.head!r}")
        if self.target_false_accept is not None and not 0.0 < self.target_false_accept < 1.0:
            raise ValueError(f"target_false_accept must be in (0, 1), got {self.target_false_accept}")
        for spec in (self.prompt_spec, self.response_spec):  # validates the token budgets early
            assert spec.max_tokens > 0

    @property
    def prompt_spec(self) -> TruncationSpec:
        return TruncationSpec(self.prompt_tokens, "head_tail", self.prompt_head_tokens)

    @property
    def response_spec(self) -> TruncationSpec:
        return TruncationSpec(self.response_tokens, "head_tail", self.response_head_tokens)

    def params(self) -> dict[str, Any]:
        return {
            "data": str(self.data),
            "precision": self.precision,
            "prompt_tokens": self.prompt_tokens,
            "prompt_head_tokens": self.prompt_head_tokens,
            "response_tokens": self.response_tokens,
            "response_head_tokens": self.response_head_tokens,
            "target_false_accept": self.target_false_accept,
            "threshold_rule": "false_accept" if self.target_false_accept is not None else "economics",
            **{f"price_{k}": v for k, v in asdict(self.prices).items()},
            "cs": ",".join(f"{c:g}" for c in self.cs),
            "cv_folds": self.cv_folds,
            "reason_head": self.reason_head,
            "head": self.head,
            "hidden": self.hidden,
            "alpha": self.alpha,
            "seeds": self.seeds,
            "listed_wrong_weight": self.listed_wrong_weight,
            "limit": self.limit,
            "seed": self.seed,
        }


@dataclass
class GateTrainResult:
    bundle_dir: Path
    threshold: float
    metrics: dict[str, float]
    heads: list[FittedHead]
    artifacts: list[Path]
    report: dict[str, Any]
    version: str | None = None
    model_uri: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None


# --------------------------------------------------------------------------------- pure metric code


def choose_threshold(p: np.ndarray, y: np.ndarray, target_far: float) -> float:
    """Smallest threshold t with false-accept rate mean(p[y == 0] >= t) <= target_far (accept iff p >= t)."""
    neg = np.sort(np.asarray(p, dtype=np.float64)[np.asarray(y) == 0])[::-1]
    if len(neg) == 0:
        return 0.0
    allowed = int(np.floor(target_far * len(neg) + 1e-9))
    if allowed >= len(neg):
        return 0.0
    return float(np.nextafter(neg[allowed], np.inf))


def decision_metrics(y: np.ndarray, accept: np.ndarray) -> dict[str, float]:
    """Metrics of a hard accept/reject decision against labels (1 = acceptable)."""
    y = np.asarray(y).astype(bool)
    a = np.asarray(accept).astype(bool)
    tp_acc = float(np.sum(a & y))
    fa = float(np.sum(a & ~y))
    tr = float(np.sum(~a & ~y))
    fr = float(np.sum(~a & y))
    n_neg, n_pos = float(np.sum(~y)), float(np.sum(y))
    rej_recall = tr / n_neg if n_neg else 0.0
    rej_precision = tr / (tr + fr) if tr + fr else 0.0
    acc_recall = tp_acc / n_pos if n_pos else 0.0
    return {
        "false_accept_rate": fa / n_neg if n_neg else 0.0,
        "accept_precision": tp_acc / (tp_acc + fa) if tp_acc + fa else 0.0,
        "accept_recall": acc_recall,
        "reject_precision": rej_precision,
        "reject_recall": rej_recall,
        "reject_f1": 2 * rej_precision * rej_recall / (rej_precision + rej_recall)
        if rej_precision + rej_recall
        else 0.0,
        "balanced_accuracy": (rej_recall + acc_recall) / 2,
        "accuracy": float(np.mean(a == y)) if len(y) else 0.0,
        "accept_rate": float(np.mean(a)) if len(a) else 0.0,
    }


def score_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Threshold-free metrics of an acceptability score (higher = more acceptable)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y).astype(int)
    if len(set(y.tolist())) < 2:
        return {"roc_auc": float("nan"), "pr_auc_unacceptable": float("nan")}
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc_unacceptable": float(average_precision_score(1 - y, -np.asarray(score))),
    }


def per_reason_reject_rate(reasons: np.ndarray, accept: np.ndarray) -> dict[str, float]:
    """Share of rows of each (fine) reason the decision rejects ("ok": the false-reject rate)."""
    out = {}
    for r in sorted(set(reasons.tolist())):
        m = reasons == r
        out[r] = float(np.mean(~accept[m])) if m.any() else float("nan")
    return out


# ------------------------------------------------------------------------------------- the pipeline


def subsample(df: Any, limit: int | None) -> Any:
    """At most `limit` rows, 70/15/15 over splits, hash-ordered within (split, reason) cells."""
    if limit is None or len(df) <= limit:
        return df
    import hashlib

    import pandas as pd

    share = {"train": 0.7, "validation": 0.15, "test": 0.15}
    parts = []
    for split, frac in share.items():
        sub = df[df["split"] == split]
        n = max(1, int(limit * frac))
        key = sub["id"].map(lambda s: hashlib.sha256(f"gate-sub:{s}".encode()).hexdigest())
        sub = sub.assign(_k=key).sort_values("_k")
        # round-robin over reasons so rare reasons survive the cut
        sub = sub.assign(_r=sub.groupby("reason").cumcount()).sort_values(["_r", "_k"]).head(n)
        parts.append(sub.drop(columns=["_k", "_r"]))
    return pd.concat(parts).reset_index(drop=True)


def build_features(
    embedder_p: Embedder, embedder_r: Embedder, prompts: list[str], responses: list[str], progress: bool
) -> np.ndarray:
    """[N, 3*384 + 1 + S]: prompt emb, response emb, their product, its sum (cosine), signals (the
    ONNX graph's order)."""
    ep = embedder_p.embed(prompts, progress=progress, desc="embedding prompts")
    er = embedder_r.embed(responses, progress=progress, desc="embedding responses")
    product = (ep * er).astype(np.float32)
    cosine = product.sum(axis=1, keepdims=True)
    return np.concatenate([ep, er, product, cosine, signals_batch(prompts, responses)], axis=1).astype(
        np.float32
    )


def check_fails(prompts: list[str], responses: list[str]) -> np.ndarray:
    """True where the deterministic checks (no provider metadata) reject the response."""
    return np.array([not check_response(p, r).ok for p, r in zip(prompts, responses, strict=True)])


def _plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_xlabel("false-accept rate (unacceptable accepted)")
    ax.set_ylabel("acceptable accepted")
    ax.set_title("gate vs baselines (test)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def train_gate(
    config: GateTrainConfig, *, progress: bool = True, echo: Callable[[str], None] = print
) -> GateTrainResult:
    # Over 60 lines: the gate pipeline read top to bottom; features, heads, evaluation and plots are named
    # steps.
    from pipelines.data.dataset import dataset_digest
    from pipelines.gate.data import load_gate_dataset
    from pipelines.gate.export import build_gate_bundle

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    df = subsample(load_gate_dataset(config.data), config.limit).reset_index(drop=True)
    digest = dataset_digest(df) if "id" in df.columns else ""
    for split in SPLITS:
        ys = df.loc[df["split"] == split, "acceptable"]
        if ys.nunique() < 2:
            raise ValueError(f"{config.data}: split {split!r} needs both acceptable and unacceptable rows")
    echo(f"data: {len(df)} rows from {config.data} (digest {digest[:12]})")

    t = time.perf_counter()
    encoder: EncoderArtifact = export_encoder(config.encoder_cache, config.precision)
    prompts = df["prompt"].astype(str).tolist()
    responses = df["response"].astype(str).tolist()
    X = _features(config, encoder, prompts, responses, progress)
    timings["features_s"] = time.perf_counter() - t
    echo(f"features: {X.shape[1]} per row ({timings['features_s']:.0f}s)")

    y = df["acceptable"].to_numpy().astype(int)
    fine = df["reason"].astype(str).to_numpy()
    coarse = np.array([COARSE_REASON.get(r, "incorrect") for r in fine])
    split = df["split"].to_numpy()
    m = {s: split == s for s in SPLITS}

    t = time.perf_counter()
    acc_labels = [ACCEPT_LABELS[v] for v in y]
    listed = df["source"].astype(str).isin(LISTED_WRONG_SOURCES).to_numpy()
    weights = np.where(listed, config.listed_wrong_weight, 1.0)
    heads = _fit_heads(config, X, acc_labels, coarse, m, echo, weights)
    head = heads[0]
    timings["heads_s"] = time.perf_counter() - t

    p_model = head.predict_proba(X)[:, 1]
    fails = check_fails(prompts, responses)
    served = np.where(fails, CHECK_FAILED_SCORE, p_model)  # checks short-circuit: rejected at any threshold
    threshold = pick_threshold(config, served[m["validation"]], y[m["validation"]])
    refusal = np.array([is_refusal(r) for r in responses])
    metrics, report = _evaluate(
        config, df, heads, X, y, coarse, m, served, p_model, fails, refusal, threshold
    )
    report["encoder_path"] = str(encoder.path)
    report["economics"] = economics_report(config.prices, served[m["test"]], y[m["test"]], threshold)
    report["refusal_hand_labels"] = _refusal_hand_eval(config, encoder, heads, threshold, df, progress)
    for k in ("combined", "phrase", "model"):
        for stat in ("accuracy", "f1"):
            v = report["refusal_hand_labels"].get(k, {}).get(stat)
            if v is not None:
                metrics[f"test_refusal_hand_{k}_{stat}"] = float(v)
    chosen = report["economics"]["at_threshold"]
    metrics["test_cost_per_1000"] = chosen["cost_per_1000"]
    metrics["test_bad_per_1000"] = chosen["bad_per_1000"]
    timings["features_heads_eval_s"] = time.perf_counter() - t0
    echo(_summary_line(metrics))
    for line in report_lines(report):
        echo(line)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    plots_dir = Path(config.out_dir) / ".plots" / f"{config.model_name}-{stamp}"
    mt = m["test"]
    artifacts = _plots(plots_dir, heads, X, y, coarse, acc_labels, mt, served, p_model, fails, refusal)
    artifacts.append(_plot_economics(config.prices, served[mt], y[mt], threshold, plots_dir))

    t = time.perf_counter()
    bundle_dir = build_gate_bundle(
        Path(config.out_dir) / f"{config.model_name}-{stamp}",
        encoder,
        heads,
        config.prompt_spec,
        config.response_spec,
        threshold=threshold,
        target_false_accept_rate=float(report["validation"]["gate"]["false_accept_rate"]),
        reason_refusal=float(report["refusal_hand_labels"].get("refusal_min", 0.0)),
        name=config.model_name,
        metadata={
            "training_data": {"digest": digest, "rows": len(df), "path": str(config.data)},
            "metrics": {
                k: round(v, 6) for k, v in metrics.items() if k.startswith("test_gate") or k == "threshold"
            },
            "operating_point": {
                "rule": "false_accept" if config.target_false_accept is not None else "economics",
                "prices": asdict(config.prices),
                "test": report["economics"]["at_threshold"],
            },
        },
    )
    timings["export_s"] = time.perf_counter() - t
    parity = gate_parity(bundle_dir, heads, prompts, responses, X, np.flatnonzero(mt)[:PARITY_ROWS])
    metrics["parity_max_abs_diff"] = parity
    if parity > PARITY_TOLERANCE:
        shutil.rmtree(bundle_dir, ignore_errors=True)
        raise RuntimeError(f"ONNX gate bundle disagrees with the training-time heads (max diff {parity:.2e})")
    echo(f"bundle: {bundle_dir} (threshold {threshold:.3f}, parity max |diff| {parity:.1e})")
    report["one_line_check"] = one_line_check(bundle_dir)
    echo(one_line_check_line(report["one_line_check"]))
    report["metrics"] = metrics
    report["timings"] = timings
    report_path = plots_dir / "gate_metrics.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2, default=float))
    artifacts.append(report_path)

    result = GateTrainResult(bundle_dir, threshold, metrics, heads, artifacts, report, timings=timings)
    if config.register:  # removes the bundle folder if registration fails
        from pipelines.train.register import register_trained

        register_trained(
            config,
            result,
            echo,
            dataset_df=df,
            dataset_digest=digest,
            tags={"tierroute.kind": "gate", "tierroute.dataset_sha256": digest},
            tracking_uri=config.tracking_uri,
        )
    timings["total_s"] = time.perf_counter() - t0
    return result


def _features(
    config: GateTrainConfig,
    encoder: EncoderArtifact,
    prompts: list[str],
    responses: list[str],
    progress: bool,
) -> np.ndarray:
    """Prompt and response embeddings (each with its own truncation) plus signals, one row per pair."""
    # int8 encoders quantise activations dynamically per BATCH (DynamicQuantizeLinear): an embedding
    # then depends on its batch-mates and their padding. Serving scores int8 gates one item at a
    # time, so training embeds one text at a time too (fp32 is batch-invariant to ~1e-7).
    batch = 1 if config.precision == "int8" else 16
    emb_p = Embedder(
        encoder,
        config.prompt_spec,
        cache_dir=config.embedding_cache,
        threads=config.threads,
        batch_size=batch,
    )
    emb_r = Embedder(
        encoder,
        config.response_spec,
        cache_dir=config.embedding_cache,
        threads=config.threads,
        batch_size=batch,
    )
    return build_features(emb_p, emb_r, prompts, responses, progress)


def _fit_heads(
    config: GateTrainConfig,
    X: np.ndarray,
    acc_labels: list[str],
    coarse: np.ndarray,
    m: dict[str, np.ndarray],
    echo: Callable[[str], None],
    weights: np.ndarray | None = None,
) -> list[FittedHead]:
    """The `acceptable` head, plus the coarse `reason` head when enabled and >= 3 reasons are present."""
    heads: list[FittedHead] = []
    train_labels = [acc_labels[i] for i in np.flatnonzero(m["train"])]
    val_labels = [acc_labels[i] for i in np.flatnonzero(m["validation"])]
    use_mlp = config.head == "mlp" or (config.head == "auto" and len(train_labels) >= MLP_MIN_TRAIN_ROWS)
    if use_mlp:
        head = fit_mlp_head(
            "acceptable",
            X[m["train"]],
            train_labels,
            X[m["validation"]],
            val_labels,
            ACCEPT_LABELS,
            hidden=config.hidden,
            alpha=config.alpha,
            seed=config.seed,
            seeds=config.seeds,
            sample_weight=None if weights is None else weights[m["train"]],
        )
    else:
        head = fit_logistic_head(
            "acceptable",
            X[m["train"]],
            train_labels,
            X[m["validation"]],
            val_labels,
            ACCEPT_LABELS,
            Cs=config.cs,
            cv_folds=config.cv_folds,
            seed=config.seed,
            sample_weight=None if weights is None else weights[m["train"]],
        )
    heads.append(head)
    if config.reason_head:
        present = set(coarse[m["train"]].tolist())
        labels = [r for r in REASON_LABELS if r in present]
        if len(labels) >= 3:
            keep_v = np.isin(coarse, labels) & m["validation"]
            heads.append(
                fit_head(
                    "reason",
                    X[m["train"]],
                    coarse[m["train"]].tolist(),
                    X[keep_v],
                    coarse[keep_v].tolist(),
                    labels,
                    Cs=config.cs,
                    cv_folds=config.cv_folds,
                    seed=config.seed,
                )
            )
        else:
            echo("reason head skipped: fewer than 3 reasons in the training split")
    return heads


def _evaluate(
    config: GateTrainConfig,
    df: Any,
    heads: list[FittedHead],
    X: np.ndarray,
    y: np.ndarray,
    coarse: np.ndarray,
    m: dict[str, np.ndarray],
    served: np.ndarray,
    p_model: np.ndarray,
    fails: np.ndarray,
    refusal: np.ndarray,
    threshold: float,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Validation and test metrics of the gate, the model alone and the two baselines (overall, per
    reason, per source) and of the reason head: (flat metrics for MLflow, nested report)."""
    # Over 60 lines: one table of systems x splits filled in two nested loops over the same masks.
    from pipelines.train.metrics import classification_metrics

    head = heads[0]
    acc_labels = [ACCEPT_LABELS[v] for v in y]
    fine = df["reason"].astype(str).to_numpy()
    metrics: dict[str, float] = {"threshold": threshold}
    report: dict[str, Any] = {
        "threshold": threshold,
        "target_false_accept": config.target_false_accept,
    }
    systems = {
        "gate": (served, served >= threshold),
        "model_only": (
            p_model,
            p_model >= pick_threshold(config, p_model[m["validation"]], y[m["validation"]]),
        ),
        "baseline_refusal": ((~refusal).astype(float), ~refusal),
        "baseline_checks": ((~fails).astype(float), ~fails),
    }
    for split_name in ("validation", "test"):
        mm = m[split_name]
        for name, (score, accept) in systems.items():
            vals = {**score_metrics(y[mm], score[mm]), **decision_metrics(y[mm], accept[mm])}
            metrics.update({f"{split_name}_{name}_{k}": v for k, v in vals.items()})
            report.setdefault(split_name, {})[name] = vals
            rr = per_reason_reject_rate(fine[mm], accept[mm])
            report[split_name].setdefault("reject_rate_by_reason", {})[name] = rr
            if split_name == "test":
                metrics.update({f"test_{name}_reject_rate_{k}": v for k, v in rr.items()})
        sources = df["source"].astype(str).to_numpy()
        report[split_name]["false_escalation_by_source"] = _reject_share(
            y[mm].astype(bool), sources[mm], systems["gate"][1][mm]
        )
        lengths = np.array([length_bin(len(r)) for r in df["response"].astype(str)])
        report[split_name]["false_escalation_by_length"] = _reject_share(
            y[mm].astype(bool), lengths[mm], systems["gate"][1][mm]
        )
        report[split_name]["by_source"] = {
            src: {
                "rows": int(np.sum(mm & (sources == src))),
                **{
                    name: decision_metrics(y[mm & (sources == src)], acc[mm & (sources == src)])["accuracy"]
                    for name, (_, acc) in systems.items()
                },
            }
            for src in sorted(set(sources[mm].tolist()))
        }
    mt = m["test"]
    report["test"]["right_vs_wrong_auc"] = right_vs_wrong_auc(
        df["source"].astype(str).to_numpy()[mt], fine[mt], y[mt], p_model[mt]
    )
    if len(heads) > 1:
        rh = heads[1]
        for split_name in ("validation", "test"):
            keep = m[split_name] & np.isin(coarse, rh.labels)
            cm = classification_metrics(coarse[keep].tolist(), rh.predict_proba(X[keep]), rh.labels)
            metrics.update({f"{split_name}_reason_{k}": v for k, v in cm.items()})
            report[split_name]["reason_head"] = cm
    head_cm = classification_metrics(
        [acc_labels[i] for i in np.flatnonzero(m["test"])], head.predict_proba(X[m["test"]]), ACCEPT_LABELS
    )
    metrics.update({f"test_acceptable_{k}": v for k, v in head_cm.items()})
    return metrics, report


RIGHT_WRONG_PAIRS: dict[str, tuple[str, str]] = {
    "truthfulqa": ("truthfulqa:best", "truthfulqa:incorrect"),
    "mmlu_pro": ("mmlu_pro:gold", "mmlu_pro:wrong_option"),
    "coconot_false_presupposition": ("coconot_pref:chosen", "coconot_pref:rejected"),
}


def right_vs_wrong_auc(
    sources: np.ndarray, reasons: np.ndarray, y: np.ndarray, p: np.ndarray
) -> dict[str, float]:
    """ROC-AUC of the model's P(acceptable) between a data set's right answers and its listed wrong
    (`incorrect`) answers to the same questions (0.5: it cannot tell them apart): can the encoder check
    facts at all?"""
    out = {}
    for name, (right, wrong) in RIGHT_WRONG_PAIRS.items():
        keep = (sources == right) | ((sources == wrong) & (reasons == "incorrect"))
        if len(set(y[keep].tolist())) == 2:
            out[name] = score_metrics(y[keep], p[keep])["roc_auc"]
    return out


def pick_threshold(config: GateTrainConfig, p_val: np.ndarray, y_val: np.ndarray) -> float:
    """The validation-chosen threshold: cheapest cost + bad-answer penalty, or a false-accept target."""
    if config.target_false_accept is not None:
        return choose_threshold(p_val, y_val, config.target_false_accept)
    return best_point(cost_curve(p_val, y_val, config.prices)).threshold


def economics_report(prices: CascadePrices, p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """Cost and bad answers per 1,000 requests at `threshold` and along the threshold grid (held-out rows)."""
    curve = cost_curve(p, y, prices)
    at = cost_curve(p, y, prices, np.array([threshold]))[0]
    return {
        "prices": asdict(prices),
        "at_threshold": asdict(at),
        "best_on_these_rows": asdict(best_point(curve)),
        "curve": curve_table(curve, 0.05),
        "baselines": baselines(prices),
    }


def _plot_economics(prices: CascadePrices, p: np.ndarray, y: np.ndarray, threshold: float, d: Path) -> Path:
    from pipelines.gate.economics import plot_cost_curve

    curve = cost_curve(p, y, prices)
    return plot_cost_curve(
        curve, cost_curve(p, y, prices, np.array([threshold]))[0], prices, d / "cost_curve.png"
    )


def _reject_share(y: np.ndarray, keys: np.ndarray, accept: np.ndarray) -> dict[str, dict[str, float]]:
    """Per key: rows, acceptable rows, share of acceptable rows rejected (false escalation)."""
    out = {}
    for k in sorted(set(keys.tolist())):
        good = (keys == k) & y
        out[k] = {
            "rows": int(np.sum(keys == k)),
            "acceptable": int(np.sum(good)),
            "false_escalation": float(np.mean(~accept[good])) if good.any() else float("nan"),
        }
    return out


def _refusal_hand_eval(
    config: GateTrainConfig,
    encoder: EncoderArtifact,
    heads: list[FittedHead],
    threshold: float,
    df: Any,
    progress: bool,
) -> dict[str, Any]:
    """Refusal detectors on the hand labels: `refusal_min` chosen on the labels whose prompt is in the
    validation split, every detector reported on those in the test split (see `refusal_eval`)."""
    from pipelines.gate.data import RAW_DIR, REFUSAL_LABELS
    from pipelines.gate.refusal_eval import (
        evaluate_refusals,
        hand_labelled_pairs,
        pick_refusal_min,
        refusal_detectors,
    )

    raw_dir = Path(config.data).parent.parent / "raw" if config.raw_dir is None else config.raw_dir
    raw_dir = raw_dir if (raw_dir / "coconot").is_dir() else RAW_DIR
    pairs = hand_labelled_pairs(raw_dir, config.refusal_labels or REFUSAL_LABELS)
    split_of = dict(zip(df["prompt"].astype(str), df["split"].astype(str), strict=True))

    def detectors_for(prompts: list[str], responses: list[str]) -> Callable[[float], dict[str, np.ndarray]]:
        X = _features(config, encoder, prompts, responses, progress)
        p = heads[0].predict_proba(X)[:, 1]
        top, p_refusal = None, None
        if len(heads) > 1:
            probs = heads[1].predict_proba(X)
            top = [heads[1].labels[i] for i in probs.argmax(1)]
            if "refusal" in heads[1].labels:
                p_refusal = probs[:, heads[1].labels.index("refusal")]
        results = [check_response(pr, r) for pr, r in zip(prompts, responses, strict=True)]
        check_refusal = np.array(["refusal" in c.reasons for c in results])
        check_failed = np.array([not c.ok for c in results])
        return lambda tau: refusal_detectors(
            responses, p, top, check_refusal, check_failed, threshold, p_refusal, tau
        )

    val = [q for q in pairs if split_of.get(q["prompt"]) == "validation"]
    refusal_min: float = 0.0
    on_validation: dict[str, float] = {}
    if val and any(q["refusal"] for q in val):
        at = detectors_for([q["prompt"] for q in val], [q["response"] for q in val])
        refusal_min, on_validation = pick_refusal_min(np.array([q["refusal"] for q in val]), at)
    out = evaluate_refusals(pairs, split_of.get, lambda pr, rs: detectors_for(pr, rs)(refusal_min), ("test",))
    return {
        **out,
        "refusal_min": refusal_min,
        "validation_rows": len(val),
        "validation_combined_accuracy_by_refusal_min": on_validation,
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """Per-reason catch rates, false escalation per source and length, refusals, economics: for the CLI."""
    test = report["test"]
    lines = ["test, served gate (checks + model) at the chosen threshold:"]
    rr = test["reject_rate_by_reason"]["gate"]
    lines.append(
        "  catch rate by reason: "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(rr.items()) if k != "ok")
        + f" | false escalation (ok rejected) {rr.get('ok', float('nan')):.3f}"
    )
    for title, key in (
        ("source", "false_escalation_by_source"),
        ("answer length", "false_escalation_by_length"),
    ):
        parts = [
            f"{k} {v['false_escalation']:.3f} (n={v['acceptable']})"
            for k, v in test[key].items()
            if v["acceptable"]
        ]
        lines.append(f"  false escalation by {title}: " + ", ".join(parts))
    rw = test.get("right_vs_wrong_auc", {})
    if rw:
        lines.append(
            "  right vs listed wrong answer to the same question, model ROC-AUC (0.5 = cannot tell): "
            + ", ".join(f"{k} {v:.3f}" for k, v in rw.items())
        )
    hand = report.get("refusal_hand_labels", {})
    if hand.get("rows"):
        lines.append(
            f"  refusals on {hand['rows']} hand-labelled test rows"
            f" ({int(hand['phrase']['refusals'])} refusals), accuracy / F1: "
            + ", ".join(
                f"{k} {hand[k]['accuracy']:.3f} / {hand[k]['f1']:.3f}"
                for k in ("phrase", "model", "combined", "gate_rejects")
            )
            + f"; model calls a refusal at P(refusal) >= {hand.get('refusal_min', 0.0):g}"
            f" (chosen on {hand.get('validation_rows', 0)} validation hand labels)"
        )
    eco = report["economics"]
    at, pr = eco["at_threshold"], eco["prices"]
    base = eco["baselines"]
    lines.append(
        f"  cascade at threshold {at['threshold']:.2f} (cheap ${pr['cheap_cost']}/k,"
        f" strong ${pr['strong_cost']}/k, pass rate {pr['pass_rate']}): ${at['cost_per_1000']:.2f} and"
        f" {at['bad_per_1000']:.1f} bad answers per 1,000 requests, {at['escalated']:.3f} escalated"
        f" (always strong ${base['always_strong']['cost_per_1000']:.2f}; no gate"
        f" {base['always_cheap']['bad_per_1000']:.0f} bad)"
    )
    return lines


ONE_LINE_PAIRS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of France?", "Paris."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
    ("What is the largest planet in the solar system?", "The largest planet in the solar system is Jupiter."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("When did World War II end?", "World War II ended in 1945."),
    ("Who was the first president of the United States?", "George Washington was the first president."),
)
"""Correct one-sentence answers to one-line questions (hand-written, not in the data): `gate train`
prints how many the new bundle accepts, a documented check rather than a test because a small
test gate cannot be relied on to accept them."""


def one_line_check(bundle_dir: Path) -> dict[str, Any]:
    """P(acceptable) and the served decision of the bundle on `ONE_LINE_PAIRS`."""
    from serving.gate.model import GateItem, GateModel

    out = GateModel.load(bundle_dir).decide([GateItem(q, a) for q, a in ONE_LINE_PAIRS])
    return {
        "accepted": sum(d.acceptable for d in out),
        "pairs": [
            {"prompt": q, "response": a, "acceptable": d.acceptable, "p_acceptable": d.p_acceptable}
            for (q, a), d in zip(ONE_LINE_PAIRS, out, strict=True)
        ],
    }


def one_line_check_line(check: dict[str, Any]) -> str:
    rejected = [
        f"{p['response']!r} (p {p['p_acceptable'] or 0:.2f})" for p in check["pairs"] if not p["acceptable"]
    ]
    return (
        "one-line correct answers to one-line questions accepted:"
        f" {check['accepted']} of {len(check['pairs'])}"
        + (f"; rejected: {', '.join(rejected)}" if rejected else "")
    )


def _summary_line(metrics: dict[str, float]) -> str:
    return (
        "test: gate ROC-AUC {a:.3f} FAR {f:.3f} reject-recall {r:.3f} | refusal baseline ROC-AUC {b:.3f} "
        "reject-recall {br:.3f} | checks baseline ROC-AUC {c:.3f} reject-recall {cr:.3f}".format(
            a=metrics["test_gate_roc_auc"],
            f=metrics["test_gate_false_accept_rate"],
            r=metrics["test_gate_reject_recall"],
            b=metrics["test_baseline_refusal_roc_auc"],
            br=metrics["test_baseline_refusal_reject_recall"],
            c=metrics["test_baseline_checks_roc_auc"],
            cr=metrics["test_baseline_checks_reject_recall"],
        )
    )


def _plots(
    plots_dir: Path,
    heads: list[FittedHead],
    X: np.ndarray,
    y: np.ndarray,
    coarse: np.ndarray,
    acc_labels: list[str],
    mt: np.ndarray,
    served: np.ndarray,
    p_model: np.ndarray,
    fails: np.ndarray,
    refusal: np.ndarray,
) -> list[Path]:
    """ROC of the gate vs its baselines, reliability of P(acceptable), confusion of the reason head."""
    from pipelines.train.metrics import plot_confusion_matrix, plot_reliability

    head = heads[0]
    artifacts: list[Path] = []
    artifacts.append(
        _plot_roc(
            {
                "gate (checks + model)": (y[mt], served[mt]),
                "model only": (y[mt], p_model[mt]),
                "refusal phrase baseline": (y[mt], (~refusal[mt]).astype(float)),
                "deterministic checks": (y[mt], (~fails[mt]).astype(float)),
            },
            plots_dir / "roc_test.png",
        )
    )
    artifacts.append(
        plot_reliability(
            [acc_labels[i] for i in np.flatnonzero(mt)],
            head.predict_proba(X[mt]),
            ACCEPT_LABELS,
            plots_dir / "reliability_acceptable.png",
            "P(acceptable) (test)",
        )
    )
    if len(heads) > 1:
        keep = mt & np.isin(coarse, heads[1].labels)
        artifacts.append(
            plot_confusion_matrix(
                coarse[keep].tolist(),
                heads[1].predict_proba(X[keep]),
                heads[1].labels,
                plots_dir / "confusion_reason.png",
                "reason (test)",
            )
        )
    return artifacts


def gate_parity(
    bundle_dir: Path,
    heads: list[FittedHead],
    prompts: list[str],
    responses: list[str],
    X: np.ndarray,
    idx: np.ndarray,
) -> float:
    """Max |ONNX bundle probability - sklearn head probability| over rows `idx` (every head)."""
    from serving.gate.model import GateModel

    gate = GateModel.load(bundle_dir)
    s = gate.score([prompts[i] for i in idx], [responses[i] for i in idx])
    diffs = [float(np.abs(s.p_acceptable - heads[0].predict_proba(X[idx])[:, 1]).max())]
    if len(heads) > 1 and s.reason_probs is not None:
        diffs.append(float(np.abs(s.reason_probs - heads[1].predict_proba(X[idx])).max()))
    return max(diffs)
