"""Request features beside the embedding: fixed names and order, deterministic, the signals they name."""

from __future__ import annotations

from pathlib import Path

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


def test_long_texts_are_measured_on_bounded_ends_with_counts_scaled() -> None:
    from serving.model.textprep import FEATURE_EDGE_CHARS, REQUEST_FEATURES_VERSION

    edge = FEATURE_EDGE_CHARS[REQUEST_FEATURES_VERSION]
    head, tail = "Please read this. " * 200, " What is the answer?" * 150
    assert len(head) >= edge and len(tail) >= edge
    quiet = head + "plain words here " * 5_000 + tail
    loud = head + ("| 1 | 2? |\n```\ndef f(): ;\n" * 3_400)[: len(quiet) - len(head) - len(tail)] + tail
    assert len(quiet) == len(loud) > 80_000
    # the middle is not read (same ends, same length: same features) ...
    assert np.array_equal(request_features(quiet), request_features(loud))
    # ... which the old 16,000-character bound (version 1, still served to v1 bundles) did read
    assert not np.array_equal(request_features(quiet, 1), request_features(loud, 1))
    # counts are scaled to the full length, so length still tells a 100k text from a 5k one
    words = "word " * 20_000
    assert abs(_f(words)["log_tokens"] - np.log1p(20_000)) < 0.01
    assert _f(words)["log_tokens"] > _f(words[: 5 * 1_000])["log_tokens"] + 2.5
    # at or under the bound both versions are the same function
    short = "Why? " * (2 * edge // 5)
    assert len(short) <= 2 * edge and np.array_equal(request_features(short, 1), request_features(short, 2))


def test_unknown_feature_versions_are_refused() -> None:
    import pytest

    from serving.model.bundle import BundleError, RoutingSpec

    with pytest.raises(ValueError, match="version 99 is unknown"):
        request_features("hi", 99)
    block = {"input": "request_features", "output": "p_weak_ok", "features": list(REQUEST_FEATURE_NAMES)}
    assert RoutingSpec.from_manifest(Path("b"), {**block, "features_version": 1}).features_version == 1
    assert RoutingSpec.from_manifest(Path("b"), {**block, "features_version": 2}).features_version == 2
    with pytest.raises(BundleError, match="re-train the bundle"):
        RoutingSpec.from_manifest(Path("b"), {**block, "features_version": 3})
