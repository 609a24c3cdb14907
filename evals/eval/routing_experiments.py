"""Which target, features and settings route best on a source never seen in training (LOSO).

Job: assemble the outcome rows (`pipelines.data.outcomes`), their embeddings (the training
`Embedder` and its disk cache: each text is embedded once) and request features
(`serving.model.textprep.request_features`), then score candidate routers with
`evals.eval.loso.leave_one_source_out` next to prompt length, random routing and the previous
default model's `complexity` (a tier head fitted exactly as `tierroute train` fits it, on the shipped
train split). Run: `python -m evals.eval.routing_experiments [--mmlu-pro-rows N] [--out FILE.md]`;
`--grid head` scores only the candidates for the bundle's routing head (`head_grid`, issue #13 item 4).

Trade-offs: MMLU-Pro is sampled (seeded hash of the id) because embedding 12,000 long questions
takes ~10 minutes on two cores; RouteLLM MMLU is restricted to the rows the default data ships.
Every training source is weighted equally so the largest source does not decide the head.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evals.eval.loso import FitScore, LosoResult, leave_one_source_out, markdown_table, mean_apgr

TIER_VALUES = np.array([0.0, 0.5, 1.0])


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def load_rows(raw: Path, labelled: Path, mmlu_pro_rows: int) -> Any:
    """Outcome rows used for LOSO: MMLU-Pro sample, LLMRouter, AlpacaEval, shipped RouteLLM rows."""
    import pandas as pd

    from pipelines.data.outcomes import build_outcomes

    df = build_outcomes(raw, None)
    shipped = pd.read_parquet(labelled)
    routellm = set(shipped.loc[shipped["source"] == "routellm_mmlu", "text"])
    df = df[(df["source"] != "routellm_mmlu") | df["text"].isin(routellm)]
    pro = df[df["source"] == "mmlu_pro_outcomes"]
    keep = set(pro.assign(h=pro["id"].map(_hash)).sort_values("h")["id"].head(mmlu_pro_rows))
    df = df[(df["source"] != "mmlu_pro_outcomes") | df["id"].isin(keep)]
    return df.reset_index(drop=True), shipped


def _equal_source_weights(sources: np.ndarray) -> np.ndarray:
    names, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    del names
    return (1.0 / counts)[inverse] * len(sources) / len(counts)


def _within_source_z(values: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Values standardised within each source: a source's own level cannot transfer, its ranking can."""
    out = np.zeros_like(values, dtype=np.float64)
    for name in np.unique(sources):
        m = sources == name
        sd = float(values[m].std())
        out[m] = (values[m] - values[m].mean()) / (sd if sd > 0 else 1.0)
    return out


def ridge_router(
    X: np.ndarray, target: np.ndarray, sources: np.ndarray, alpha: float, sign: float
) -> FitScore:
    """Ridge on standardised X -> target; score = sign * prediction (sign -1 for p_weak_ok)."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit_score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
        model.fit(X[train], target[train], ridge__sample_weight=_equal_source_weights(sources[train]))
        return sign * np.asarray(model.predict(X[test]))

    return fit_score


def logistic_router(X: np.ndarray, label: np.ndarray, sources: np.ndarray, C: float) -> FitScore:
    """Logistic P(weak_ok) on standardised X; score = 1 - P (route the unlikely-ok rows to strong)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit_score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        model.fit(
            X[train], label[train], logisticregression__sample_weight=_equal_source_weights(sources[train])
        )
        return 1.0 - np.asarray(model.predict_proba(X[test])[:, 1])

    return fit_score


def in_source_cv(
    inner: Callable[[np.ndarray, np.ndarray], np.ndarray], folds: int = 5, seed: int = 0
) -> FitScore:
    """Reference, not LOSO: k-fold CV *inside* the held-out source (what learning from a deployment's
    own traffic could reach). `inner(train, test)` is a router's FitScore over the same rows."""

    def fit_score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        del train
        rows = np.flatnonzero(test)
        fold = np.random.default_rng(seed).integers(0, folds, size=rows.size)
        out = np.zeros(rows.size)
        for k in range(folds):
            tr = np.zeros(test.size, dtype=bool)
            te = np.zeros(test.size, dtype=bool)
            tr[rows[fold != k]] = True
            te[rows[fold == k]] = True
            out[fold == k] = inner(tr, te)
        return out

    return fit_score


def previous_complexity(
    shipped: Any, embed: Callable[[list[str]], np.ndarray], X_rows: np.ndarray
) -> np.ndarray:
    """`complexity` of a tier head fitted as `tierroute train` fits the default one."""
    from pipelines.data.labels import TIERS
    from pipelines.train.heads import fit_head

    train = shipped[shipped["split"] == "train"]
    val = shipped[shipped["split"] == "validation"]
    head = fit_head(
        "tier",
        embed(train["text"].tolist()),
        train["tier"].tolist(),
        embed(val["text"].tolist()),
        val["tier"].tolist(),
        list(TIERS),
    )
    probs = head.model.predict_proba(X_rows)
    return np.asarray(probs @ TIER_VALUES)


def blend_router(
    X: np.ndarray, label: np.ndarray, sources: np.ndarray, C: float, log_tokens: np.ndarray, beta: float
) -> FitScore:
    """(c) The logistic head's logit for "strong needed" plus `beta` x standardised log token count.

    The scores are what a bundle would serve: a fixed coefficient on a standardised feature folds
    into the head's weights (`pipelines.train.routing`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    z_len = (log_tokens - log_tokens.mean()) / (log_tokens.std() or 1.0)

    def fit_score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        model.fit(
            X[train], label[train], logisticregression__sample_weight=_equal_source_weights(sources[train])
        )
        return -np.asarray(model.decision_function(X[test])) + beta * z_len[test]

    return fit_score


def head_grid(
    emb: np.ndarray,
    feats: np.ndarray,
    task_onehot: np.ndarray,
    ok: np.ndarray,
    src: np.ndarray,
    log_tokens: np.ndarray,
) -> dict[str, FitScore]:
    """Issue #13 item 4: the candidates for the bundle's routing head (`--grid head`).

    (a) logistic `weak_ok` ~ embedding + request features, each source weighted equally;
    (b) request features only; (c) (a)'s logit blended with a fixed coefficient on log tokens;
    (d) a task-aware offset (task one-hot beside the features)."""
    ef = np.hstack([emb, feats])
    eft = np.hstack([emb, feats, task_onehot])
    routers: dict[str, FitScore] = {}
    for C in (0.01, 0.1, 1.0):
        routers[f"(a) logistic weak_ok ~ emb+feat (C={C:g})"] = logistic_router(ef, ok, src, C)
    for C in (0.1, 1.0):
        routers[f"(b) logistic weak_ok ~ feat (C={C:g})"] = logistic_router(feats, ok, src, C)
    for C in (0.01, 0.1):
        for beta in (0.5, 1.0, 2.0, 4.0):
            routers[f"(c) (a) C={C:g} + {beta:g} x z(log tokens)"] = blend_router(
                ef, ok, src, C, log_tokens, beta
            )
    routers["(d) logistic weak_ok ~ emb+feat+task (C=0.1)"] = logistic_router(eft, ok, src, 0.1)
    routers["(d) + 1 x z(log tokens)"] = blend_router(eft, ok, src, 0.1, log_tokens, 1.0)
    routers["(d) logistic weak_ok ~ feat+task (C=0.1)"] = logistic_router(
        np.hstack([feats, task_onehot]), ok, src, 0.1
    )
    return routers


def run(
    raw: Path, labelled: Path, mmlu_pro_rows: int, n_boot: int, seed: int, grid: str = "all"
) -> dict[str, Any]:
    # Over 60 lines: one experiment grid (data, features, baselines, candidates, table), read top to bottom.
    from pipelines.train.embed import Embedder
    from pipelines.train.encoder_export import export_encoder
    from serving.model.textprep import REQUEST_FEATURE_NAMES, TruncationSpec, request_feature_matrix

    started = time.perf_counter()
    df, shipped = load_rows(raw, labelled, mmlu_pro_rows)
    embedder = Embedder(export_encoder(Path("models/encoder"), "fp32"), TruncationSpec())

    def embed(texts: list[str]) -> np.ndarray:
        return embedder.embed(texts, progress=False)

    emb = embed(df["text"].tolist())
    feats = request_feature_matrix(df["text"].tolist()).astype(np.float64)
    tasks = sorted(set(df["task"]))
    task_onehot = (df["task"].to_numpy()[:, None] == np.array(tasks)[None, :]).astype(np.float64)
    src = df["source"].to_numpy().astype(str)
    weak = df["weak_quality"].to_numpy(dtype=np.float64)
    strong = df["strong_quality"].to_numpy(dtype=np.float64)
    gap = strong - weak
    p_ok = df["p_weak_ok"].to_numpy(dtype=np.float64)
    ok = df["weak_ok"].to_numpy(dtype=bool)
    log_tokens = feats[:, list(REQUEST_FEATURE_NAMES).index("log_tokens")]

    baselines = {
        "prompt length": log_tokens,
        "previous default (complexity)": previous_complexity(shipped, embed, emb),
    }
    seen = {"previous default (complexity)": {"routellm_mmlu", "alpaca_eval_preferences"}}
    ef = np.hstack([emb, feats])
    eft = np.hstack([emb, feats, task_onehot])
    ft = np.hstack([feats, task_onehot])
    routers: dict[str, FitScore] = {}
    for alpha in (10.0, 100.0, 1000.0):
        routers[f"ridge gap ~ emb (a={alpha:g})"] = ridge_router(emb, gap, src, alpha, 1.0)
        routers[f"ridge gap ~ emb+feat (a={alpha:g})"] = ridge_router(ef, gap, src, alpha, 1.0)
        routers[f"ridge gap ~ emb+feat+task (a={alpha:g})"] = ridge_router(eft, gap, src, alpha, 1.0)
        routers[f"ridge p_weak_ok ~ emb+feat (a={alpha:g})"] = ridge_router(ef, p_ok, src, alpha, -1.0)
    gap_z = _within_source_z(gap, src)
    pok_z = _within_source_z(p_ok, src)
    for alpha in (100.0, 1000.0):
        routers[f"ridge gap_z ~ emb+feat (a={alpha:g})"] = ridge_router(ef, gap_z, src, alpha, 1.0)
        routers[f"ridge gap_z ~ emb (a={alpha:g})"] = ridge_router(emb, gap_z, src, alpha, 1.0)
        routers[f"ridge p_weak_ok_z ~ emb+feat (a={alpha:g})"] = ridge_router(ef, pok_z, src, alpha, -1.0)
    routers["ridge gap ~ feat (a=10)"] = ridge_router(feats, gap, src, 10.0, 1.0)
    routers["ridge gap ~ feat+task (a=10)"] = ridge_router(ft, gap, src, 10.0, 1.0)
    routers["in-source 5-fold CV: ridge gap ~ emb+feat (a=100)"] = in_source_cv(
        ridge_router(ef, gap, src, 100.0, 1.0)
    )
    routers["in-source 5-fold CV: ridge gap ~ feat (a=10)"] = in_source_cv(
        ridge_router(feats, gap, src, 10.0, 1.0)
    )
    for C in (0.01, 0.1):
        routers[f"logistic weak_ok ~ emb+feat (C={C:g})"] = logistic_router(ef, ok, src, C)
    if grid == "head":
        routers = head_grid(emb, feats, task_onehot, ok, src, log_tokens)
    results: list[LosoResult] = leave_one_source_out(
        src, weak, strong, routers, baselines, seen_by=seen, n_boot=n_boot, seed=seed
    )
    names = ["random", *baselines, *routers]
    return {
        "rows": {k: int(v) for k, v in df["source"].value_counts().items()},
        "results": [r.to_dict() for r in results],
        "mean_apgr": {name: mean_apgr(results, name) for name in names},
        "table": markdown_table(results),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--labelled", type=Path, default=Path("data/labelled/requests.parquet"))
    parser.add_argument("--mmlu-pro-rows", type=int, default=3000)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--grid",
        choices=("all", "head"),
        default="all",
        help="'all': every target/feature candidate; 'head': the routing-head candidates (a)-(d) only.",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Write the report (markdown table + JSON) here."
    )
    args = parser.parse_args(argv)
    report = run(args.raw, args.labelled, args.mmlu_pro_rows, args.n_boot, args.seed, args.grid)
    ranking = sorted(report["mean_apgr"].items(), key=lambda kv: -kv[1] if kv[1] == kv[1] else 0)
    text = report["table"] + "\n\nMean held-out APGR:\n" + "\n".join(f"- {k}: {v:.3f}" for k, v in ranking)
    print(text)
    print(f"rows {report['rows']}; {report['seconds']:.0f} s")
    if args.out is not None:
        args.out.write_text(text + "\n\n```json\n" + json.dumps(report["results"], indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
