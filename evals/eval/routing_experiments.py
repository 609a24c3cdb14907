"""Which target, features and settings route best on a source never seen in training (LOSO).

Job: assemble the outcome rows (`pipelines.data.outcomes`), their embeddings (the training
`Embedder` and its disk cache: each text is embedded once) and request features
(`serving.model.textprep.request_features`), then score candidate routers with
`evals.eval.loso.leave_one_source_out` next to prompt length, random routing and the previous
default model's `complexity` (a tier head fitted exactly as `tierroute train` fits it, on the shipped
train split). Run: `python -m evals.eval.routing_experiments [--mmlu-pro-rows N] [--out FILE.md]`;
`--grid head` scores only the candidates for the bundle's routing head (`head_grid`, issue #13 item 4);
`--grid within` (`within_grid`, `run_within`) scores within-source objectives, the item-difficulty target
and nested leave-one-source-out selection of the length prior on `tierroute train`'s own routing rows;
`--grid ceiling` (`run_ceiling`) the in-source ceiling per source (5-fold CV inside the source, the
oracle by difficulty, the oracle) and `--grid transfer` (`run_transfer`) round 6's levers (every row of
the training sources, kNN difficulty, source-consistent heads) on the same held-out rows, with a paired
bootstrap against the default recipe (`evals.eval.routing_transfer`).

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
from evals.eval.routing_transfer import TIER_VALUES


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

    labelled = shipped[shipped["tier"].notna()]  # rows of a source's `empty_heads` carry no tier
    train = labelled[labelled["split"] == "train"]
    val = labelled[labelled["split"] == "validation"]
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


BETAS: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, float("inf"))
"""Length-prior weights the nested selection chooses from (`inf`: prompt length alone)."""


def _beta_name(prefix: str, beta: float) -> str:
    return f"{prefix} length only" if np.isinf(beta) else f"{prefix} + {beta:g} x z(len)"


def _memo(
    multi: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """One fit per (train, test) split, however many of its candidates are asked for."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def fit_scores(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        key = hashlib.sha1(np.packbits(train).tobytes() + b"|" + np.packbits(test).tobytes()).hexdigest()
        if key not in cache:
            cache[key] = multi(train, test)
        return cache[key]

    return fit_scores


def default_beta_scores(
    X: np.ndarray, ok: np.ndarray, src: np.ndarray, C: float, betas: tuple[float, ...] = BETAS
) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """The shipped head's ranking for every length-prior weight from one fit: `-logit + beta x z(len)`,
    z(len) standardised by the head's own scaler (exactly `fit_routing_head(length_coef=beta)`'s order;
    its Platt slope is kept > 0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pipelines.train.routing import LOG_TOKENS, equal_source_weights
    from serving.model.textprep import REQUEST_FEATURE_NAMES

    col = X.shape[1] - len(REQUEST_FEATURE_NAMES) + LOG_TOKENS

    def fit_scores(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=0))
        model.fit(X[train], ok[train], logisticregression__sample_weight=equal_source_weights(src[train]))
        logit = np.asarray(model.decision_function(X[test]))
        sc = model[0]
        z = (X[test, col] - sc.mean_[col]) / sc.scale_[col]
        return {_beta_name("default head", b): (z if np.isinf(b) else -logit + b * z) for b in betas}

    return _memo(fit_scores)


def linear_beta_scores(
    fit: Callable[[np.ndarray], Any],
    X: np.ndarray,
    log_tokens: np.ndarray,
    prefix: str,
    betas: tuple[float, ...] = BETAS,
) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """A `routing_objectives` head (`fit(train mask) -> LinearScore`) blended with z(log tokens) in
    standard-deviation units of the head's training scores, one fit for every weight."""
    from pipelines.train.routing_objectives import blend_with_length

    def fit_scores(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        head = fit(train)
        mu, sd = float(log_tokens[train].mean()), float(log_tokens[train].std()) or 1.0
        blends = blend_with_length(
            head.score(X[test]), head.score(X[train]), (log_tokens[test] - mu) / sd, betas
        )
        return {_beta_name(prefix, b): v for b, v in blends.items()}

    return _memo(fit_scores)


def nested_router(
    fit_scores: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    src: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    criterion: str,
    picks: dict[str, str],
) -> FitScore:
    """LOSO router whose candidate is chosen by `nested_loso_select` on the training sources only;
    `picks[held-out source]` records the choice and its inner APGR."""
    from pipelines.train.routing_objectives import nested_loso_select

    def fit_score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        sel = nested_loso_select(fit_scores, src, weak, strong, train, criterion=criterion)
        held = ",".join(sorted(set(src[test].tolist())))
        inner = ", ".join(f"{k} {v:.3f}" for k, v in sorted(sel.inner[sel.chosen].items()))
        picks[held] = f"{sel.chosen} (inner {criterion} {sel.summary(sel.chosen):.3f}: {inner})"
        return fit_scores(train, test)[sel.chosen]

    return fit_score


def within_grid(
    emb: np.ndarray,
    feats: np.ndarray,
    ok: np.ndarray,
    src: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    difficulty: np.ndarray,
    log_tokens: np.ndarray,
    picks: dict[str, dict[str, str]],
) -> dict[str, FitScore]:
    """`--grid within`: objectives with nothing source-level to learn, graded item difficulty as the
    target, and the length prior chosen by nested LOSO (`pipelines.train.routing_objectives`)."""
    from pipelines.train.routing import fit_routing_head
    from pipelines.train.routing_objectives import (
        centred_logistic,
        centred_ridge,
        pairwise_logistic,
    )

    ef = np.hstack([emb, feats])
    gap = strong - weak
    diff_z = _within_source_z(difficulty, src)
    routers: dict[str, FitScore] = {}

    def previous(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        head = fit_routing_head(
            emb[train], feats[train], ok[train], src[train], objective="logistic", length_coef=4.0
        )
        return 1.0 - head.predict(emb[test], feats[test])

    def shipped(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        head = fit_routing_head(emb[train], feats[train], ok[train], src[train], difficulty=difficulty[train])
        return 1.0 - head.predict(emb[test], feats[test])

    routers["previous default (logistic weak_ok C=0.01 + 4 x z(len), Platt)"] = previous
    routers["new default (fit_routing_head: pairwise difficulty C=0.01 + 2 x z(len), Platt)"] = shipped

    def single(multi: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]], name: str) -> FitScore:
        return lambda train, test: multi(train, test)[name]

    heads: dict[str, Callable[[np.ndarray], Any]] = {
        "pairwise weak_ok ~ emb+feat (C=0.01)": lambda m: pairwise_logistic(ef[m], ~ok[m], src[m], C=0.01),
        "pairwise weak_ok ~ emb+feat (C=0.1)": lambda m: pairwise_logistic(ef[m], ~ok[m], src[m], C=0.1),
        "pairwise weak_ok ~ feat (C=0.1)": lambda m: pairwise_logistic(feats[m], ~ok[m], src[m], C=0.1),
        "pairwise gap ~ emb+feat (C=0.01)": lambda m: pairwise_logistic(ef[m], gap[m], src[m], C=0.01),
        "pairwise difficulty ~ emb+feat (C=0.01)": lambda m: pairwise_logistic(
            ef[m], difficulty[m], src[m], C=0.01
        ),
        "centred logistic weak_ok ~ emb+feat (C=0.01)": lambda m: centred_logistic(
            ef[m], ok[m], src[m], C=0.01
        ),
        "centred ridge weak_ok ~ emb+feat (a=1000)": lambda m: centred_ridge(
            ef[m], (~ok[m]).astype(np.float64), src[m], alpha=1000.0
        ),
        "centred ridge difficulty_z ~ emb+feat (a=1000)": lambda m: centred_ridge(
            ef[m], diff_z[m], src[m], alpha=1000.0
        ),
        "centred ridge difficulty_z ~ emb+feat (a=10000)": lambda m: centred_ridge(
            ef[m], diff_z[m], src[m], alpha=10000.0
        ),
        "pooled ridge difficulty_z ~ emb+feat (a=1000)": lambda m: centred_ridge(
            ef[m], diff_z[m], src[m], alpha=1000.0, centre=False
        ),
        "pairwise difficulty ~ emb+feat (C=0.001)": lambda m: pairwise_logistic(
            ef[m], difficulty[m], src[m], C=0.001
        ),
        "pairwise difficulty ~ emb+feat (C=0.1)": lambda m: pairwise_logistic(
            ef[m], difficulty[m], src[m], C=0.1
        ),
        "pairwise difficulty ~ feat (C=0.1)": lambda m: pairwise_logistic(
            feats[m], difficulty[m], src[m], C=0.1
        ),
    }
    multis: dict[str, Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]] = {}
    for prefix, fit in heads.items():
        X = feats if "~ feat " in prefix else ef
        multi = linear_beta_scores(fit, X, log_tokens, prefix)
        multis[prefix] = multi
        for b in (0.0, 1.0, 2.0, 4.0):
            routers[_beta_name(prefix, b)] = single(multi, _beta_name(prefix, b))
    default_multi = default_beta_scores(ef, ok, src, 0.01)

    def add_nested(
        name: str, fit_scores: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]], criterion: str
    ) -> None:
        chosen: dict[str, str] = {}
        picks[name] = chosen
        routers[name] = nested_router(fit_scores, src, weak, strong, criterion, chosen)

    for criterion in ("mean", "worst"):
        add_nested(
            f"nested ({criterion}): previous head's length prior in {{0,1,2,4,8,16,length only}}",
            default_multi,
            criterion,
        )
    pair_multi = multis["pairwise weak_ok ~ emb+feat (C=0.01)"]

    def menu(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        return dict(default_multi(train, test)) | dict(pair_multi(train, test))

    add_nested("nested (mean): previous or pairwise weak_ok head x length prior", menu, "mean")
    difficulty_heads = (
        "pairwise difficulty ~ emb+feat (C=0.01)",
        "centred ridge difficulty_z ~ emb+feat (a=1000)",
        "centred ridge difficulty_z ~ emb+feat (a=10000)",
    )

    def difficulty_menu(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in difficulty_heads:
            out |= multis[name](train, test)
        return out

    for criterion in ("mean", "worst"):
        add_nested(
            f"nested ({criterion}): pairwise difficulty (C=0.01) x length prior",
            multis["pairwise difficulty ~ emb+feat (C=0.01)"],
            criterion,
        )
        add_nested(f"nested ({criterion}): 3 difficulty heads x length prior", difficulty_menu, criterion)
    return routers


def _routing_arrays(raw: Path, labelled: Path, *, pool: bool = False) -> dict[str, Any]:
    """Arrays of `tierroute train`'s own routing rows (`pipelines.train.routing.routing_rows`, 2,000
    per source, the default 3-layer encoder, rows with both qualities). With `pool`, every outcome row
    (RouteLLM MMLU kept to the shipped texts, as in training) instead, with `eval_index` (the pool row
    of each capped row, in the capped rows' order) and `in_cap` (pool rows among the capped rows)."""
    import pandas as pd

    from pipelines.data.outcomes import build_outcomes
    from pipelines.train.embed import Embedder
    from pipelines.train.encoder_export import DEFAULT_LAYERS, export_encoder
    from pipelines.train.routing import routing_rows
    from serving.model.textprep import REQUEST_FEATURE_NAMES, TruncationSpec, request_feature_matrix

    shipped = pd.read_parquet(labelled)
    rows = routing_rows(shipped, None, raw, echo=lambda _m: None)
    outcomes = build_outcomes(raw, None)
    rows = rows[rows["weak_quality"].notna()].reset_index(drop=True)
    out: dict[str, Any] = {"rows": {k: int(v) for k, v in rows["source"].value_counts().items()}}
    if pool:
        full = outcomes[(outcomes["source"] != "routellm_mmlu") | outcomes["text"].isin(set(shipped["text"]))]
        # a text shared by two sources (368 MMLU-Pro / RouteLLM MMLU questions) is one row, as in
        # `routing_rows`: under the source the capped rows give it, else under its first source
        capped = set(zip(rows["source"], rows["text"], strict=True))
        first = [(s, t) not in capped for s, t in zip(full["source"], full["text"], strict=True)]
        full = full.assign(_later=first).sort_values("_later", kind="stable").drop_duplicates("text")
        full = full.sort_values("id", kind="stable").reset_index(drop=True)
        position = {t: i for i, t in enumerate(full["text"])}
        if not np.array_equal(full["source"].to_numpy()[[position[t] for t in rows["text"]]], rows["source"]):
            raise AssertionError("pool rows must keep the capped rows' sources")
        out["eval_index"] = np.array([position[t] for t in rows["text"]], dtype=np.int64)
        out["in_cap"] = np.zeros(len(full), dtype=bool)
        out["in_cap"][out["eval_index"]] = True
        out["pool_rows"] = {k: int(v) for k, v in full["source"].value_counts().items()}
        rows = full
    texts = rows["text"].tolist()
    embedder = Embedder(
        export_encoder(Path("models/encoder"), "fp32", layers=DEFAULT_LAYERS), TruncationSpec()
    )
    out["emb"] = embedder.embed(texts, progress=False).astype(np.float64)
    out["feats"] = request_feature_matrix(texts).astype(np.float64)
    out["src"] = rows["source"].to_numpy().astype(str)
    out["weak"] = rows["weak_quality"].to_numpy(dtype=np.float64)
    out["strong"] = rows["strong_quality"].to_numpy(dtype=np.float64)
    out["ok"] = rows["weak_ok"].to_numpy(dtype=bool)
    # each row's own source's difficulty (a text shared by two sources has one per source; a lookup by
    # text alone once gave 62 capped rows the other source's)
    out["difficulty"] = rows["difficulty"].to_numpy(dtype=np.float64)
    out["log_tokens"] = out["feats"][:, list(REQUEST_FEATURE_NAMES).index("log_tokens")]
    if "group" in shipped.columns:
        group_of = dict(zip(shipped["text"].astype(str), shipped["group"].astype(str), strict=False))
        out["groups"] = np.array([group_of.get(t, "text:" + t) for t in texts])
    else:
        out["groups"] = np.array(texts)
    return out


def _report(results: list[LosoResult], names: list[str], **extra: Any) -> dict[str, Any]:
    per_source: dict[str, dict[str, float]] = {}
    for r in results:
        per_source.setdefault(r.router, {})[r.source] = r.value.apgr.estimate
    return {
        "results": [r.to_dict() for r in results],
        "mean_apgr": {name: mean_apgr(results, name) for name in names},
        "worst_apgr": {name: float(min(per_source.get(name, {"": float("nan")}).values())) for name in names},
        "table": markdown_table(results),
    } | extra


def run_within(raw: Path, labelled: Path, n_boot: int, seed: int) -> dict[str, Any]:
    """`--grid within`: the rows, encoder and sampling of `tierroute train`'s own LOSO report (the
    routing rows of `pipelines.train.routing.routing_rows`, 2,000 per source, the default 3-layer
    encoder), so the shipped default's line here is the one `tierroute train` prints."""
    started = time.perf_counter()
    a = _routing_arrays(raw, labelled)
    emb, feats, src, weak, strong = a["emb"], a["feats"], a["src"], a["weak"], a["strong"]
    log_tokens = a["log_tokens"]
    picks: dict[str, dict[str, str]] = {}
    routers = within_grid(emb, feats, a["ok"], src, weak, strong, a["difficulty"], log_tokens, picks)
    baselines = {"prompt length": log_tokens}
    results = leave_one_source_out(src, weak, strong, routers, baselines, n_boot=n_boot, seed=seed)
    names = ["random", *baselines, *routers]
    return _report(results, names, rows=a["rows"], picks=picks, seconds=time.perf_counter() - started)


def run_ceiling(raw: Path, labelled: Path, n_boot: int, seed: int, folds: int = 5) -> dict[str, Any]:
    """`--grid ceiling`: in-source k-fold CV of a few recipes per outcome source (near-duplicate groups
    kept together), next to prompt length, the oracle by difficulty and the oracle, on `tierroute
    train`'s own routing rows (`evals.eval.routing_transfer.ceiling_grid`)."""
    from evals.eval.routing_transfer import ceiling_baselines, ceiling_grid

    started = time.perf_counter()
    a = _routing_arrays(raw, labelled)
    routers = ceiling_grid(
        a["emb"],
        a["feats"],
        a["ok"],
        a["src"],
        a["difficulty"],
        a["log_tokens"],
        a["groups"],
        folds,
        gap=a["strong"] - a["weak"],
    )
    baselines = ceiling_baselines(a["difficulty"], a["weak"], a["strong"], a["log_tokens"])
    results = leave_one_source_out(
        a["src"], a["weak"], a["strong"], routers, baselines, n_boot=n_boot, seed=seed
    )
    names = ["random", *baselines, *routers]
    return _report(results, names, rows=a["rows"], seconds=time.perf_counter() - started)


def run_transfer(raw: Path, labelled: Path, n_boot: int, seed: int) -> dict[str, Any]:
    """`--grid transfer`: the round-6 levers (`evals.eval.routing_transfer.transfer_grid`) scored on the
    held-out rows of `--grid within`, trained on 2,000 rows per source or on every outcome row, with a
    paired bootstrap of each candidate's mean APGR minus the default recipe's."""
    from evals.eval.routing_transfer import near_duplicate_share, transfer_grid

    started = time.perf_counter()
    a = _routing_arrays(raw, labelled, pool=True)
    ev = a["eval_index"]
    routers = transfer_grid(
        a["emb"], a["feats"], a["ok"], a["src"], a["difficulty"], a["log_tokens"], ev, a["in_cap"]
    )
    reference = next(n for n in routers if n.startswith("[2k/source] default recipe"))
    return _paired_report(
        routers,
        a["src"][ev],
        a["weak"][ev],
        a["strong"][ev],
        a["log_tokens"][ev],
        reference,
        n_boot=n_boot,
        seed=seed,
        rows=a["rows"],
        pool_rows=a["pool_rows"],
        near_duplicates=near_duplicate_share(a["emb"], a["src"], ev),
        started=started,
    )


def _paired_report(
    routers: dict[str, FitScore],
    src: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    log_tokens: np.ndarray,
    reference: str,
    *,
    n_boot: int,
    seed: int,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    """LOSO of `routers` next to prompt length, with the paired bootstrap of each against `reference`
    and the split-half selection effect (`evals.eval.routing_transfer`)."""
    from evals.eval.routing_transfer import paired_apgr_diff, split_half_selection

    baselines = {"prompt length": log_tokens}
    results = leave_one_source_out(src, weak, strong, routers, baselines, n_boot=n_boot, seed=seed)
    names = ["random", *baselines, *routers]
    scores: dict[str, dict[str, np.ndarray]] = {}
    held_weak: dict[str, np.ndarray] = {}
    held_strong: dict[str, np.ndarray] = {}
    for s in sorted(set(src.tolist())):
        m = src == s
        held_weak[s], held_strong[s] = weak[m], strong[m]
        scores.setdefault("prompt length", {})[s] = log_tokens[m]
    for name, fit_score in routers.items():
        for s in held_weak:
            scores.setdefault(name, {})[s] = fit_score(src != s, src == s)  # memoised per held-out source
    diffs = paired_apgr_diff(scores, held_weak, held_strong, reference, n_boot=n_boot, seed=seed)
    return _report(
        results,
        names,
        selection=split_half_selection(scores, held_weak, held_strong, reference, seed=seed),
        paired=diffs,
        reference=reference,
        seconds=time.perf_counter() - started,
        **extra,
    )


TIER_SOURCE_OF = {"alpaca_eval_preferences": "alpaca_eval", "routellm_mmlu": "routellm_mmlu"}
"""Outcome source -> its name in the labelled file, whose tier rows there are outcome-ladder tiers."""


def run_tier_prior(raw: Path, labelled: Path, n_boot: int, seed: int) -> dict[str, Any]:
    """`--grid tier-prior`: does the tier head (a person's tier judgement on the hand rows, outcome-ladder
    and proxy tiers elsewhere) add routing value held out by source, alone, beside length, or blended
    with the default routing head? Same held-out rows as `--grid within`; the tier head of each fold
    never sees the held-out source's tier rows (`evals.eval.routing_transfer.tier_prior_router`)."""
    import pandas as pd

    from evals.eval.routing_transfer import tier_prior_grid, tier_prior_router
    from pipelines.train.embed import Embedder
    from pipelines.train.encoder_export import DEFAULT_LAYERS, export_encoder
    from serving.model.textprep import TruncationSpec

    started = time.perf_counter()
    a = _routing_arrays(raw, labelled)
    shipped = pd.read_parquet(labelled)
    tl = shipped[shipped["tier"].notna() & shipped["split"].eq("train")].reset_index(drop=True)
    embedder = Embedder(
        export_encoder(Path("models/encoder"), "fp32", layers=DEFAULT_LAYERS), TruncationSpec()
    )
    tier_emb = embedder.embed(tl["text"].tolist(), progress=False).astype(np.float64)
    is_hand = tl["label_kind"].eq("hand").to_numpy()
    tier_src = tl["source"].to_numpy().astype(str)
    priors: dict[str, FitScore] = {}
    for label, hand_weight, hand_only in (
        ("tier head (hand x10)", 10.0, False),
        ("tier head (hand x1)", 1.0, False),
        ("tier head (hand rows only)", 1.0, True),
    ):
        priors[label] = tier_prior_router(
            tier_emb,
            tl["tier"].tolist(),
            is_hand,
            tier_src,
            TIER_SOURCE_OF,
            a["emb"],
            a["src"],
            hand_weight=hand_weight,
            hand_only=hand_only,
        )
    routers = tier_prior_grid(
        a["emb"], a["feats"], a["ok"], a["src"], a["difficulty"], a["log_tokens"], priors
    )
    return _paired_report(
        routers,
        a["src"],
        a["weak"],
        a["strong"],
        a["log_tokens"],
        "default recipe",
        n_boot=n_boot,
        seed=seed,
        rows=a["rows"],
        tier_rows={k: int(v) for k, v in tl["source"].value_counts().items()},
        started=started,
    )


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
        choices=("all", "head", "within", "ceiling", "transfer", "tier-prior"),
        default="all",
        help="'all': every target/feature candidate; 'head': the routing-head candidates (a)-(d) only; "
        "'within': within-source objectives, item difficulty and nested length-prior selection on "
        "`tierroute train`'s own routing rows (--mmlu-pro-rows is not used there); 'ceiling': in-source "
        "5-fold CV and the oracles per source (where the data allows routing value); 'transfer': "
        "round-6 levers (all rows, kNN difficulty, source-consistent heads) on the same held-out rows; "
        "'tier-prior': the tier head (hand and ladder tiers) as a routing prior, alone and blended.",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Write the report (markdown table + JSON) here."
    )
    args = parser.parse_args(argv)
    if args.grid == "within":
        report = run_within(args.raw, args.labelled, args.n_boot, args.seed)
    elif args.grid == "ceiling":
        report = run_ceiling(args.raw, args.labelled, args.n_boot, args.seed)
    elif args.grid == "transfer":
        report = run_transfer(args.raw, args.labelled, args.n_boot, args.seed)
    elif args.grid == "tier-prior":
        report = run_tier_prior(args.raw, args.labelled, args.n_boot, args.seed)
    else:
        report = run(args.raw, args.labelled, args.mmlu_pro_rows, args.n_boot, args.seed, args.grid)
    ranking = sorted(report["mean_apgr"].items(), key=lambda kv: -kv[1] if kv[1] == kv[1] else 0)
    worst = report.get("worst_apgr", {})
    text = (
        report["table"]
        + "\n\nMean"
        + (" / worst" if worst else "")
        + " held-out APGR:\n"
        + "\n".join(f"- {k}: {v:.3f}" + (f" / {worst[k]:.3f}" if k in worst else "") for k, v in ranking)
    )
    for name, chosen in report.get("picks", {}).items():
        text += f"\n\n{name}, chosen per held-out source:\n" + "\n".join(
            f"- {k}: {v}" for k, v in sorted(chosen.items())
        )
    if "paired" in report:
        text += (
            f"\n\nPaired bootstrap vs {report['reference']} (mean APGR difference [95% CI], worst "
            "source's difference):\n"
            + "\n".join(
                f"- {k}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}], worst source {w:+.4f}"
                for k, (d, lo, hi, w) in sorted(report["paired"].items(), key=lambda kv: -kv[1][0])
            )
        )
    if "selection" in report:
        picked, fresh = report["selection"]
        text += (
            "\n\nSelection effect (50 random split-halves of every held-out source): the best candidate"
            f" of one half gains {picked:+.4f} there and {fresh:+.4f} on the other half"
        )
    if "tier_rows" in report:
        text += f"\n\ntier-head training rows (train split) {report['tier_rows']}"
    if "pool_rows" in report:
        text += f"\n\ntraining pool rows {report['pool_rows']}"
        text += (
            "\nheld-out rows with a near-duplicate (cosine >= 0.9) in another source's pool: "
            + ", ".join(f"{k} {v:.1%}" for k, v in report["near_duplicates"].items())
        )
    print(text)
    print(f"rows {report['rows']}; {report['seconds']:.0f} s")
    if args.out is not None:
        args.out.write_text(text + "\n\n```json\n" + json.dumps(report["results"], indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
