"""Which proxy tier/task labels help the label heads, measured on fixed rows (issue #13 items 1 and 6).

Job: refit the `tier` and `task` heads exactly as `tierroute train` does (`pipelines.train.heads.fit_head`,
balanced classes, C by CV, temperature on validation, hand rows weighted `--hand-weight`) on the cached
embeddings of one built table, once per *candidate*: a set of (source, head) proxy labels masked to empty in
the train and validation splits (each head fits only on its labelled rows, as in training) and a hand
weight. Every candidate is scored on the SAME rows with the table's labels as built:

- `hand_<head>`: agreement on the held-out hand rows (test split of `tierroute_requests`, labelled by the
  guideline in its SOURCE.md): the number to choose by;
- `hand_val_<head>`: agreement on the hand rows of the test *and* validation splits (226 rows): the
  validation split only sets the temperature, which never changes a head's top label, so these rows are
  held out for agreement too; twice the rows, half the noise of one row (1/87 = 1.1 points);
- `f1_<head>_all`: macro-F1 on every other test row (the fixed proxy test rows, their proxy labels);
- `f1_<head>_common`: macro-F1 on the proxy test rows of the sources no candidate touches for that head
  (`common_sources`), so a candidate is not scored against labels it chose to drop;
- `sanity_<head>`: agreement on `data/sanity/requests.jsonl`: reported, never chosen on;
- with `--batch-from ID` (a new batch of hand rows, ids >= ID): `hand_before_<head>` / `hand_batch_<head>`,
  agreement on the held-out hand rows written before the batch (a fixed set: the batch moves no older row's
  split) and on the batch's own; the grid is then the model without the batch (its rows masked in train and
  validation, `Candidate.without_hand_from`), with it, and with it at hand weights 5 and 20.

Run: `tierroute data build --keep-proxy-labels --out DIR` (every proxy label written, the same rows and
splits as the default build), then `python -m evals.eval.label_ablation --data DIR/requests.parquet
[--out FILE.md]`. On the default build (where `SourceSpec.empty_heads` labels are already empty) the drops of
those labels are no-ops and their rows are not scored.
Trade-off: head fits are cached per (head, label vector, weight, data digest, embeddings; `fit_cache_key`) on
disk (`--cache`: the top
labels of every row and sanity row), so candidates that change one head refit only that head and a rerun
only scores; a fit takes 20 s (tier) to 2 minutes (task) on two idle cores, several times that on a busy box.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HAND_SOURCE = "tierroute_requests"
HEADS = ("tier", "task")


@dataclass(frozen=True)
class Candidate:
    """Proxy labels to mask (`(source, head)` pairs) before fitting, and the hand rows' loss weight."""

    name: str
    drop: tuple[tuple[str, str], ...] = ()
    hand_weight: float = 10.0
    note: str = ""
    without_hand_from: str = ""
    """Mask the hand rows whose id is >= this (a later batch) on the train and validation splits."""


TIER_DROPS = {
    "truthfulqa": ("truthfulqa", "tier"),
    "mbpp": ("mbpp", "tier"),
    "gsm8k": ("gsm8k_train", "tier"),
    "math_levels": ("math_levels", "tier"),
    "p3": ("p3_t0_sample", "tier"),
}
TASK_DROPS = {
    "coconot": ("coconot", "task"),
    "alpaca_eval": ("alpaca_eval", "task"),
}


def default_grid() -> list[Candidate]:
    """Baseline, the drops together, each task drop alone, hand weight 20, then each tier drop alone."""
    tier4 = tuple(TIER_DROPS[k] for k in ("truthfulqa", "mbpp", "gsm8k", "math_levels"))
    tasks = tuple(TASK_DROPS.values())
    together = tier4[:3] + tasks
    grid = [
        Candidate("baseline"),
        Candidate("-tqa,mbpp,gsm8k tier -coconot,alpaca task", together),
        Candidate("-tqa,gsm8k tier -coconot,alpaca task", (tier4[0], tier4[2], *tasks)),
        Candidate("-tqa,mbpp,gsm8k,math tier -coconot,alpaca task", tier4 + tasks),
        Candidate("-tqa,mbpp,gsm8k,math,p3 tier -coconot,alpaca task", (*tier4, TIER_DROPS["p3"], *tasks)),
    ]
    grid += [Candidate(f"-{name} task", (pair,)) for name, pair in TASK_DROPS.items()]
    grid += [Candidate("baseline, hand weight 20", hand_weight=20.0)]
    grid += [Candidate("-tqa,mbpp,gsm8k tier -coconot,alpaca task, hand weight 20", together, 20.0)]
    grid += [Candidate(f"-{name} tier", (pair,)) for name, pair in TIER_DROPS.items()]
    return grid


def batch_grid(batch_from: str) -> list[Candidate]:
    """A batch of hand rows (ids >= `batch_from`): the model without it, with it, with it at weight 5 / 20."""
    return [
        Candidate("baseline without the batch", without_hand_from=batch_from),
        Candidate("baseline"),
        Candidate("baseline, hand weight 5", hand_weight=5.0),
        Candidate("baseline, hand weight 20", hand_weight=20.0),
    ]


@dataclass
class Setup:
    df: Any
    X: np.ndarray
    sanity_X: np.ndarray
    sanity: list[dict[str, str]]
    label_sets: dict[str, tuple[str, ...]]
    common_sources: dict[str, list[str]] = field(default_factory=dict)
    digest: str = ""


def load_setup(data: Path, grid: Sequence[Candidate]) -> Setup:
    """The built table, its embeddings (the training encoder and embedding cache) and the sanity rows."""
    import pandas as pd

    from pipelines.data.dataset import dataset_digest
    from pipelines.data.labels import DEFAULT_LABEL_SETS
    from pipelines.train.classifier import TrainConfig
    from pipelines.train.embed import Embedder
    from pipelines.train.encoder_export import export_encoder
    from pipelines.train.sanity import read_sanity

    config = TrainConfig(register=False)
    encoder = export_encoder(config.encoder_cache, config.encoder_precision, layers=config.minilm_layers)
    embedder = Embedder(encoder, config.spec, cache_dir=config.embedding_cache, threads=2, batch_size=1)
    df = pd.read_parquet(data).reset_index(drop=True)
    X = embedder.embed(df["text"].tolist(), progress=False)
    sanity = read_sanity()
    sanity_X = embedder.embed([r["text"] for r in sanity], progress=False)
    touched = {head: {s for c in grid for s, h in c.drop if h == head} for head in HEADS}
    sources = sorted(set(df["source"]) - {HAND_SOURCE})
    common = {head: [s for s in sources if s not in touched[head]] for head in HEADS}
    digest = dataset_digest(df)
    return Setup(df, X, sanity_X, sanity, dict(DEFAULT_LABEL_SETS), common, digest)


def with_request_features(
    setup: Setup,
    scale: float,
    features: np.ndarray | None = None,
    sanity_features: np.ndarray | None = None,
) -> Setup:
    """The same rows with `scale` x the standardised request features beside the embedding (a probe of
    "features beside the embedding" in the tier/task heads; the bundle's tier/task heads read the embedding
    only). Features default to `serving.model.textprep.request_features` of each text; mean and standard
    deviation come from the train split. `scale` sets their size against the unit-norm embedding, i.e.
    how much the heads' shared L2 penalty lets them weigh."""
    if features is None or sanity_features is None:
        from serving.model.textprep import request_features

        features = np.stack([request_features(str(t)) for t in setup.df["text"]])
        sanity_features = np.stack([request_features(r["text"]) for r in setup.sanity])
    features = np.asarray(features, dtype=np.float64)
    train = (setup.df["split"] == "train").to_numpy()
    mean, std = features[train].mean(axis=0), features[train].std(axis=0) + 1e-9

    def z(f: np.ndarray) -> np.ndarray:
        return scale * (np.asarray(f, dtype=np.float64) - mean) / std

    return Setup(
        setup.df,
        np.hstack([setup.X, z(features)]).astype(np.float32),
        np.hstack([setup.sanity_X, z(sanity_features)]).astype(np.float32),
        setup.sanity,
        setup.label_sets,
        setup.common_sources,
        f"{setup.digest}|request-features x {scale:g}",
    )


def _labels_for(df: Any, head: str, candidate: Candidate) -> Any:
    """The head's labels after masking the candidate's drops on the train and validation splits."""
    y = df[head].copy()
    fit_rows = df["split"].isin(["train", "validation"])
    for source, h in candidate.drop:
        if h == head:
            y[fit_rows & (df["source"] == source)] = None
    if candidate.without_hand_from:
        y[fit_rows & _hand_batch(df, candidate.without_hand_from)] = None
    return y


def _hand_batch(df: Any, batch_from: str) -> Any:
    """Hand rows whose own id is >= `batch_from` (zero-padded: `tr-0648`; the built id is `source:own id`)."""
    own = df["id"].astype(str).str.split(":", n=1).str[-1]
    return (df["source"] == HAND_SOURCE) & (own >= batch_from)


FIT_CACHE_VERSION = 2
"""Part of every fit-cache key: bump it when the fitting code changes (1 -> 2: the key also covers the
embeddings, the sanity rows and the splits; a key of labels + data digest alone once served fits made with
another encoder)."""


def fit_cache_key(setup: Setup, head: str, y: Any, hand_weight: float) -> str:
    """Disk-cache key of one head fit: everything the fit and its stored predictions depend on (the head,
    the hand weight, the data digest, the labels as masked, the splits, the row weights' kinds, the
    embeddings of every row and of the sanity rows, and `FIT_CACHE_VERSION`)."""
    h = hashlib.sha256(f"{FIT_CACHE_VERSION}|{head}|{hand_weight}|{setup.digest}|".encode())
    h.update(y.fillna("").astype(str).str.cat(sep="\n").encode())
    for column in ("split", "label_kind"):
        if column in setup.df.columns:
            h.update(setup.df[column].astype(str).str.cat(sep="\n").encode())
    for matrix in (setup.X, setup.sanity_X):
        a = np.ascontiguousarray(matrix)
        h.update(f"{a.shape}|{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def _fit_predictions(
    setup: Setup, head: str, y: Any, hand_weight: float, cache: Path | None, echo: Any
) -> tuple[np.ndarray, np.ndarray, float]:
    """Top-label indices of the refitted head on every row and every sanity row, and its C (disk-cached)."""
    from pipelines.train.heads import fit_head
    from pipelines.train.label_weights import label_kind_weights

    df, X = setup.df, setup.X
    key = fit_cache_key(setup, head, y, hand_weight)
    path = None if cache is None else cache / f"{head}-{key}.npz"
    if path is not None and path.is_file():
        with np.load(path) as saved:
            return saved["rows"], saved["sanity"], float(saved["C"])
    started = time.perf_counter()
    labelled = y.notna().to_numpy()
    tr = (df["split"] == "train").to_numpy() & labelled
    va = (df["split"] == "validation").to_numpy() & labelled
    weights = label_kind_weights(df, tr, hand_weight)
    labels = setup.label_sets[head]
    fitted = fit_head(head, X[tr], y[tr].tolist(), X[va], y[va].tolist(), labels, sample_weight=weights)
    rows = np.argmax(fitted.predict_proba(X), axis=1)
    sanity = np.argmax(fitted.predict_proba(setup.sanity_X), axis=1) if len(setup.sanity) else np.zeros(0)
    echo(f"  fitted {head} (hand weight {hand_weight:g}) in {time.perf_counter() - started:.0f}s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, rows=rows, sanity=sanity, C=fitted.C)
    return rows, sanity, fitted.C


def score_grid(
    setup: Setup,
    grid: Sequence[Candidate],
    echo: Any = print,
    cache: Path | None = None,
    batch_from: str = "",
) -> list[dict[str, Any]]:
    """One result row per candidate (see the module docstring for the columns)."""
    from sklearn.metrics import f1_score

    df = setup.df
    test = (df["split"] == "test").to_numpy()
    held_out = df["split"].isin(["test", "validation"]).to_numpy()
    hand = (df["source"] == HAND_SOURCE).to_numpy()
    batch = _hand_batch(df, batch_from).to_numpy() if batch_from else np.zeros(len(df), dtype=bool)
    results: list[dict[str, Any]] = []
    for candidate in grid:
        row: dict[str, Any] = {"candidate": candidate.name, "hand_weight": candidate.hand_weight}
        for head in HEADS:
            labels = np.asarray(setup.label_sets[head])
            y = _labels_for(df, head, candidate)
            rows, sanity, C = _fit_predictions(setup, head, y, candidate.hand_weight, cache, echo)
            predicted, sanity_pred = labels[rows], labels[sanity.astype(int)]
            truth = df[head].astype(str).to_numpy()
            built = df[head].notna().to_numpy()
            row[f"hand_{head}"] = float(np.mean(predicted[test & hand & built] == truth[test & hand & built]))
            if batch_from:
                for name, part in (("before", hand & ~batch), ("batch", batch)):
                    rows_ = test & part & built
                    row[f"hand_{name}_{head}"] = float(np.mean(predicted[rows_] == truth[rows_]))
            both = held_out & hand & built
            row[f"hand_val_{head}"] = float(np.mean(predicted[both] == truth[both]))
            rest = test & ~hand & built
            row[f"f1_{head}_all"] = float(
                f1_score(truth[rest], predicted[rest], labels=list(labels), average="macro", zero_division=0)
            )
            common = rest & df["source"].isin(setup.common_sources[head]).to_numpy()
            row[f"f1_{head}_common"] = float(
                f1_score(
                    truth[common], predicted[common], labels=list(labels), average="macro", zero_division=0
                )
            )
            row[f"sanity_{head}"] = float(
                np.mean([p == r[head] for p, r in zip(sanity_pred, setup.sanity, strict=True)])
            )
            row[f"C_{head}"] = C
        results.append(row)
        echo(format_row(row))
    return results


def format_row(row: dict[str, Any]) -> str:
    batch = ""
    if "hand_batch_tier" in row:
        batch = (
            f"(before the batch {row['hand_before_tier']:.3f} / {row['hand_before_task']:.3f}, "
            f"the batch {row['hand_batch_tier']:.3f} / {row['hand_batch_task']:.3f}) "
        )
    return (
        f"{row['candidate']:<52} hand tier {row['hand_tier']:.3f} task {row['hand_task']:.3f} {batch}"
        f"(+val {row['hand_val_tier']:.3f} / {row['hand_val_task']:.3f}) | "
        f"F1 all tier {row['f1_tier_all']:.3f} task {row['f1_task_all']:.3f} | "
        f"F1 common tier {row['f1_tier_common']:.3f} task {row['f1_task_common']:.3f} | "
        f"sanity tier {row['sanity_tier']:.3f} task {row['sanity_task']:.3f}"
    )


def markdown(results: Sequence[dict[str, Any]], setup: Setup) -> str:
    """The result table as Markdown, with the row sets it was scored on."""
    df = setup.df
    test = df["split"] == "test"
    hand = df["source"] == HAND_SOURCE
    lines = [
        f"Held-out hand rows: {int((test & hand).sum())} (test), "
        f"{int((df['split'].isin(['test', 'validation']) & hand).sum())} (test + validation); "
        f"proxy test rows: {int((test & ~hand).sum())}; "
        + "; ".join(
            f"common {head} rows ({', '.join(setup.common_sources[head])}): "
            f"{int((test & df['source'].isin(setup.common_sources[head])).sum())}"
            for head in HEADS
        )
        + f"; sanity rows: {len(setup.sanity)}.",
        "",
    ]
    batch = bool(results) and "hand_batch_tier" in results[0]
    extra = " before tier | before task | batch tier | batch task |" if batch else ""
    lines += [
        "| candidate | hand w | hand tier | hand task |"
        + extra
        + " hand+val tier | hand+val task | F1 tier all "
        "| F1 task all | F1 tier common | F1 task common | sanity tier | sanity task |",
        "|" + " --- |" * (12 + 4 * batch),
    ]
    for r in results:
        cells = (
            "".join(f" {r[f'hand_{p}_{h}']:.3f} |" for p in ("before", "batch") for h in HEADS)
            if batch
            else ""
        )
        lines.append(
            f"| {r['candidate']} | {r['hand_weight']:g} | {r['hand_tier']:.3f} | {r['hand_task']:.3f} |"
            f"{cells} {r['hand_val_tier']:.3f} | {r['hand_val_task']:.3f} "
            f"| {r['f1_tier_all']:.3f} | {r['f1_task_all']:.3f} | {r['f1_tier_common']:.3f} "
            f"| {r['f1_task_common']:.3f} | {r['sanity_tier']:.3f} | {r['sanity_task']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/labelled/requests.parquet"))
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    parser.add_argument("--only", nargs="*", default=None, help="candidate names to run (default: all)")
    parser.add_argument("--cache", type=Path, default=Path(".cache/label_ablation"), help="fitted-head cache")
    parser.add_argument(
        "--feature-scales",
        default="",
        help="comma-separated scales: also fit the baseline with scale x z(request features) beside the "
        "embedding, once per scale (e.g. 0.05,0.2; default: none)",
    )
    parser.add_argument(
        "--batch-from",
        default="",
        help="first id of a new batch of hand rows (e.g. tr-0648): score the held-out hand rows before it "
        "and of it apart, over the grid without the batch / with it / with it at hand weight 5 and 20",
    )
    args = parser.parse_args(argv)
    grid = batch_grid(args.batch_from) if args.batch_from else default_grid()
    if args.only:
        grid = [c for c in grid if c.name in set(args.only) or c.name == "baseline"]
    setup = load_setup(args.data, default_grid())
    results = score_grid(setup, grid, cache=args.cache, batch_from=args.batch_from)
    for scale in [float(v) for v in args.feature_scales.split(",") if v.strip()]:
        probe = Candidate(f"baseline + {scale:g} x z(request features)")
        results += score_grid(with_request_features(setup, scale), [probe], cache=args.cache)
    table = markdown(results, setup)
    print(table)
    if args.out is not None:
        args.out.write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
