"""Inject known drift into a held-out set, to prove the drift checks catch it (tests, notebook).

Job: four controlled shifts of a labelled DataFrame (`text` + label columns + `source`):
- `resample_sources`: a new source mix (e.g. traffic that is suddenly mostly maths);
- `transliterate` / `to_other_script`: "another language". The shipped data is English only, so
  we map Latin letters to Cyrillic ones (a->а, b->б, ... w->ш). This is not Russian, but it is
  what matters to an English MiniLM tokenizer and to the language check: a different script,
  different (mostly [UNK]/single-character) word pieces, and text the classifier never saw;
- `flip_labels`: a share of labels replaced by a different label (annotation or concept drift);
  texts are unchanged, so only the performance (and label-mix) checks can see it;
- `truncate_words`: texts cut to their first few words (a client that started clipping prompts).
Everything is seeded and pure (returns new objects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_CYRILLIC = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        [
            "а",
            "б",
            "ц",
            "д",
            "е",
            "ф",
            "г",
            "х",
            "и",
            "й",
            "к",
            "л",
            "м",
            "н",
            "о",
            "п",
            "к",
            "р",
            "с",
            "т",
            "у",
            "в",
            "ш",
            "кс",
            "ы",
            "з",
        ],
        strict=True,
    )
)


def transliterate(text: str) -> str:
    """Latin letters -> Cyrillic letters (case kept); everything else unchanged."""
    out = []
    for ch in text:
        low = ch.lower()
        rep = _CYRILLIC.get(low)
        if rep is None:
            out.append(ch)
        else:
            out.append(rep.upper() if ch != low else rep)
    return "".join(out)


def to_other_script(df: Any, share: float = 1.0, seed: int = 0) -> Any:
    """A copy of `df` with `share` of its texts transliterated."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    pick = rng.random(len(out)) < share
    out.loc[pick, "text"] = [transliterate(t) for t in out.loc[pick, "text"]]
    return out


def truncate_words(df: Any, n_words: int = 6) -> Any:
    """A copy of `df` with every text cut to its first `n_words` whitespace-separated words."""
    out = df.copy()
    out["text"] = [" ".join(str(t).split()[:n_words]) or str(t)[:20] for t in out["text"]]
    return out


def flip_labels(df: Any, column: str, labels: Sequence[str], share: float, seed: int = 0) -> Any:
    """A copy of `df` where `share` of the labelled rows of `column` get a different label."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    values = out[column].tolist()
    for i, v in enumerate(values):
        if v is None or v != v or rng.random() >= share:
            continue
        others = [lab for lab in labels if lab != v]
        values[i] = others[int(rng.integers(0, len(others)))]
    out[column] = values
    return out


def resample_sources(df: Any, weights: Mapping[str, float], n: int, seed: int = 0) -> Any:
    """`n` rows drawn (without replacement within a source where possible) with the given source mix."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    total = sum(weights.values())
    parts = []
    for source, w in weights.items():
        pool = df[df["source"] == source]
        if len(pool) == 0:
            raise ValueError(f"no rows from source {source!r}")
        k = round(n * w / total)
        idx = rng.choice(len(pool), size=k, replace=k > len(pool))
        parts.append(pool.iloc[idx])
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)
