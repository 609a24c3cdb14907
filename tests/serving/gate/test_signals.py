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


HEDGE_THEN_HELP = (
    "Unfortunately, I do not have enough context to say definitively which release you mean. However, here "
    "is some background that may help:\n\n- Version 2 replaced the plugin system with one configuration "
    "file.\n- Version 3 added remote caching and dropped Python 2.\n- Guides written after 2020 assume "
    "version 3, so the flags you quote are probably from it.\n\nTell me which command failed and I can "
    "narrow it down."
)


def test_refusal_signal_v3_is_the_checks_call_and_v2_the_phrase_list() -> None:
    prompt = "Which release added remote caching?"
    i = SIGNAL_NAMES.index("refusal_phrase")
    assert signals(prompt, HEDGE_THEN_HELP, version=3)[i] == 0.0  # hedge then help: not a refusal
    assert signals(prompt, HEDGE_THEN_HELP, version=2)[i] == 1.0  # what v2 bundles were trained on
    refusal = "I'm sorry, but I can't help with that."
    assert signals(prompt, refusal, version=2)[i] == signals(prompt, refusal, version=3)[i] == 1.0
    both = signals_batch([prompt, prompt], [HEDGE_THEN_HELP, refusal], version=2)
    assert both[:, i].tolist() == [1.0, 1.0]
    assert signals_batch([prompt], [HEDGE_THEN_HELP])[0, i] == 0.0  # the default is the current version


def test_unknown_signals_version_is_refused() -> None:
    with pytest.raises(ValueError, match="v1"):
        signals("q", "a", version=1)
