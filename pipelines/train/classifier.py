"""Train, evaluate and export the request classifier: the main job of `tierroute train`.

Job: validated labelled data -> cached embeddings -> one calibrated head per label column (each fitted
and scored on the rows labelled for it: a row may leave some heads empty) ->
test metrics and plots -> one ONNX bundle (with a parity check against the training-time heads)
-> MLflow run + registered version with alias `candidate`.

Besides the label heads, a routing head (`pipelines.train.routing`, output `p_weak_ok`) is trained on the
outcome rows, scored leave-one-source-out (`pipelines.train.loso.routing_loso`: APGR and CPT(50%)/CPT(80%)
per held-out source next to prompt length, random routing and, with `previous_model`, the previous
champion's `complexity`) and exported into the same bundle.

Order matters for "bad input loses nothing": the data file is validated before anything is
embedded, logged or written; the bundle is written atomically; if registration fails, the
freshly written bundle is removed again, so neither `models/` nor the registry holds a
half-finished result.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipelines.train.bundle_build import build_bundle
from pipelines.train.embed import Embedder
from pipelines.train.encoder_export import (
    DEFAULT_LAYERS,
    DEFAULT_PRECISION,
    FULL_LAYERS,
    PRECISIONS,
    EncoderArtifact,
    Precision,
    check_layers,
    export_encoder,
)
from pipelines.train.heads import FittedHead, fit_head
from pipelines.train.label_weights import DEFAULT_HAND_WEIGHT, label_kind_weights
from pipelines.train.metrics import classification_metrics, plot_confusion_matrix, plot_reliability
from pipelines.train.routing import (
    DEFAULT_C,
    DEFAULT_LENGTH_COEF,
    DEFAULT_OBJECTIVE,
    DEFAULT_ROWS_PER_SOURCE,
    DEFAULT_SOURCE_WEIGHTS,
    RoutingHead,
    fit_routing_head,
    routing_rows,
    sources_summary,
)
from pipelines.train.sanity import agreement, heldout_hand_report, read_sanity
from serving.model.bundle import Bundle
from serving.model.textprep import REQUEST_FEATURE_NAMES, TruncationSpec, request_feature_matrix

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
PARITY_TEXTS = 256
MIN_TEST_ROWS = 100
"""Fewer test rows and macro-F1 moves by several points from one row to the next: warn at training."""


@dataclass
class TrainConfig:
    """Everything that shapes a training run; logged as MLflow params."""

    data: Path = Path("data/labelled/requests.parquet")
    label_columns: tuple[str, ...] = ("tier", "task")
    label_sets: Mapping[str, Sequence[str]] | None = None
    spec: TruncationSpec = field(default_factory=TruncationSpec)
    precision: Precision | None = None
    """Encoder precision; None = `DEFAULT_PRECISION` (int8) for the minilm encoder, fp32 for the static
    encoder and for `encoder_distil` (both are float32 only). Read it as `encoder_precision`."""
    encoder: Literal["minilm", "static"] = "minilm"
    """`static`: the fast path: model2vec vectors distilled from MiniLM (`pipelines.train.static_encoder`)."""
    encoder_layers: int | None = None
    """MiniLM transformer layers kept (`pipelines.train.encoder_export`): 6 = the whole model; None =
    `DEFAULT_LAYERS` (3) for the minilm encoder (`minilm_layers`)."""
    encoder_distil: bool = False
    """With encoder_layers < 6: distil the truncated encoder toward the 6-layer one on the train split
    first (`pipelines.train.distill`, a few CPU minutes, cached)."""
    full_bundle: Path | None = None
    """With `encoder="static"`: also write a two-stage bundle (`pipelines.train.two_stage`) that answers
    from this static model when it is confident and from this (MiniLM) bundle otherwise."""
    two_stage_heads: tuple[str, ...] | None = None
    """Heads whose confidence gates the fast stage (default: all); agreement is measured on them."""
    two_stage_agreement: float = 0.97
    model_name: str = "tierroute-classifier"
    out_dir: Path = Path("models/bundles")
    encoder_cache: Path = Path("models/encoder")
    embedding_cache: Path | None = Path(".cache/embeddings")
    register: bool = True
    alias: str = "candidate"
    experiment: str = "tierroute-classifier"
    min_confidence: float = 0.5
    hand_weight: float = DEFAULT_HAND_WEIGHT
    """Loss weight of `label_kind == "hand"` rows in the tier/task heads (`pipelines.train.label_weights`)."""
    seed: int = 0
    threads: int = 2
    routing_head: bool = True
    """Train the routing head (`p_weak_ok`) on the outcome rows (and labelled `weak_ok` rows)."""
    outcomes: Path | None = Path("data/labelled/outcomes.parquet")
    raw: Path | None = Path("data/raw")
    """Where outcome rows are built from when `outcomes` is absent."""
    routing_rows_per_source: int = DEFAULT_ROWS_PER_SOURCE
    routing_C: float = DEFAULT_C
    routing_length_coef: float = DEFAULT_LENGTH_COEF
    routing_objective: str = DEFAULT_OBJECTIVE
    """`pipelines.train.routing.OBJECTIVES`: "logistic" (`weak_ok`) or "pairwise_difficulty"."""
    routing_source_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SOURCE_WEIGHTS))
    """Total weight of a source's rows in the routing head relative to the others (default 1 each;
    `traffic`, the rows of `tierroute data from-log`, gets `DEFAULT_SOURCE_WEIGHTS`)."""
    loso: bool = True
    """Report leave-one-source-out routing value of the routing head (`loso_*` metrics)."""
    loso_n_boot: int = 200
    previous_model: str | None = None
    """Bundle folder or `models:/` URI whose `complexity` the LOSO report shows on the same rows."""

    def __post_init__(self) -> None:
        if not self.label_columns:
            raise ValueError("label_columns must name at least one column")
        if self.encoder not in ("minilm", "static"):
            raise ValueError(f"encoder must be minilm or static, got {self.encoder!r}")
        if self.precision is None:
            self.precision = "fp32" if self.encoder == "static" or self.encoder_distil else DEFAULT_PRECISION
        if self.encoder == "static" and self.precision != "fp32":
            raise ValueError("a static encoder is a float32 lookup; precision int8 does not apply")
        if self.encoder_layers is not None:
            check_layers(self.encoder_layers)
            if self.encoder == "static":
                raise ValueError("encoder_layers applies to the minilm encoder, not the static one")
        if self.encoder_distil and (self.minilm_layers == FULL_LAYERS or self.precision != "fp32"):
            raise ValueError("encoder_distil needs encoder_layers < 6 and precision fp32")
        if self.full_bundle is not None and self.encoder != "static":
            raise ValueError("a two-stage bundle (full_bundle) needs encoder='static' as its first stage")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    @property
    def encoder_precision(self) -> Precision:
        """The precision in force (`precision` after `__post_init__` filled in the default)."""
        return self.precision or DEFAULT_PRECISION

    @property
    def minilm_layers(self) -> int:
        return DEFAULT_LAYERS if self.encoder_layers is None else self.encoder_layers

    def params(self) -> dict[str, Any]:
        return {
            "data": str(self.data),
            "label_columns": ",".join(self.label_columns),
            "max_tokens": self.spec.max_tokens,
            "truncation": self.spec.strategy,
            "head_tokens": self.spec.head_tokens,
            "precision": self.precision,
            "encoder": self.encoder,
            "encoder_layers": self.minilm_layers if self.encoder == "minilm" else "",
            "encoder_distil": self.encoder_distil,
            "seed": self.seed,
            "min_confidence": self.min_confidence,
            "hand_weight": self.hand_weight,
            "routing_head": self.routing_head,
            "routing_C": self.routing_C,
            "routing_length_coef": self.routing_length_coef,
            "routing_objective": self.routing_objective,
            "routing_rows_per_source": self.routing_rows_per_source,
            "routing_source_weights": ",".join(
                f"{k}={v:g}" for k, v in sorted(self.routing_source_weights.items())
            ),
        }


def _distilled_encoder(
    config: TrainConfig, df: Any, progress: bool, echo: Callable[[str], Any]
) -> EncoderArtifact:
    """The truncated encoder distilled toward the 6-layer one on the train split's texts."""
    from pipelines.train.distill import DistilConfig, distil_truncated

    teacher = Embedder(
        export_encoder(config.encoder_cache, "fp32"),
        config.spec,
        cache_dir=config.embedding_cache,
        threads=config.threads,
    )
    return distil_truncated(
        config.minilm_layers,
        df.loc[df["split"] == "train", "text"].tolist(),
        lambda texts: teacher.embed(texts, progress=progress, desc="teacher embeddings"),
        config.spec,
        config.encoder_cache,
        DistilConfig(seed=config.seed, threads=config.threads),
        progress=progress,
        echo=echo,
    )


@dataclass
class TrainResult:
    bundle_dir: Path
    metrics: dict[str, float]
    heads: list[FittedHead]
    artifacts: list[Path]
    version: str | None = None
    run_id: str | None = None
    model_uri: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    routing: RoutingHead | None = None
    loso: list[Any] = field(default_factory=list)
    two_stage_dir: Path | None = None


def _split_arrays(df: Any, X: np.ndarray, column: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    out: dict[str, tuple[np.ndarray, list[str]]] = {}
    labelled = df[column].notna().to_numpy()
    for split in ("train", "validation", "test"):
        m = (df["split"] == split).to_numpy() & labelled
        out[split] = (X[m], [str(v) for v in df.loc[m, column]])
    return out


def parity_max_diff(
    bundle_dir: Path,
    heads: Sequence[FittedHead],
    texts: Sequence[str],
    X: np.ndarray,
    routing: RoutingHead | None = None,
) -> float:
    """Max |bundle probability - training-time head probability| over `texts` (every head, and
    `p_weak_ok` against the training-time routing head when there is one)."""
    bundle = Bundle.load(bundle_dir)
    out = bundle.predict_arrays(list(texts))
    diffs = [float(np.abs(out.probs[h.name] - h.predict_proba(X)).max()) for h in heads]
    if routing is not None:
        if out.p_weak_ok is None:
            return float("inf")
        want = routing.predict(X, request_feature_matrix(list(texts)))
        diffs.append(float(np.abs(out.p_weak_ok - want).max()))
    return max(diffs)


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    # Over 60 lines: the pipeline read top to bottom (data, embed, heads, metrics, bundle, parity,
    # register); each step is a named call.
    from pipelines.data.dataset import load_labelled_file

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # validate first; a row may leave some heads unlabelled: each head fits (and is scored) on its rows
    data = load_labelled_file(config.data, config.label_columns, config.label_sets, allow_missing_labels=True)
    df = data.df.reset_index(drop=True)
    timings["validate_s"] = time.perf_counter() - t0
    echo(f"data: {len(df)} rows from {config.data} (digest {data.digest[:12]})")
    for column in config.label_columns:
        labelled = df[column].notna()
        if not labelled.all():
            per_split = ", ".join(
                f"{split} {int((labelled & (df['split'] == split)).sum())}"
                for split in ("train", "validation", "test")
            )
            echo(f"head {column}: trains on the {int(labelled.sum())} rows labelled for it ({per_split})")
    n_test = int((df["split"] == "test").sum())
    if n_test < MIN_TEST_ROWS:
        echo(
            f"warning: the test split has {n_test} rows (< {MIN_TEST_ROWS}): its metrics are noisy and "
            "`promote` decides on them; add rows or pass a 'split' column with a larger test share"
        )

    t = time.perf_counter()
    encoder: EncoderArtifact
    if config.encoder == "static":
        from pipelines.train.static_encoder import export_static_encoder

        encoder = export_static_encoder(config.encoder_cache)
    else:
        encoder = export_encoder(config.encoder_cache, config.encoder_precision, layers=config.minilm_layers)
        if config.encoder_distil:
            encoder = _distilled_encoder(config, df, progress, echo)
    timings["encoder_s"] = time.perf_counter() - t

    t = time.perf_counter()
    # dynamic int8: one text per call, as the bundle will serve it (serving.model.bundle.Bundle.per_item);
    # fp32 and int8-static are batch-invariant: length-sorted batches of 16
    embedder = Embedder(
        encoder,
        config.spec,
        cache_dir=config.embedding_cache,
        threads=config.threads,
        batch_size=1 if config.encoder_precision == "int8" else (64 if config.encoder == "static" else 16),
    )
    X = embedder.embed(df["text"].tolist(), progress=progress)
    timings["embed_s"] = time.perf_counter() - t
    embed_stats = dict(embedder.last_stats)
    echo(
        f"embeddings: {int(embed_stats['embedded'])} computed, {int(embed_stats['cache_hits'])} from cache"
        + (f", {embed_stats['texts_per_s']:.0f} texts/s" if embed_stats["embedded"] else "")
    )

    t = time.perf_counter()
    heads: list[FittedHead] = []
    metrics: dict[str, float] = {}
    artifacts: list[Path] = []
    plots_dir = Path(config.out_dir) / ".plots" / f"{config.model_name}-{int(time.time())}"
    for column in config.label_columns:
        labels = list(data.label_sets[column])
        parts = _split_arrays(df, X, column)
        train_rows = (df["split"] == "train").to_numpy() & df[column].notna().to_numpy()  # as _split_arrays
        weights = label_kind_weights(df, train_rows, config.hand_weight)
        head = fit_head(
            column, *parts["train"], *parts["validation"], labels, seed=config.seed, sample_weight=weights
        )
        heads.append(head)
        for split in ("validation", "test"):
            Xs, ys = parts[split]
            if not ys:
                continue
            m = classification_metrics(ys, head.predict_proba(Xs), labels)
            metrics.update({f"{split}_{column}_{k}": v for k, v in m.items()})
        Xt, yt = parts["test"]
        if yt:
            proba = head.predict_proba(Xt)
            artifacts.append(
                plot_confusion_matrix(
                    yt, proba, labels, plots_dir / f"confusion_{column}.png", f"{column} (test)"
                )
            )
            artifacts.append(
                plot_reliability(
                    yt, proba, labels, plots_dir / f"reliability_{column}.png", f"{column} (test)"
                )
            )
        metrics[f"{column}_C"] = head.C
        metrics[f"{column}_temperature"] = head.temperature
        echo(
            f"head {column}: C={head.C:g} T={head.temperature:.2f} "
            f"test macro-F1={metrics.get(f'test_{column}_macro_f1', float('nan')):.3f} "
            f"acc={metrics.get(f'test_{column}_accuracy', float('nan')):.3f} "
            f"ECE={metrics.get(f'test_{column}_ece', float('nan')):.3f}"
        )
    timings["heads_s"] = time.perf_counter() - t
    sanity = agreement(read_sanity(), heads, lambda texts: embedder.embed(texts, progress=False))
    for key, value in sanity.items():
        if key.endswith("_agreement"):
            metrics[f"sanity_{key}"] = value
    if sanity:
        echo(
            f"sanity set ({sanity['rows']} everyday requests): "
            + ", ".join(
                f"{k.removesuffix('_agreement')} {v:.0%}"
                for k, v in sanity.items()
                if k.endswith("_agreement")
            )
            + " agreement with a careful person's labels"
        )

    hand_report = heldout_hand_report(df, X, heads)  # tierroute's hand-labelled rows (label_weights)
    metrics.update(hand_report)
    if hand_report:
        echo(
            f"held-out hand rows ({int(hand_report['heldout_hand_rows'])} test rows): "
            + ", ".join(
                f"{h.name} {hand_report[f'heldout_hand_{h.name}_agreement']:.0%}"
                for h in heads
                if f"heldout_hand_{h.name}_agreement" in hand_report
            )
            + " agreement; test macro-F1 without them: "
            + ", ".join(
                f"{h.name} {hand_report[f'test_{h.name}_macro_f1_without_hand']:.3f}"
                for h in heads
                if f"test_{h.name}_macro_f1_without_hand" in hand_report
            )
            + f" (hand weight {config.hand_weight:g})"
        )

    t = time.perf_counter()
    routing, loso = (
        _train_routing(config, df, embedder, metrics, echo, progress) if config.routing_head else (None, [])
    )
    timings["routing_s"] = time.perf_counter() - t

    t = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    bundle_dir = build_bundle(
        Path(config.out_dir) / f"{config.model_name}-{stamp}",
        encoder,
        heads,
        config.spec,
        name=config.model_name,
        metadata={
            "thresholds": {"min_confidence": config.min_confidence},
            "training_data": {"digest": data.digest, "rows": len(df), "path": str(config.data)},
            "metrics": {k: round(v, 6) for k, v in metrics.items() if k.startswith(("test_", "loso_apgr_"))},
        },
        routing=routing,
    )
    timings["export_s"] = time.perf_counter() - t
    test_mask = (df["split"] == "test").to_numpy()
    idx = np.flatnonzero(test_mask)[:PARITY_TEXTS]
    if len(idx) == 0:
        idx = np.arange(min(PARITY_TEXTS, len(df)))
    parity = parity_max_diff(bundle_dir, heads, df["text"].iloc[idx].tolist(), X[idx], routing)
    metrics["parity_max_abs_diff"] = parity
    if parity > PARITY_TOLERANCE:
        shutil.rmtree(bundle_dir, ignore_errors=True)
        raise RuntimeError(f"ONNX bundle disagrees with the training-time heads (max diff {parity:.2e})")
    echo(f"bundle: {bundle_dir} (parity max |diff| {parity:.1e} on {len(idx)} texts)")
    t = time.perf_counter()
    try:
        ref_rows = _attach_reference_stats(bundle_dir, df, X, heads, test_mask, data.digest, config.spec)
    except BaseException:
        shutil.rmtree(bundle_dir, ignore_errors=True)
        raise
    timings["reference_stats_s"] = time.perf_counter() - t
    echo(
        f"reference statistics: {ref_rows} rows ({'test' if test_mask.any() else 'all'} split) in the bundle"
    )
    two_stage_dir: Path | None = None
    if config.full_bundle is not None:
        from pipelines.train.two_stage import build_two_stage

        t = time.perf_counter()
        val_texts = df.loc[df["split"] == "validation", "text"].astype(str).tolist()
        two_stage_dir, bar = build_two_stage(
            bundle_dir,
            config.full_bundle,
            bundle_dir.with_name(f"{bundle_dir.name}-two-stage"),
            val_texts,
            target_agreement=config.two_stage_agreement,
            heads=config.two_stage_heads,
        )
        timings["two_stage_s"] = time.perf_counter() - t
        metrics["two_stage_min_confidence"] = bar.min_confidence
        metrics["two_stage_validation_share_fast"] = bar.share_fast
        echo(
            f"two-stage bundle: {two_stage_dir} (bar {bar.min_confidence:.3f}: the fast stage answers "
            f"{bar.share_fast:.0%} of {bar.rows} validation rows, agreeing with {config.full_bundle.name} "
            f"on {bar.agreement:.1%})"
        )
    metrics["embed_texts_per_s"] = embed_stats.get("texts_per_s", 0.0)
    (bundle_dir.parent / ".plots").mkdir(exist_ok=True)
    report = plots_dir / "metrics.json"
    report.write_text(json.dumps({"metrics": metrics, "timings": timings}, indent=2))
    artifacts.append(report)

    result = TrainResult(
        bundle_dir,
        metrics,
        heads,
        artifacts,
        timings=timings,
        routing=routing,
        loso=loso,
        two_stage_dir=two_stage_dir,
    )
    if config.register:  # removes the bundle folder if registration fails
        from pipelines.train.register import register_trained

        register_trained(config, result, echo, dataset_df=data.df, dataset_digest=data.digest)
    timings["total_s"] = time.perf_counter() - t0
    return result


def _train_routing(
    config: TrainConfig,
    df: Any,
    embedder: Embedder,
    metrics: dict[str, float],
    echo: Callable[[str], None],
    progress: bool,
) -> tuple[RoutingHead | None, list[Any]]:
    """Fit the routing head on the routing rows; LOSO report and sanity rank correlation into `metrics`."""
    from pipelines.train.loso import markdown_table, routing_loso

    rows = routing_rows(
        _routing_columns(config.data, df),
        config.outcomes,
        config.raw,
        rows_per_source=config.routing_rows_per_source,
        echo=echo,
    )
    if rows is None or rows["weak_ok"].nunique() < 2:
        echo("routing head: skipped (no outcome rows and no labelled weak_ok rows with both values)")
        return None, []
    texts = rows["text"].tolist()
    emb = embedder.embed(texts, progress=progress)
    feats = request_feature_matrix(texts)
    ok = rows["weak_ok"].to_numpy(dtype=bool)
    src = rows["source"].to_numpy().astype(str)
    difficulty = rows["difficulty"].to_numpy(dtype=np.float64)

    def fit(mask: np.ndarray) -> RoutingHead:
        return fit_routing_head(
            emb[mask],
            feats[mask],
            ok[mask],
            src[mask],
            C=config.routing_C,
            length_coef=config.routing_length_coef,
            source_weights=config.routing_source_weights,
            seed=config.seed,
            objective=config.routing_objective,
            difficulty=difficulty[mask],
        )

    head = fit(np.ones(len(rows), dtype=bool))
    metrics["routing_rows"] = float(len(rows))
    echo(
        f"routing head: {config.routing_objective}, C={config.routing_C:g}, "
        f"length prior {config.routing_length_coef:g}, "
        f"{len(rows):,} rows ({sources_summary(src)})"
    )
    loso: list[Any] = []
    if config.loso:
        previous = _previous_complexity(config.previous_model, rows, echo)
        log_tokens = feats[:, REQUEST_FEATURE_NAMES.index("log_tokens")]
        loso = routing_loso(
            src,
            rows["weak_quality"].to_numpy(dtype=np.float64),
            rows["strong_quality"].to_numpy(dtype=np.float64),
            log_tokens,
            lambda train, test: 1.0 - fit(train).predict(emb[test], feats[test]),
            previous=previous,
            n_boot=config.loso_n_boot,
            seed=config.seed,
        )
        from pipelines.train.loso import loso_metrics

        metrics.update(loso_metrics(loso))
        echo(
            "leave-one-source-out routing value (APGR: higher is better; CPT: strong share, lower is better)"
        )
        echo(markdown_table(loso))
    sanity = read_sanity()
    if sanity:
        from scipy.stats import spearmanr

        stexts = [r["text"] for r in sanity]
        p = head.predict(embedder.embed(stexts, progress=False), request_feature_matrix(stexts))
        order = {"simple": 0, "complex": 1, "reasoning": 2}
        tiers = [order.get(r.get("tier", ""), 1) for r in sanity]
        rho = float(spearmanr(tiers, 1.0 - p).statistic)
        metrics["sanity_complexity_spearman"] = rho
        echo(f"sanity set: Spearman(expected tier, 1 - p_weak_ok) = {rho:.2f}")
    return head, loso


def _routing_columns(path: Path, df: Any) -> Any:
    """`text` plus the data file's own `source` and `weak_ok` columns (those present), row for row.

    The routing head reads `weak_ok` whether or not it is a label column (rows of `tierroute data
    from-log` carry only that label), and `source` so that traffic rows count as their own source.
    The validated frame has neither (it keeps the label columns, as strings)."""
    from pipelines.data.dataset import read_frame

    raw = read_frame(path)
    out = df[["text"]].copy()
    if len(raw) != len(df):  # cannot happen: both come from the same rows of the same file
        raise RuntimeError(f"{path}: read {len(raw)} rows, validated {len(df)}")
    for column in ("source", "weak_ok"):
        if column in raw.columns:
            out[column] = raw[column].to_numpy(dtype=object)
        elif column in df.columns:
            out[column] = df[column].to_numpy(dtype=object)
    return out


def _previous_complexity(model: str | None, rows: Any, echo: Callable[[str], None]) -> np.ndarray | None:
    """The previous champion's `complexity` on the rows with outcome qualities (None without a model)."""
    if not model:
        return None
    import tempfile

    scored = rows["weak_quality"].notna() & rows["strong_quality"].notna()
    texts = rows.loc[scored, "text"].astype(str).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(model)
        if str(model).startswith("models:/"):
            from pipelines.registry import download_bundle

            path = download_bundle(str(model), Path(tmp) / "previous")
        bundle = Bundle.load(path, threads=2)
        echo(f"previous champion {model}: scoring {len(texts):,} rows")
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty(len(texts), dtype=np.float64)
        for start in range(0, len(texts), 64):
            idx = order[start : start + 64]
            c = bundle.predict_arrays([texts[i] for i in idx]).complexity()
            if c is None:
                raise ValueError(f"{model}: the previous model has neither a tier nor a routing head")
            out[idx] = c
    return out


def _attach_reference_stats(
    bundle_dir: Path,
    df: Any,
    X: np.ndarray,
    heads: Sequence[FittedHead],
    test_mask: np.ndarray,
    digest: str,
    spec: TruncationSpec,
) -> int:
    """Summarise the held-out test split (all rows when there is none) into the bundle.

    `tierroute drift --reference <bundle or models:/ URI>` compares new sets against this.
    Probabilities come from the training-time heads (the parity check has just shown the bundle
    gives the same), token counts from the bundle's own tokenizer, so reference and current sets
    are measured the same way."""
    from pipelines.train.reference_stats import attach_to_bundle, compute_stats
    from serving.model.bundle import TOKENIZER_FILE
    from serving.model.textprep import TextTokenizer

    mask = test_mask if test_mask.any() else np.ones(len(df), dtype=bool)
    part = df[mask]
    texts = part["text"].astype(str).tolist()
    Xm = X[mask]
    tokenizer = TextTokenizer(bundle_dir / TOKENIZER_FILE, spec)
    counts: list[np.ndarray] = []
    truncated: list[np.ndarray] = []
    for i in range(0, len(texts), 256):
        enc = tokenizer.encode_batch(texts[i : i + 256])
        counts.append(enc.token_counts)
        truncated.append(enc.truncated)
    stats = compute_stats(
        {h.name: h.predict_proba(Xm) for h in heads},
        {h.name: h.labels for h in heads},
        labels={  # unlabelled rows (per-head masks) as None
            h.name: part[h.name].astype(object).where(part[h.name].notna(), None).tolist()
            for h in heads
            if h.name in part.columns
        },
        token_counts=np.concatenate(counts),
        truncated=np.concatenate(truncated),
        embeddings=Xm,
        texts=texts,
        meta={
            "split": "test" if test_mask.any() else "all",
            "training_data_digest": digest,
            "rows": int(mask.sum()),
        },
    )
    attach_to_bundle(bundle_dir, stats)
    return int(mask.sum())
