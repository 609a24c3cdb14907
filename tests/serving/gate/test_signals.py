"""The cheap signals: values that the learned gate relies on."""

from __future__ import annotations

import numpy as np
import pytest

from serving.gate.signals import SIGNAL_NAMES, signals, signals_batch


def named(prompt: str, response: str) -> dict[str, float]:
    return dict(zip(SIGNAL_NAMES, signals(prompt, response), strict=True))


def test_refusal_and_short() -> None:
    s = named("Write a poem about the sea.", "I'm sorry, but I can't help with that.")
    assert s["refusal_phrase"] == 1.0
    assert s["short_response"] == 1.0
    ok = named("Write a poem about the sea.", "The sea is wide and grey,\nit folds the light away.")
    assert ok["refusal_phrase"] == 0.0


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("The capital of France is Paris.", 0.0),
        ("The first step is to open the settings and then", 1.0),
        ("- buy milk\n- buy eggs", 0.5),
        ("Done! 🎉", 0.0),
    ],
)
def test_ends_mid_sentence(response: str, expected: float) -> None:
    assert named("x", response)["ends_mid_sentence"] == expected


def test_garbage_signals() -> None:
    soup = " } } } verify }:param } } } withObject }pressive } } } } " * 10
    s = named("Tell me about Broadway actors.", soup)
    assert s["symbol_share"] > 0.2
    assert s["repetition"] > 0.5
    prose = named("x", "Hugh Jackman made his Broadway debut in 1994 and later starred in many films. " * 2)
    assert prose["symbol_share"] < 0.05


def test_odd_fences_and_ratio() -> None:
    s = named("Write code.", "```python\nprint(1)\n")
    assert s["odd_code_fences"] == 1.0
    long_answer = named("Hi", "word " * 500)
    short_answer = named("Explain relativity in depth. " * 20, "Yes.")
    assert long_answer["log_length_ratio"] > 0 > short_answer["log_length_ratio"]
    assert -1.0 <= short_answer["log_length_ratio"] <= 1.0


def test_batch_shape_and_mismatch() -> None:
    out = signals_batch(["a", "b"], ["c", "d"])
    assert out.shape == (2, len(SIGNAL_NAMES)) and out.dtype == np.float32
    with pytest.raises(ValueError):
        signals_batch(["a"], [])


def test_word_overlap_tells_an_answer_to_this_request_from_another() -> None:
    prompt = "How do I make frosting with Crisco shortening?"
    on = named(prompt, "Beat one cup of Crisco shortening with powdered sugar until the frosting is fluffy.")
    off = named(prompt, "The Treaty of Westphalia ended the Thirty Years' War in 1648.")
    assert on["prompt_words_answered"] == pytest.approx(3 / 4)  # make, frosting, crisco, shortening
    assert on["word_jaccard"] > off["word_jaccard"] == 0.0
    assert off["prompt_words_answered"] == 0.0
    assert named("?", "Paris.")["prompt_words_answered"] == 0.0  # no content words: no signal
