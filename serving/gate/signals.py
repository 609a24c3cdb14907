"""Cheap per-(prompt, response) signals fed to the learned gate next to the two embeddings.

Job: a handful of numbers the encoder cannot see well because it reads only the head and tail of
each text: how long the answer is (absolutely and relative to the request), whether it opens
with a refusal, whether it stops mid-sentence or inside a code fence, and whether it looks like
garbage (symbol soup, one token repeated), and how many of the request's content words the answer
uses (an answer to another question shares few: the off-topic signal next to the cosine of the
two embeddings, which the gate graph computes itself). Computed identically at training and serving time
(this module is the only implementation), in tens of microseconds with the standard library.

Trade-off: every signal is a fixed transform with values in about [0, 1], so the logistic head
weighs them on the same scale as the embedding components; changing any of them changes the
meaning of a trained head, hence `SIGNALS_VERSION`, stored in each gate bundle and checked at load.
Versions: v2's `refusal_phrase` is the phrase list (`is_refusal`); v3's is the deterministic check's
refusal call (`check_refusal_match`: an opening hedge followed by substantive help is not a refusal).
Bundles of every version in `SUPPORTED_SIGNALS_VERSIONS` load and get the features they were trained on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from serving.gate.refusals import check_refusal_match, is_refusal

SIGNALS_VERSION = 3
"""The version `gate train` writes into new bundles."""

SUPPORTED_SIGNALS_VERSIONS: tuple[int, ...] = (2, 3)
"""Versions this runtime can compute (a bundle's version is passed to `signals`/`signals_batch`)."""
SIGNAL_NAMES: tuple[str, ...] = (
    "log_response_chars",
    "log_prompt_chars",
    "log_length_ratio",
    "short_response",
    "refusal_phrase",
    "ends_mid_sentence",
    "odd_code_fences",
    "symbol_share",
    "repetition",
    "prompt_words_answered",
    "word_jaccard",
)

_TERMINAL = frozenset(".!?:;)]}\"'`*>|")
_SAMPLE_CHARS = 2000
_OVERLAP_CHARS = 3000
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "to",
        "in",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "for",
        "on",
        "with",
        "what",
        "which",
        "who",
        "how",
        "why",
        "when",
        "where",
        "that",
        "this",
        "it",
        "as",
        "by",
        "at",
        "from",
        "do",
        "does",
        "did",
        "you",
        "your",
        "my",
        "me",
        "can",
        "could",
        "would",
        "should",
        "will",
    ]
)


def _ends_mid_sentence(text: str) -> float:
    tail = text.rstrip()
    if not tail:
        return 0.0
    last = tail[-1]
    if last in _TERMINAL or not last.isascii():  # emoji, CJK punctuation: treat as an ending
        return 0.0
    last_line = tail[tail.rfind("\n") + 1 :].lstrip()
    if last_line[:1] in ("-", "*", "|", "#") or last_line[:2].rstrip(".").isdigit():
        return 0.5  # list items and table rows often end without punctuation
    return 1.0


def _symbol_share(sample: str) -> float:
    if not sample:
        return 0.0
    symbols = sum(1 for c in sample if not (c.isalnum() or c.isspace()))
    return symbols / len(sample)


def _repetition(sample: str) -> float:
    words = sample.split()
    if len(words) < 20:
        return 0.0
    return 1.0 - len(set(words)) / len(words)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOPWORDS}


def _overlap(prompt: str, response: str) -> tuple[float, float]:
    """(share of the prompt's content words the response uses, Jaccard of the two word sets)."""
    a, b = _content_words(prompt), _content_words(response[:_OVERLAP_CHARS])
    if not a or not b:
        return 0.0, 0.0
    shared = len(a & b)
    return shared / len(a), shared / len(a | b)


def _refusal(response: str, version: int) -> float:
    if version == 2:
        return 1.0 if is_refusal(response) else 0.0
    return 1.0 if check_refusal_match(response) is not None else 0.0


def signals(prompt: str, response: str, version: int = SIGNALS_VERSION) -> list[float]:
    """The `SIGNAL_NAMES` values for one (prompt, response) pair, as signals `version` defines them."""
    if version not in SUPPORTED_SIGNALS_VERSIONS:
        raise ValueError(f"signals v{version} unknown; this runtime computes {SUPPORTED_SIGNALS_VERSIONS}")
    p = prompt.strip()
    r = response.strip()
    sample = r[:_SAMPLE_CHARS]
    answered, jaccard = _overlap(p, r)
    return [
        math.log1p(len(r)) / 10.0,
        math.log1p(len(p)) / 10.0,
        max(-1.0, min(1.0, math.log((len(r) + 1) / (len(p) + 1)) / 5.0)),
        1.0 if len(r) < 40 else 0.0,
        _refusal(r, version),
        _ends_mid_sentence(r),
        1.0 if (r.count("```") % 2 == 1) else 0.0,
        _symbol_share(sample),
        _repetition(sample),
        answered,
        jaccard,
    ]


def signals_batch(
    prompts: Sequence[str], responses: Sequence[str], version: int = SIGNALS_VERSION
) -> np.ndarray:
    """float32 [N, len(SIGNAL_NAMES)] for aligned prompts and responses (signals `version`)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    out = np.zeros((len(prompts), len(SIGNAL_NAMES)), dtype=np.float32)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        out[i] = signals(p, r, version)
    return out
