"""Request features beside the embedding: fixed names and order, deterministic, the signals they name."""

from __future__ import annotations

import numpy as np

from serving.model.textprep import REQUEST_FEATURE_NAMES, request_feature_matrix, request_features


def _f(text: str) -> dict[str, float]:
    return dict(zip(REQUEST_FEATURE_NAMES, request_features(text).tolist(), strict=True))


def test_shape_dtype_and_determinism() -> None:
    v = request_features("hello")
    assert v.dtype == np.float32 and v.shape == (len(REQUEST_FEATURE_NAMES),)
    texts = ["a", "b?\nc", ""]
    m = request_feature_matrix(texts)
    assert m.shape == (3, len(REQUEST_FEATURE_NAMES))
    assert np.array_equal(m, request_feature_matrix(texts))
    assert request_feature_matrix([]).shape == (0, len(REQUEST_FEATURE_NAMES))


def test_length_grows_with_text_and_is_not_normalised_away() -> None:
    assert _f("word " * 200)["log_tokens"] > _f("word " * 5)["log_tokens"] + 3


def test_signals() -> None:
    code = "Fix this:\n```python\ndef f(x):\n    return x + 1\n```\nTraceback (most recent call last):"
    assert _f(code)["code_fence"] == 1.0 and _f(code)["code_lines"] > 0.3
    assert _f("hey, how's it going?")["code_fence"] == 0.0
    assert _f("Why? How? When?")["log_questions"] == np.float32(np.log1p(3))
    assert _f("| a | b |\n| 1 | 2 |")["table_lines"] == 1.0
    assert _f("Which?\nA. one\nB. two\nC. three")["option_lines"] == 0.75
    constrained = "Write exactly 3 bullet points, at most 50 words, in JSON format, do not use jargon."
    assert _f(constrained)["log_constraints"] > _f("Write a poem.")["log_constraints"]
    assert _f("Wie spät ist es? Grüße")["non_ascii_share"] > 0
    assert _f("In 2023, 45% of 1200 items")["digit_density"] > 0.2


def test_lone_surrogates_and_huge_texts_are_served() -> None:
    assert np.all(np.isfinite(request_features("bad \ud800 text")))
    assert np.all(np.isfinite(request_features("x" * 1_000_000)))
