"""A cheap language-mix proxy: the writing system of each text, from Unicode character names.

Job: put each text into one coarse bucket so `tierroute drift` can chi-square the bucket mix.
Buckets: `ascii` (Latin letters, essentially no diacritics: English and ASCII-only text),
`latin_diacritics` (Latin letters with >= 2% accented letters: French, German, Spanish, Vietnamese...),
`cyrillic`, `greek`, `arabic`, `hebrew`, `cjk` (Han, kana, Hangul), `indic` (Devanagari, Bengali,
Tamil, ...), `thai`, `other_script`, and `no_letters` (code or numbers only, emptiness).

Trade-offs: this is a script detector, not a language identifier: it cannot tell English from
Indonesian or French from Italian, and one pasted foreign quote does not move a text (majority
script wins, 2% diacritic cut-off). It needs no model and no dependency, runs at ~1 MB/s (ASCII texts
take a fast path), and catches the shifts that hurt an English-trained MiniLM most: a new script
(tokens become [UNK]-heavy word pieces) or heavily accented Latin text. Only the first 2,000
characters of a text are examined.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable

BUCKETS: tuple[str, ...] = (
    "ascii",
    "latin_diacritics",
    "cyrillic",
    "greek",
    "arabic",
    "hebrew",
    "cjk",
    "indic",
    "thai",
    "other_script",
    "no_letters",
)

_PREFIX_TO_BUCKET: dict[str, str] = {
    "LATIN": "latin",
    "CYRILLIC": "cyrillic",
    "GREEK": "greek",
    "ARABIC": "arabic",
    "HEBREW": "hebrew",
    "CJK": "cjk",
    "HIRAGANA": "cjk",
    "KATAKANA": "cjk",
    "HANGUL": "cjk",
    "DEVANAGARI": "indic",
    "BENGALI": "indic",
    "TAMIL": "indic",
    "TELUGU": "indic",
    "GUJARATI": "indic",
    "GURMUKHI": "indic",
    "KANNADA": "indic",
    "MALAYALAM": "indic",
    "THAI": "thai",
}
DIACRITIC_SHARE = 0.02
MAX_CHARS = 2000


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    return _PREFIX_TO_BUCKET.get(first, "other_script")


def script_bucket(text: str) -> str:
    """The bucket of one text (see module docstring)."""
    sample = text[:MAX_CHARS]
    if sample.isascii():
        return "ascii" if any(c.isalpha() for c in sample) else "no_letters"
    counts: Counter[str] = Counter()
    accented = 0
    for ch in sample:
        if not ch.isalpha():
            continue
        if ch.isascii():
            counts["latin"] += 1
            continue
        script = _script(ch)
        counts[script] += 1
        if script == "latin":
            accented += 1
    if not counts:
        return "no_letters"
    top, n_top = counts.most_common(1)[0]
    if top == "latin":
        return "latin_diacritics" if accented / n_top >= DIACRITIC_SHARE else "ascii"
    return top


def language_counts(texts: Iterable[str]) -> dict[str, int]:
    """Counts per bucket, every bucket present (zeros included), in BUCKETS order."""
    counts = Counter(script_bucket(t) for t in texts)
    return {b: int(counts.get(b, 0)) for b in BUCKETS}
