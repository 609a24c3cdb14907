"""tierroute's own hand-labelled requests: the shipped file, the build wiring, the sanity overlap check."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.data.build import build_dataset, load_built, normalise_text
from pipelines.data.labels import TASKS, TIERS
from pipelines.data.sources import SOURCES, SOURCES_BY_NAME, RowLabel
from pipelines.data.sources.hand import HAND_FOLDER, MAX_SANITY_COSINE, sanity_overlap
from tests.pipelines.data.conftest import RAW, REPO

SANITY = REPO / "data" / "sanity" / "requests.jsonl"
SOURCE = "tierroute_requests"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _hand_texts() -> list[str]:
    return [str(row["text"]) for _, row in SOURCES_BY_NAME[SOURCE].read(RAW)]


def _bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in embedding: hashed word counts (cosine = word overlap)."""
    out = np.zeros((len(texts), 256))
    for i, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            out[i, int(hashlib.sha1(word.encode()).hexdigest(), 16) % 256] += 1.0
    return out


def test_shipped_hand_rows_cover_every_label_with_varied_requests() -> None:
    rows = _lines(RAW / HAND_FOLDER / "requests.jsonl")
    assert 500 <= len(rows) <= 1_000
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({normalise_text(r["text"]) for r in rows}) == len(rows)
    cells = Counter((r["tier"], r["task"]) for r in rows)
    assert {t for t, _ in cells} == set(TIERS) and {k for _, k in cells} == set(TASKS)
    assert all(cells[("simple", task)] >= 20 for task in TASKS)
    assert all(sum(cells[(tier, task)] for tier in ("complex", "reasoning")) >= 10 for task in TASKS)
    lengths = sorted(len(r["text"]) for r in rows)
    assert lengths[0] < 10 and lengths[-1] > 1_000  # one word ... multi-paragraph pasted material
    assert sum(not r["text"].isascii() for r in rows) >= 25  # some non-English requests
    assert (RAW / HAND_FOLDER / "SOURCE.md").is_file() and (RAW / HAND_FOLDER / "LICENSE.txt").is_file()


_PASTED_ERROR = re.compile(
    r"Traceback \(most recent call last\)|Exception|Error[:\[ ]|error\[E\d+\]|FATAL|\bat [\w.$]+\(|panic:"
    r"|goroutine \d+"
)
_ASKS_FOR_TESTS = re.compile(r"\b(unit tests?|tests?|pytest|jest|spec|assertNumQueries|table-driven)\b", re.I)


def test_shipped_hand_rows_cover_the_code_paste_and_short_writing_kinds_of_round_4() -> None:
    """Round (4) of SOURCE.md (tr-0648...): the kinds the heads got wrong must stay covered. Before it the
    file had 36 complex/reasoning code rows (9 with a pasted error, 4 asking for tests), 41 simple code
    rows, 43 multi-line pasted extraction/summary/classification/math rows and 53 simple writing rows."""
    rows = _lines(RAW / HAND_FOLDER / "requests.jsonl")
    hard_code = [r["text"] for r in rows if r["task"] == "code" and r["tier"] != "simple"]
    assert len(hard_code) >= 75
    assert sum(bool(_PASTED_ERROR.search(t)) for t in hard_code) >= 15  # a stack trace / compiler error
    assert sum(bool(_ASKS_FOR_TESTS.search(t)) for t in hard_code) >= 20  # design + implement + tests
    assert sum(r["task"] == "code" and r["tier"] == "simple" for r in rows) >= 60  # one-liners beside them
    pasted = [r for r in rows if r["task"] in {"extraction", "summarization", "classification", "math"}]
    assert sum(r["text"].count("\n") >= 4 for r in pasted) >= 55  # a pasted table, CSV, log or statement
    assert (
        sum(r["task"] == "writing" and r["tier"] == "simple" for r in rows) >= 80
    )  # jokes, fixes, translations


def test_hand_label_map_keeps_the_annotators_labels() -> None:
    spec = SOURCES_BY_NAME[SOURCE]
    assert SOURCES[0] is spec  # first: a hand label wins a normalised-text collision
    assert (spec.licence, spec.commercial, spec.label_kind) == ("CC0-1.0", True, "hand")
    result = spec.label({"id": "x", "text": "  Prove it.  ", "tier": "reasoning", "task": "math"})
    assert result == RowLabel(text="Prove it.", tier="reasoning", task="math", weak_ok=None)
    with pytest.raises(ValueError, match="tier"):
        spec.label({"id": "x", "text": "hi", "tier": "easy", "task": "chat"})


def test_no_hand_row_equals_a_sanity_row_after_normalisation() -> None:
    sanity = {normalise_text(r["text"]) for r in _lines(SANITY)}
    assert len(sanity) >= 60
    clashes = [t for t in _hand_texts() if normalise_text(t) in sanity]
    assert clashes == []


def test_sanity_overlap_flags_exact_and_near_duplicates_only() -> None:
    sanity = ["What is the tallest mountain in Europe?", "Write a limerick about a sleepy owl."]
    hand = [
        "what is the TALLEST mountain in europe",  # exact after normalisation
        "Write a limerick about a sleepy owl please.",  # near: same words plus one
        "Summarise this contract clause for a tenant.",  # unrelated
    ]
    report = sanity_overlap(hand, sanity, _bag_of_words)
    assert report.exact == [0]
    assert report.nearest[:2] == [0, 1]
    assert report.max_cosine[1] > MAX_SANITY_COSINE > report.max_cosine[2]
    assert report.too_close == [0, 1]
    assert sanity_overlap(hand, sanity, _bag_of_words, threshold=0.99).too_close == [0]
    assert sanity_overlap([], sanity, _bag_of_words).too_close == []


def test_shipped_hand_rows_are_not_near_duplicates_of_the_sanity_set(encoder_artifact: Any) -> None:
    from pipelines.train.embed import Embedder
    from serving.model.textprep import TruncationSpec

    embedder = Embedder(encoder_artifact, TruncationSpec(), cache_dir=None)
    report = sanity_overlap(
        _hand_texts(),
        [r["text"] for r in _lines(SANITY)],
        lambda texts: embedder.embed(texts, progress=False),
    )
    assert report.too_close == [], float(report.max_cosine.max())
    assert float(np.median(report.max_cosine)) < 0.5  # the two sets are not paraphrases of each other


def test_build_includes_hand_rows_with_their_kind_licence_and_no_weak_ok(built_df: pd.DataFrame) -> None:
    hand = built_df[built_df["source"] == SOURCE]
    assert len(hand) == len(_hand_texts())
    assert (hand["label_kind"] == "hand").all() and (hand["licence"] == "CC0-1.0").all()
    assert hand["commercial"].all() and hand["weak_ok"].isna().all()
    assert set(hand["split"]) == {"train", "validation", "test"}
    assert (built_df.loc[built_df["source"] != SOURCE, "label_kind"] != "hand").all()


def test_commercial_only_build_keeps_hand_rows(tmp_path: Path) -> None:
    only = [SOURCES_BY_NAME[SOURCE], SOURCES_BY_NAME["alpaca_eval"]]
    df = load_built(build_dataset(RAW, tmp_path, sources=only, commercial_only=True).path)
    assert set(df["source"]) == {SOURCE} and set(df["label_kind"]) == {"hand"}
