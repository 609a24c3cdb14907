"""Text -> token tensors, identical at training and serving time.

Job: one tokenisation path for every caller (training embeddings, ONNX bundle, gate), so the
features a head was trained on are exactly the features it is served. The model's own
`tokenizer.json` pads and truncates to a fixed 128 (a trap: its own settings would silently win),
so this module switches both off and does its own truncation.
It also computes the cheap request features (`request_features`) that sit beside the embedding.

Trade-offs:
- Truncation is `head_tail` by default: keep the first `head_tokens` and the last
  `max_tokens - 2 - head_tokens` content tokens. Requests put the instruction at the start and the
  actual question at the end; plain head truncation drops the question of a long prompt.
- Very long texts are cut by characters before tokenising (both ends kept), so a 1 MB text costs
  the same as an 8 KB one. Their token count is then an estimate scaled by character length;
  `truncated` is exact either way.
- Lone surrogates (U+D800..U+DFFF: half of a UTF-16 pair, which JSON's `\ud800` escapes and
  Python's `surrogatepass` decoding let into a `str`) cannot be encoded as UTF-8, so the Rust
  tokenizer rejects them. They are replaced by U+FFFD here, for every caller: one such text is
  served like any other and never fails the micro-batch it was merged into.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Tokenizer

Strategy = Literal["head", "head_tail"]

_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (a no-op for valid Unicode text)."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


@dataclass(frozen=True)
class TruncationSpec:
    """How many tokens the encoder sees and which ones."""

    max_tokens: int = 128
    strategy: Strategy = "head_tail"
    head_tokens: int = 32

    def __post_init__(self) -> None:
        if self.max_tokens < 8 or self.max_tokens > 512:
            raise ValueError(f"max_tokens must be in [8, 512] (the encoder's limit), got {self.max_tokens}")
        if self.strategy not in ("head", "head_tail"):
            raise ValueError(f"strategy must be 'head' or 'head_tail', got {self.strategy!r}")
        if self.strategy == "head_tail" and not 0 <= self.head_tokens <= self.max_tokens - 2:
            raise ValueError(
                f"head_tokens must be in [0, max_tokens-2={self.max_tokens - 2}], got {self.head_tokens}"
            )

    @property
    def content_tokens(self) -> int:
        """Tokens left for the text once [CLS] and [SEP] are placed."""
        return self.max_tokens - 2

    @property
    def char_cap(self) -> int:
        """Characters kept from each end of a huge text before tokenising (>= 24 chars per kept token)."""
        return 24 * self.max_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TruncationSpec:
        return cls(
            max_tokens=int(data["max_tokens"]),
            strategy=data.get("strategy", "head_tail"),
            head_tokens=int(data.get("head_tokens", 32)),
        )

    def select(self, ids: list[int]) -> list[int]:
        """Pick the content token ids the encoder will see."""
        n = self.content_tokens
        if len(ids) <= n:
            return ids
        if self.strategy == "head":
            return ids[:n]
        tail = n - self.head_tokens
        return ids[: self.head_tokens] + (ids[-tail:] if tail else [])


@dataclass(frozen=True)
class EncodedBatch:
    """Padded int64 tensors for a BERT-style encoder plus per-text bookkeeping."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    token_counts: np.ndarray  # tokens of the full text, special tokens excluded
    truncated: np.ndarray  # bool: the encoder saw fewer tokens than the text has

    def feeds(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


class TextTokenizer:
    """Wraps a `tokenizers.Tokenizer` with explicit truncation and dynamic padding."""

    def __init__(self, tokenizer_json: Path, spec: TruncationSpec) -> None:
        tok = Tokenizer.from_file(str(tokenizer_json))
        tok.no_padding()
        tok.no_truncation()
        self._tok = tok
        self.spec = spec
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        pad_id = tok.token_to_id("[PAD]")
        if cls_id is None or sep_id is None or pad_id is None:
            raise ValueError(f"{tokenizer_json}: not a BERT WordPiece tokenizer ([CLS]/[SEP]/[PAD] missing)")
        self.cls_id, self.sep_id, self.pad_id = cls_id, sep_id, pad_id

    def _cap(self, text: str) -> tuple[str, float]:
        """Cut a huge text by characters, keeping both ends; return it and the length scale factor."""
        cap = self.spec.char_cap
        if len(text) <= 2 * cap:
            return clean_text(text), 1.0
        kept = text[: 2 * cap] if self.spec.strategy == "head" else text[:cap] + " " + text[-cap:]
        return clean_text(kept), len(text) / len(kept)

    def encode_batch(self, texts: Sequence[str]) -> EncodedBatch:
        capped = [self._cap(t) for t in texts]
        encodings = self._tok.encode_batch([c[0] for c in capped], add_special_tokens=False)
        rows: list[list[int]] = []
        counts = np.empty(len(texts), dtype=np.int64)
        truncated = np.empty(len(texts), dtype=bool)
        for i, (enc, (_, scale)) in enumerate(zip(encodings, capped, strict=True)):
            ids = enc.ids
            counts[i] = round(len(ids) * scale)
            kept = self.spec.select(ids)
            truncated[i] = len(kept) < len(ids) or scale > 1.0
            rows.append([self.cls_id, *kept, self.sep_id])
        width = max((len(r) for r in rows), default=2)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = r
            attention[i, : len(r)] = 1
        return EncodedBatch(
            input_ids=input_ids,
            attention_mask=attention,
            token_type_ids=np.zeros_like(input_ids),
            token_counts=counts,
            truncated=truncated,
        )

    def count_tokens(self, text: str) -> int:
        return int(self.encode_batch([text]).token_counts[0])


# ------------------------------------------------------------------------------ request features

REQUEST_FEATURES_VERSION = 2
"""Version this runtime writes into new bundles. 2: a long text is measured on its first and last
`FEATURE_EDGE_CHARS[2]` characters, counts scaled to the full length (v1: 16,000 each end, unscaled)."""
FEATURE_EDGE_CHARS: dict[int, int] = {1: 16_000, 2: 2_000}
"""Characters read from each end of a longer text, per features version. Every version here can still
be computed, so a bundle trained with an older one is served the features it was trained on."""
REQUEST_FEATURE_NAMES: tuple[str, ...] = (
    "log_tokens",
    "log_lines",
    "digit_density",
    "symbol_density",
    "log_questions",
    "code_fence",
    "code_lines",
    "log_constraints",
    "option_lines",
    "table_lines",
    "non_ascii_share",
)
"""Cheap, deterministic request features (`request_features`), in this order. Densities and shares are
in [0, 1]; `log_*` are log1p of a count; `code_fence` is 0/1."""

_WORDISH = re.compile(r"\w+|[^\w\s]")
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import |function |return\b|#include|public |for \(|if \(|[}{]\s*$)"
    r"|;\s*$|^\s*Traceback \(|^\s+at \S+\(|^\s*File \".*\", line \d+"
)
_CONSTRAINT = re.compile(
    r"\b(must|should|at least|at most|exactly|no more than|no less than|without|do not|don't|only|"
    r"words?|sentences?|paragraphs?|bullet|format|json|table|list|step by step|in the style of|tone)\b",
    re.IGNORECASE,
)
_OPTION_LINE = re.compile(r"^\s*\(?[A-J][.)]\s+\S")
_TABLE_LINE = re.compile(r"\|.*\||\t.*\t")


def request_features(text: str, version: int = REQUEST_FEATURES_VERSION) -> np.ndarray:
    """`REQUEST_FEATURE_NAMES` of one request as float32 [len(names)]; pure Python + numpy, no model.

    Training and serving call this same function on the same (cleaned) text, so the features a head
    learns are the features it is served. Mean-pooled, L2-normalised embeddings carry no length
    signal; these do. Cost bound: a text longer than twice `FEATURE_EDGE_CHARS[version]` is measured
    on its first and last that many characters (2,000 in v2: about 1 ms at any length, 9.7 ms for v1's
    32,000 at 100k characters); from v2 the counts (words, lines, questions, constraints) are then
    scaled by full length / measured length, so they still grow with the text. Densities and shares
    are those of the measured ends.
    """
    if version not in FEATURE_EDGE_CHARS:
        raise ValueError(
            f"request features version {version} is unknown (known: {sorted(FEATURE_EDGE_CHARS)})"
        )
    edge = FEATURE_EDGE_CHARS[version]
    scale = 1.0
    if len(text) > 2 * edge:  # cut before cleaning: clean_text is per code point, so the result is the same
        kept = text[:edge] + "\n" + text[-edge:]
        scale = len(text) / len(kept) if version >= 2 else 1.0
        text = kept
    text = clean_text(text)
    chars = max(1, len(text))
    lines = text.splitlines() or [""]
    non_empty = [line for line in lines if line.strip()]
    digits = sum(ch.isdigit() for ch in text)
    symbols = sum(not ch.isalnum() and not ch.isspace() for ch in text)
    non_ascii = 0 if text.isascii() else sum(not ch.isascii() for ch in text)
    n_lines = max(1, len(non_empty))
    values = (
        np.log1p(len(_WORDISH.findall(text)) * scale),
        np.log1p(len(non_empty) * scale),
        digits / chars,
        symbols / chars,
        np.log1p(text.count("?") * scale),
        1.0 if "```" in text else 0.0,
        sum(bool(_CODE_LINE.search(line)) for line in non_empty) / n_lines,
        np.log1p(len(_CONSTRAINT.findall(text)) * scale),
        sum(bool(_OPTION_LINE.match(line)) for line in non_empty) / n_lines,
        sum(bool(_TABLE_LINE.search(line)) for line in non_empty) / n_lines,
        non_ascii / chars,
    )
    return np.asarray(values, dtype=np.float32)


def request_feature_matrix(texts: Sequence[str], version: int = REQUEST_FEATURES_VERSION) -> np.ndarray:
    """`request_features` of every text, stacked: float32 [N, len(REQUEST_FEATURE_NAMES)]."""
    if not texts:
        return np.zeros((0, len(REQUEST_FEATURE_NAMES)), dtype=np.float32)
    return np.stack([request_features(t, version) for t in texts])
