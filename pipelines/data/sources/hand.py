"""Label map of tierroute's own hand-labelled requests, and their overlap check against the sanity set.

Job: read `data/raw/tierroute_requests/requests.jsonl` (requests written and labelled by the project with
the tier and task guideline of that folder's `SOURCE.md`) and keep their labels as written: `label_kind`
`hand`. `sanity_overlap` keeps them honest as training data for a model that is *evaluated* on
`data/sanity/requests.jsonl` (written by the same project): no hand row may equal a sanity row after
`normalise_text`, and none may sit closer than `MAX_SANITY_COSINE` to one in embedding space.
Trade-off: the labels are one careful annotator's judgement (no second annotator, no agreement
figure); they are the only rows whose tier says what a person expects for an everyday request, so they
are worth more per row than any proxy rule, and less than measured model outcomes for routing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.data.sources.base import LabelResult, RawRow, RowLabel, read_jsonl

HAND_FOLDER = "tierroute_requests"
HAND_FILE = "requests.jsonl"
MAX_SANITY_COSINE = 0.6
"""A hand row whose MiniLM cosine to any sanity row is above this is a near-duplicate: dropped. The issue
asked for 0.9; at 0.85 same-request pairs were still left in (one op-ed brief, one SaaS schema, one LRU
cache with TTL at 0.60-0.84), so the shipped rows keep under 0.6 (the median is about 0.3)."""


def read_hand_requests(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of `tierroute_requests/requests.jsonl`; key: the row's own `id` (`tr-0001`, ...)."""
    for row in read_jsonl(raw_dir / HAND_FOLDER / HAND_FILE):
        yield str(row["id"]), row


def label_hand_request(row: RawRow) -> LabelResult:
    """Hand row -> its text, tier and task exactly as the annotator wrote them (no rule, no weak_ok)."""
    return RowLabel(text=str(row["text"]).strip(), tier=str(row["tier"]), task=str(row["task"]))


@dataclass(frozen=True)
class SanityOverlap:
    """Per hand row: the nearest sanity row by cosine, and which rows are near-duplicates."""

    exact: list[int]
    """Indexes of hand rows equal to a sanity row after `normalise_text`."""
    max_cosine: np.ndarray
    """Per hand row, the largest cosine to any sanity row."""
    nearest: list[int]
    """Per hand row, the index of that nearest sanity row."""
    threshold: float

    @property
    def too_close(self) -> list[int]:
        """Hand rows to drop: exact duplicates and rows above the cosine threshold (sorted, unique)."""
        above = np.flatnonzero(self.max_cosine > self.threshold).tolist()
        return sorted(set(self.exact) | {int(i) for i in above})


def sanity_overlap(
    hand_texts: Sequence[str],
    sanity_texts: Sequence[str],
    embed: Callable[[list[str]], np.ndarray],
    *,
    threshold: float = MAX_SANITY_COSINE,
) -> SanityOverlap:
    """Exact (normalised) and embedding near-duplicates of the sanity rows among the hand rows.

    `embed` maps texts to row vectors (the classifier's encoder in practice; vectors are L2-normalised
    here, so any embedding works). Returns every hand row's max cosine, so a report can show the
    distribution and not only the rows above `threshold`.
    """
    from pipelines.data.build import normalise_text

    if not hand_texts or not sanity_texts:
        return SanityOverlap([], np.zeros(len(hand_texts)), [-1] * len(hand_texts), threshold)
    sanity_keys = {normalise_text(t) for t in sanity_texts}
    exact = [i for i, t in enumerate(hand_texts) if normalise_text(t) in sanity_keys]

    def unit(texts: Sequence[str]) -> np.ndarray:
        v = np.asarray(embed(list(texts)), dtype=np.float64)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    cos = unit(hand_texts) @ unit(sanity_texts).T
    return SanityOverlap(exact, cos.max(axis=1), cos.argmax(axis=1).tolist(), threshold)


def minilm_embed(texts: list[str]) -> np.ndarray:
    """The classifier's own view of `texts`: the exported MiniLM encoder (fp32, default truncation)."""
    from pipelines.train.embed import Embedder
    from pipelines.train.encoder_export import export_encoder
    from serving.model.textprep import TruncationSpec

    return Embedder(export_encoder(), TruncationSpec(), cache_dir=None).embed(texts, progress=False)


def main(raw_dir: Path = Path("data/raw"), sanity_path: Path = Path("data/sanity/requests.jsonl")) -> int:
    """Print the overlap report of the shipped hand rows vs the sanity set; exit 1 if any is too close."""
    hand_rows = [row for _, row in read_hand_requests(raw_dir)]
    sanity_rows = read_jsonl(sanity_path)
    report = sanity_overlap(
        [str(r["text"]) for r in hand_rows], [str(r["text"]) for r in sanity_rows], minilm_embed
    )
    quantiles = np.quantile(report.max_cosine, [0.5, 0.9, 0.99, 1.0])
    print(
        f"{len(hand_rows)} hand rows vs {len(sanity_rows)} sanity rows: {len(report.exact)} exact "
        f"duplicates; max cosine to any sanity row: median {quantiles[0]:.3f}, p90 {quantiles[1]:.3f}, "
        f"p99 {quantiles[2]:.3f}, max {quantiles[3]:.3f} (threshold {report.threshold})"
    )
    for i in np.argsort(-report.max_cosine)[:5].tolist():
        print(f"  {report.max_cosine[i]:.3f}  {hand_rows[i]['id']}  {str(hand_rows[i]['text'])[:70]!r}")
    for i in report.too_close:
        print(f"too close: {hand_rows[i]['id']} {str(hand_rows[i]['text'])[:70]!r}")
    return 1 if report.too_close else 0
