"""Script buckets for the language-mix check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.data.language import BUCKETS, language_counts, script_bucket


@pytest.mark.parametrize(
    ("text", "bucket"),
    [
        ("What is the capital of France?", "ascii"),
        (
            "Quelle est la capitale de la Hongrie ? Écrivez une réponse détaillée, s'il vous plaît.",
            "latin_diacritics",
        ),
        ("Schreiben Sie eine Zusammenfassung über die Größe der Bäume", "latin_diacritics"),
        ("Напишите функцию на Python", "cyrillic"),
        ("Γράψε ένα ποίημα", "greek"),
        ("اكتب قصيدة عن البحر", "arabic"),
        ("请用三句话总结这篇文章", "cjk"),
        ("この文章を要約してください", "cjk"),
        ("이 글을 요약해 주세요", "cjk"),
        ("कृपया इस लेख का सारांश दें", "indic"),
        ("12 + 7 = ?", "no_letters"),
        ("", "no_letters"),
        ("Use the café's wifi to write a long English paragraph about networks and routers", "ascii"),
    ],
)
def test_buckets(text: str, bucket: str) -> None:
    assert script_bucket(text) == bucket


@given(st.lists(st.text(max_size=50), max_size=20))
def test_counts_cover_every_text(texts: list[str]) -> None:
    counts = language_counts(texts)
    assert list(counts) == list(BUCKETS)
    assert sum(counts.values()) == len(texts)
