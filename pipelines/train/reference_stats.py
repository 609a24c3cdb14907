"""Reference statistics: the compact summary of a labelled set that drift checks compare against.

Job: capture, once (at training time, on the held-out test split), everything `tierroute drift`
needs to test a new set against the model's reference data without re-reading or re-embedding it,
and store it as one `reference_stats.npz` (numpy only, no pickle, versioned).

What is stored (per head unless said otherwise):
- `pred_counts` (all rows) and `confidence_hist` (top-class probability in 10 equal-width bins, all rows);
- `label_counts` (labelled rows) when the head's column is in the data;
- per-row `pred_idx`, `true_idx` (-1 when unlabelled) and `confidence` on up to 20,000 sampled rows:
  what performance drift (macro-F1 permutation test, bootstrap intervals) and ECE need;
- shared: `token_counts` (same sampled rows), the truncated share, the language-bucket counts, and an
  embedding subsample of up to 1,000 rows (float32; 1,000 x 384 = 1.5 MB) for the MMD test;
- `meta`: model name/version, training-data digest, which split, row count, creation time.

Why the test split: predictions on training rows are over-confident and over-accurate, so a
reference computed there makes every new set look drifted (prediction mix, confidence, F1).
Held-out rows are what "normal" looks like to the deployed model. The same function also
summarises the current set, so reference and current are always computed the same way.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.data.language import BUCKETS, language_counts

FORMAT = "tierroute-reference-stats"
FORMAT_VERSION = 1
FILENAME = "reference_stats.npz"
CONFIDENCE_EDGES = np.linspace(0.0, 1.0, 11)
MAX_ROWS = 20_000
MAX_EMBEDDINGS = 1_000


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in right-closed bins given by `edges` (values outside fall into the end bins)."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    idx = np.clip(np.searchsorted(e, v, side="left") - 1, 0, e.size - 2)
    return np.bincount(idx, minlength=e.size - 1).astype(np.int64)


class ReferenceStatsError(Exception):
    """A reference-statistics file that is missing, corrupt or of another format version."""


@dataclass
class HeadStats:
    labels: tuple[str, ...]
    pred_counts: np.ndarray
    confidence_hist: np.ndarray
    pred_idx: np.ndarray
    confidence: np.ndarray
    label_counts: np.ndarray | None = None
    true_idx: np.ndarray | None = None

    @property
    def has_labels(self) -> bool:
        return self.true_idx is not None and bool(np.any(self.true_idx >= 0))

    def labelled_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(true_idx, pred_idx) of the sampled rows that carry a label."""
        if self.true_idx is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        m = self.true_idx >= 0
        return self.true_idx[m], self.pred_idx[m]


@dataclass
class ReferenceStats:
    heads: dict[str, HeadStats]
    n_rows: int
    token_counts: np.ndarray | None = None
    truncated_share: float | None = None
    language: dict[str, int] | None = None
    embeddings: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write one compressed .npz (no pickle); `path` may be a folder (then FILENAME inside)."""
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        arrays: dict[str, np.ndarray] = {}
        head_index = []
        for i, (name, h) in enumerate(self.heads.items()):
            key = f"h{i}"
            head_index.append({"name": name, "labels": list(h.labels), "key": key})
            arrays[f"{key}.pred_counts"] = np.asarray(h.pred_counts, np.int64)
            arrays[f"{key}.confidence_hist"] = np.asarray(h.confidence_hist, np.int64)
            arrays[f"{key}.pred_idx"] = np.asarray(h.pred_idx, np.int16)
            arrays[f"{key}.confidence"] = np.asarray(h.confidence, np.float32)
            if h.label_counts is not None:
                arrays[f"{key}.label_counts"] = np.asarray(h.label_counts, np.int64)
            if h.true_idx is not None:
                arrays[f"{key}.true_idx"] = np.asarray(h.true_idx, np.int16)
        if self.token_counts is not None:
            arrays["token_counts"] = np.asarray(self.token_counts, np.int32)
        if self.embeddings is not None:
            arrays["embeddings"] = np.asarray(self.embeddings, np.float32)
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "n_rows": self.n_rows,
            "heads": head_index,
            "truncated_share": self.truncated_share,
            "language": self.language,
            "meta": self.meta,
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> ReferenceStats:
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        if not path.is_file():
            raise ReferenceStatsError(f"reference statistics not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            header = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
        except Exception as exc:
            raise ReferenceStatsError(f"{path}: not a readable reference-statistics file ({exc})") from exc
        if header.get("format") != FORMAT:
            raise ReferenceStatsError(f"{path}: not a {FORMAT} file")
        if header.get("version") != FORMAT_VERSION:
            raise ReferenceStatsError(
                f"{path}: format version {header.get('version')!r}, this tierroute reads {FORMAT_VERSION}"
            )
        heads: dict[str, HeadStats] = {}
        try:
            for entry in header["heads"]:
                key = entry["key"]
                heads[entry["name"]] = HeadStats(
                    labels=tuple(entry["labels"]),
                    pred_counts=arrays[f"{key}.pred_counts"],
                    confidence_hist=arrays[f"{key}.confidence_hist"],
                    pred_idx=arrays[f"{key}.pred_idx"].astype(np.int64),
                    confidence=arrays[f"{key}.confidence"].astype(np.float64),
                    label_counts=arrays.get(f"{key}.label_counts"),
                    true_idx=(
                        arrays[f"{key}.true_idx"].astype(np.int64) if f"{key}.true_idx" in arrays else None
                    ),
                )
        except KeyError as exc:
            raise ReferenceStatsError(f"{path}: missing array {exc}") from exc
        return cls(
            heads=heads,
            n_rows=int(header["n_rows"]),
            token_counts=arrays.get("token_counts"),
            truncated_share=header.get("truncated_share"),
            language=header.get("language"),
            embeddings=arrays.get("embeddings"),
            meta=dict(header.get("meta") or {}),
        )

    def summary(self) -> dict[str, Any]:
        """Small JSON-able description (for reports and MLflow params)."""
        return {
            "n_rows": self.n_rows,
            "heads": {n: list(h.labels) for n, h in self.heads.items()},
            "labelled_heads": [n for n, h in self.heads.items() if h.has_labels],
            "embeddings": 0 if self.embeddings is None else int(self.embeddings.shape[0]),
            "token_counts": 0 if self.token_counts is None else int(self.token_counts.size),
            "language": self.language is not None,
            **{f"meta_{k}": v for k, v in self.meta.items() if isinstance(v, str | int | float)},
        }


def _is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA (a nullable string column's empty cell, whose `== ""` raises)."""
    import pandas as pd

    return bool(pd.isna(value))


def label_indices(values: Sequence[Any], labels: Sequence[str], head: str) -> np.ndarray:
    """Label strings -> indices; missing (None/NaN/empty) -> -1; unknown label -> ValueError."""
    index = {lab: i for i, lab in enumerate(labels)}
    out = np.full(len(values), -1, dtype=np.int64)
    unknown: set[str] = set()
    for i, v in enumerate(values):
        if v is None or (not isinstance(v, str) and _is_missing(v)) or v == "":
            continue
        j = index.get(str(v))
        if j is None:
            unknown.add(str(v))
        else:
            out[i] = j
    if unknown:
        raise ValueError(
            f"column {head!r} holds labels the model does not know: {sorted(unknown)[:5]} "
            f"(known: {list(labels)})"
        )
    return out


def compute_stats(
    probs: Mapping[str, np.ndarray],
    heads: Mapping[str, Sequence[str]],
    *,
    labels: Mapping[str, Sequence[Any]] | None = None,
    token_counts: np.ndarray | None = None,
    truncated: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    texts: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
    max_embeddings: int = MAX_EMBEDDINGS,
) -> ReferenceStats:
    """Summarise one set from raw arrays; every input but `probs`/`heads` is optional.

    probs: head -> [n, K] probabilities, columns in `heads[head]` order. labels: head -> n label
    strings (None/NaN = unlabelled row). Heads in `labels` but not in `probs` are ignored.
    """
    # Over 60 lines: one statistic per block over the same arrays; splitting would only pass them around.
    if not probs:
        raise ValueError("need probabilities for at least one head")
    n = next(iter(probs.values())).shape[0]
    if n == 0:
        raise ValueError("no rows to summarise")
    for name, p in probs.items():
        if name not in heads:
            raise ValueError(f"head {name!r} has no label list")
        if p.shape != (n, len(heads[name])):
            raise ValueError(
                f"head {name!r}: probabilities of shape {p.shape}, expected ({n}, {len(heads[name])})"
            )
    for arr_name, arr in (
        ("token_counts", token_counts),
        ("truncated", truncated),
        ("embeddings", embeddings),
    ):
        if arr is not None and len(arr) != n:
            raise ValueError(f"{arr_name} has {len(arr)} rows, probabilities have {n}")
    if texts is not None and len(texts) != n:
        raise ValueError(f"texts has {len(texts)} rows, probabilities have {n}")
    rng = np.random.default_rng(seed)
    rows = np.arange(n) if n <= max_rows else np.sort(rng.choice(n, size=max_rows, replace=False))
    head_stats: dict[str, HeadStats] = {}
    for name, p in probs.items():
        labs = tuple(heads[name])
        pa = np.asarray(p, dtype=np.float64)
        pred = pa.argmax(axis=1)
        conf = pa.max(axis=1)
        hs = HeadStats(
            labels=labs,
            pred_counts=np.bincount(pred, minlength=len(labs)).astype(np.int64),
            confidence_hist=histogram(conf, CONFIDENCE_EDGES),
            pred_idx=pred[rows],
            confidence=conf[rows],
        )
        if labels is not None and name in labels:
            col = labels[name]
            if len(col) != n:
                raise ValueError(f"labels for {name!r} have {len(col)} rows, probabilities have {n}")
            true = label_indices(list(col), labs, name)
            hs.label_counts = np.bincount(true[true >= 0], minlength=len(labs)).astype(np.int64)
            hs.true_idx = true[rows]
        head_stats[name] = hs
    emb = None
    if embeddings is not None:
        e = np.asarray(embeddings, dtype=np.float32)
        take = (
            np.arange(n)
            if n <= max_embeddings
            else np.sort(rng.choice(n, size=max_embeddings, replace=False))
        )
        emb = e[take]
    meta_out = {"created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **dict(meta or {})}
    return ReferenceStats(
        heads=head_stats,
        n_rows=int(n),
        token_counts=None if token_counts is None else np.asarray(token_counts, np.int64)[rows],
        truncated_share=None if truncated is None else float(np.mean(np.asarray(truncated, bool))),
        language=None if texts is None else language_counts(texts),
        embeddings=emb,
        meta=meta_out,
    )


def compute_reference_stats(
    bundle_output: Any,
    labels_df: Any | None = None,
    *,
    heads: Mapping[str, Sequence[str]],
    texts: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> ReferenceStats:
    """Summarise a `serving.model.bundle.BundleOutput` (+ optional labelled DataFrame, same row order).

    `labels_df` columns named like a head are read as that head's labels; its `text` column (or
    `texts`) feeds the language mix. Call at train time on the test split:
        out = Bundle.load(bundle_dir).predict_arrays(test_df["text"].tolist())   # in batches
        stats = compute_reference_stats(out, test_df, heads={h.name: h.labels for h in bundle.heads},
                                        meta={"split": "test", "training_data_digest": digest})
        stats.save(bundle_dir_or_artifact_dir / "reference_stats.npz")
    """
    labels: dict[str, Sequence[Any]] = {}
    if labels_df is not None:
        for name in heads:
            if name in labels_df.columns:
                labels[name] = [None if is_missing(v) else v for v in labels_df[name].tolist()]
        if texts is None and "text" in labels_df.columns:
            texts = [str(t) for t in labels_df["text"].tolist()]
    return compute_stats(
        bundle_output.probs,
        heads,
        labels=labels or None,
        token_counts=bundle_output.token_counts,
        truncated=bundle_output.truncated,
        embeddings=bundle_output.embedding,
        texts=texts,
        meta=meta,
        seed=seed,
    )


def attach_to_bundle(bundle_dir: Path, stats: ReferenceStats) -> Path:
    """Write `reference_stats.npz` into a bundle folder and list it (with its sha256) in bundle.json.

    For the training pipeline, between `build_bundle` and registration: the file then travels with
    the bundle (registry artifact, `download_bundle`, exports) and `read_manifest` verifies it like
    the model file. bundle.json is replaced atomically (temp file + rename)."""
    import hashlib
    import os

    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / "bundle.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    target = stats.save(bundle_dir / FILENAME)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    manifest.setdefault("files", {})[FILENAME] = digest
    manifest["reference_stats"] = {
        "file": FILENAME,
        "rows": stats.n_rows,
        "split": stats.meta.get("split"),
        "format_version": FORMAT_VERSION,
    }
    tmp = manifest_path.with_name(".bundle.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    return target


def is_missing(v: Any) -> bool:
    """None or NaN: an unlabelled cell (pandas reads empty CSV cells as NaN)."""
    if v is None:
        return True
    try:
        return bool(np.isnan(v))
    except (TypeError, ValueError):
        return False


__all__ = [
    "BUCKETS",
    "CONFIDENCE_EDGES",
    "FILENAME",
    "HeadStats",
    "ReferenceStats",
    "ReferenceStatsError",
    "attach_to_bundle",
    "compute_reference_stats",
    "compute_stats",
    "is_missing",
]
