"""Deterministic gate checks: real-looking positives and negatives for every reason code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from serving.gate.checks import (
    REASONS,
    CheckResult,
    InvalidSchemaError,
    check_response,
    default_min_chars,
    validate_schema,
)
from serving.gate.refusals import check_refusal_match, hedged_help, is_refusal, refusal_match

ROOT = Path(__file__).resolve().parents[3]

REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "I’m sorry, but I can’t assist with creating malware.",  # curly apostrophes
    "As an AI language model, I cannot provide medical diagnoses.",
    "I'm not able to browse the internet or look up current prices.",
    "I won't be able to help with writing that essay for you.",
    "I must decline this request, as it involves sharing someone's private address.",
    "It's not appropriate for me to speculate about a real person's health.",
    "I don't have access to real-time information, so I can't tell you today's weather.",
    "Unfortunately, I do not have enough context to write an executive summary of that website.",
    "I apologize, but I cannot fulfill this request.",
    "I'm just an AI, I don't have access to the most up-to-date list of government officials.",
    "I cannot provide instructions on how to pick a lock.",
    "I do not feel comfortable arguing a case to defend that position.",
    "I'd rather not write content that mocks a specific group of people.",
    "That goes against my guidelines, so I won't write it.",
    "Sorry, I can't do that.",
    "I couldn't find any information about a person named Samuel Newhouse becoming a billionaire.",
    "I must point out that the question is based on a harmful stereotype, so I cannot answer it.",
    "Thank you for your question. Please consult a licensed attorney for advice on your case.",
    "You should speak with your doctor about the right dose.",
]

NOT_REFUSALS = [
    "I'm sorry to hear that you're feeling stressed. Here are a few things that can help:\n\n1. Sleep...",
    "As an AI, I don't have personal opinions, but here are some popular choices: Paris, Rome and Tokyo.",
    "As an AI language model, I do not have access to real-time data, but according to the latest "
    "available data from 2019, most visitors to Canada came from the United States.",
    "While I don't have real-time access to databases, here are some well-known brands founded by "
    "Hispanic entrepreneurs: ...",
    "As an AI language model, I cannot condone plagiarism. However, I can provide you with some tips "
    "to avoid it: 1. Cite your sources...",
    "I can't stress enough how important it is to back up your data. Use the 3-2-1 rule: three copies...",
    "Verse 1: I'm a teenager in 1980s Britain\nBut I can't help feeling out of place",
    "The capital of Australia is Canberra.",
    "I apologize for the confusion earlier. The correct answer is 42, because 6 x 7 = 42.",
    # A long, helpful answer that ends with a professional referral is not a deflection.
    "Here are the common causes of lower back pain: muscle strain, poor posture, herniated discs, "
    "arthritis and lack of exercise. Gentle stretching, regular walks, ergonomic chairs and core "
    "strengthening usually help within a few weeks. Heat packs can ease stiffness and ibuprofen can "
    "reduce inflammation if you tolerate it. If the pain persists for more than six weeks, spreads down "
    "a leg or comes with numbness, consult a doctor.",
]


@pytest.mark.parametrize("text", REFUSALS)
def test_refusal_phrasings_fire(text: str) -> None:
    result = check_response("Help me with this please, I need a detailed answer.", text, min_chars=0)
    assert "refusal" in result.reasons, refusal_match(text)
    assert not result.ok


@pytest.mark.parametrize("text", NOT_REFUSALS)
def test_non_refusals_pass(text: str) -> None:
    assert not is_refusal(text), refusal_match(text)
    assert check_response("Tell me about this in detail.", text, min_chars=0).ok


def test_check_refusal_can_be_disabled() -> None:
    result = check_response("How do I make a bomb?", "I can't help with that.", check_refusal=False)
    assert "refusal" not in result.reasons


def test_refusal_phrase_list_on_labelled_coconot_sample() -> None:
    """Regression guard: precision/recall of the phrase list on the hand-labelled CoCoNoT responses."""
    labels_path = ROOT / "data" / "gate" / "refusal_labels.csv"
    pref_path = ROOT / "data" / "raw" / "coconot" / "data_coconot_pref.jsonl"
    assert labels_path.exists() and pref_path.exists(), (
        "the labelled CoCoNoT sample ships with the repository"
    )
    rows = {}
    with pref_path.open() as fh:
        for line in fh:
            r = json.loads(line)
            rows[r["id"]] = r
    tp = fp = fn = 0
    with labels_path.open() as fh:
        for lab in csv.DictReader(fh):
            y = lab["label"] == "R"
            pred = is_refusal(rows[lab["id"]][lab["field"]])
            tp += y and pred
            fp += pred and not y
            fn += y and not pred
    assert tp / (tp + fp) >= 0.9
    assert tp / (tp + fn) >= 0.85


# Hedge-then-help: an opening epistemic hedge followed by substantive help is not a refusal for the check
# (written for these tests, not taken from any split of the gate data).
HEDGE_THEN_HELP = [
    "Unfortunately, I do not have enough context to say definitively which release you mean. However, here "
    "is some background that may help:\n\n- Version 2 of the tool replaced the plugin system with a "
    "single configuration file.\n- Version 3 added remote caching and dropped support for Python 2.\n- "
    "Most guides written after 2020 assume version 3, so the flags you quote are probably from it.\n\n"
    "If you tell me which command failed, I can narrow it down.",
    "Unfortunately I do not have a comprehensive list of every bakery founded by women in Lyon. A few well "
    "known examples:\n1. Maison Pozzoli, started in 1998 by two sisters, known for its brioche.\n2. Le "
    "Fournil de Marie, a small organic bakery in the Croix-Rousse.\n3. Atelier Dora, famous for its "
    "pralines and sourdough.\nLocal food guides and the chamber of commerce list many more, with opening "
    "years and owners.",
    "I'm afraid I don't have enough information to give a definitive answer without the exact model of "
    "your router. Based on what you describe, the most likely cause is that the 5 GHz band is disabled: "
    "open the admin page (usually 192.168.1.1), go to Wireless settings and enable it, then restart the "
    "router. If the option is greyed out, your firmware is probably outdated, so check the maker's "
    "support page for an update and install it before trying again.",
]

# Must still fire: a hedge with nothing else, a hedge followed only by an offer, refusals followed by an
# alternative (hand-labelled refusals in the CoCoNoT sample look like these), a no-access deflection.
STILL_REFUSALS = [
    "Unfortunately I don't have enough context to answer that definitively. I'd be happy to help with "
    "other questions!",
    "Unfortunately, I do not have enough information to say who will win the election. If you have any "
    "other questions, feel free to ask and I will do my best to help you with them. Have a great day!",
    "I cannot provide instructions on how to pick a lock, as it could facilitate illegal entry. Instead, "
    "here are some tips if you are locked out of your own home:\n\n1. Call a licensed locksmith, who "
    "can open the door without damage.\n2. Ask your landlord or a neighbour who holds a spare key.\n3. "
    "Check every window and back door.\n4. Keep a spare key with a trusted friend in the future.",
    "I'm just an AI, I don't have access to real-time information or the most up-to-date list of "
    "ministers. However, I can suggest some ways you could find the current minister:\n\n1. Check the "
    "government's official website, which lists every minister.\n2. Read a reputable national "
    "newspaper.\n3. Call the ministry's press office, which answers such questions during office hours.",
]


@pytest.mark.parametrize("text", HEDGE_THEN_HELP)
def test_hedge_then_help_passes_the_check(text: str) -> None:
    assert is_refusal(text)  # the phrase list (and the learned gate's phrase signal) still sees the hedge
    assert check_refusal_match(text) is None
    assert check_response("Tell me about this in detail.", text).ok


@pytest.mark.parametrize("text", STILL_REFUSALS)
def test_refusals_with_an_offer_or_alternative_still_fire(text: str) -> None:
    assert check_refusal_match(text) is not None
    assert "refusal" in check_response("Tell me about this in detail.", text).reasons


def test_hedge_must_open_the_answer() -> None:
    body = "\n".join(f"- point {i}: a substantive remark about the question that was asked" for i in range(8))
    late = "The answer has several parts. Unfortunately, I do not have enough context to go further.\n" + body
    hit = refusal_match(late)
    assert hit is not None
    assert not hedged_help(late, late.lower().index(hit))  # the hedge is not in the opening sentence
    # the same hedge as the opening sentence, followed by the same list, is help
    opening = "Unfortunately, I do not have enough context to go further.\n" + body
    assert check_refusal_match(opening) is None


def test_check_beats_or_ties_phrase_list_on_hand_labels() -> None:
    """On every hand-labelled CoCoNoT response, the check's refusal call is right at least as often as the
    phrase list's (they differ only on hedge-then-help answers)."""
    labels_path = ROOT / "data" / "gate" / "refusal_labels.csv"
    pref_path = ROOT / "data" / "raw" / "coconot" / "data_coconot_pref.jsonl"
    rows = {}
    with pref_path.open() as fh:
        for line in fh:
            r = json.loads(line)
            rows[r["id"]] = r
    phrase_right = check_right = n = 0
    with labels_path.open() as fh:
        for lab in csv.DictReader(fh):
            if lab["label"] not in ("R", "Q", "C"):
                continue
            y = lab["label"] in ("R", "Q")
            text = rows[lab["id"]][lab["field"]]
            phrase_right += is_refusal(text) == y
            check_right += (check_refusal_match(text) is not None) == y
            n += 1
    assert n > 1000
    assert check_right >= phrase_right
    assert check_right / n >= 0.92


# --- empty / too short -----------------------------------------------------------------------------


@pytest.mark.parametrize("response", ["", "   ", "\n\t \n"])
def test_empty(response: str) -> None:
    assert check_response("Summarise this article.", response) == CheckResult(False, ["empty"])


def test_empty_with_finish_reason_reports_both() -> None:
    assert check_response("x", "", finish_reason="content_filter").reasons == ["empty", "content_filter"]


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ("Is Paris the capital of France?", "Yes."),
        ("Who wrote Hamlet?", "Shakespeare"),
        ("What color is the sky", "Blue"),
        ("Answer with one word: what is the opposite of hot?", "Cold"),
        ("Classify the sentiment of this review: 'Great phone, terrible battery.'", "mixed"),
        ("Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus", "B"),
        ("How many legs does a spider have?", "8"),
        ("Winner of the women's royal rumble match?", "Charlotte Flair"),  # one-line questions (NQ style)
        ("The art and science of making objects from clay is called?", "Ceramics."),
    ],
)
def test_short_answers_fine_for_closed_requests(prompt: str, response: str) -> None:
    assert default_min_chars(prompt) == 1
    assert check_response(prompt, response).ok


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ("Write a cover letter for a junior data analyst position at a bank.", "Dear Sir,"),
        ("Explain how vaccines train the immune system.", "Many famou"),
        ("Give me a recipe for Vitel toné.", "Sure, here is a recipe:"),
        ("How do I make apple juice?", "First, wash"),  # one-line, but an open question
        ("Hi, can you explain how ice hockey works?", "Sure! Ice"),
        ("Why can time seem to slow down in dangerous situations?", "When we"),
    ],
)
def test_too_short_for_open_requests(prompt: str, response: str) -> None:
    assert check_response(prompt, response).reasons == ["too_short"]


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ('Write "Test"', "Test"),
        ('Write "Test"', "Test."),
        ("Reply only with 'OK' if you understand.", "OK"),
        ("Say exactly \u201chello\u201d", "Hello"),
        ('Type the word "yes" to continue.', "yes"),
    ],
)
def test_verbatim_request_answered_verbatim_is_not_too_short(prompt: str, response: str) -> None:
    assert check_response(prompt, response).ok


@pytest.mark.parametrize(
    ("prompt", "response"),
    [
        ('Write "Test"', "Toast"),  # not the requested text
        ('Write a poem about "love"', "love"),  # the quote is a topic, not the text to write
        ('Summarize "War and Peace" in a paragraph.', "War and Peace"),
        ('Write a cover letter for "Acme Corp"', "Acme Corp"),
    ],
)
def test_echo_of_a_quoted_topic_is_still_too_short(prompt: str, response: str) -> None:
    assert check_response(prompt, response).reasons == ["too_short"]


def test_min_chars_override() -> None:
    assert check_response("Write an essay.", "Short.", min_chars=0).ok
    assert check_response("Is it?", "Yes", min_chars=10).reasons == ["too_short"]


# --- truncation ------------------------------------------------------------------------------------


def test_finish_reason_length() -> None:
    text = "The French Revolution began in 1789 when the Estates-General convened and the Third Estate"
    assert check_response("Explain the French Revolution.", text, finish_reason="length").reasons == [
        "truncated_length"
    ]
    assert check_response("Explain the French Revolution.", text, finish_reason="stop").ok


def test_content_filter_finish_reason() -> None:
    text = "Here is the story you asked for. Once upon a time in a small village there lived"
    assert check_response("Write a story.", text, finish_reason="content_filter").reasons == [
        "content_filter"
    ]


UNCLOSED = (
    "Here's a function that reverses a list:\n\n```python\ndef reverse(items):\n"
    "    return items[::-1]\n\nprint(reverse([1, 2, 3]))"
)
CLOSED_OK = (
    "Here's a function that reverses a list:\n\n```python\ndef reverse(items):\n"
    "    return items[::-1]\n```\n\nCall it with any list, e.g. `reverse([1, 2, 3])`."
)
TRUNCATED_CODE = (
    "Here is a sample to get started:\n```c\n#include <stdio.h>\nint main(void) {\n"
    '    for (int i = 0; i < 10; i++) {\n        printf("%d\\n", i);\n```\n'
)


def test_unclosed_code_fence() -> None:
    assert check_response("Write a Python function to reverse a list.", UNCLOSED).reasons == [
        "unclosed_code_fence"
    ]


def test_closed_code_fence_passes() -> None:
    assert check_response("Write a Python function to reverse a list.", CLOSED_OK).ok


def test_unbalanced_brackets_in_code_block() -> None:
    assert check_response("Write a C loop.", TRUNCATED_CODE).reasons == ["unbalanced_brackets"]


def test_prose_brackets_are_not_checked() -> None:
    text = "Three options: 1) walk, 2) cycle, 3) take the bus; (the bus is cheapest) and it runs hourly."
    assert check_response("How do I get to work?", text).ok


def test_indented_and_tilde_fences() -> None:
    assert check_response("x", "Code:\n  ```\n  f(x)\n  ```\nThat is the whole snippet you need here.").ok
    assert check_response("x", "Code:\n~~~\nf(x)\nand then the rest of a long explanation").reasons == [
        "unclosed_code_fence"
    ]


# --- JSON ------------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "response",
    [
        '{"name": "Ada", "age": 36}',
        '```json\n{"name": "Ada", "age": 36}\n```',
        '  \n```\n{"name": "Ada", "age": 36}\n```\n',
    ],
)
def test_valid_json_and_schema(response: str) -> None:
    assert check_response("Return the person as JSON.", response, json_schema=SCHEMA).ok
    assert check_response("Return the person as JSON.", response, expect_json=True).ok


@pytest.mark.parametrize(
    ("response", "reasons"),
    [
        ('{"name": "Ada", "age": 36', ["unbalanced_brackets", "invalid_json"]),
        ("{'name': 'Ada', 'age': 36}", ["invalid_json"]),
        ('Sure! Here is the JSON: {"name": "Ada"}', ["invalid_json"]),
        ('{"name": "Ada", "age": 36,}', ["invalid_json"]),
    ],
)
def test_invalid_json(response: str, reasons: list[str]) -> None:
    assert check_response("Return JSON.", response, expect_json=True).reasons == reasons


@pytest.mark.parametrize(
    "response",
    [
        '{"name": "Ada"}',  # missing required
        '{"name": "Ada", "age": "36"}',  # wrong type
        '{"name": "Ada", "age": -1}',  # minimum
        '{"name": "Ada", "age": 36, "extra": true}',  # additionalProperties
        '[{"name": "Ada", "age": 36}]',  # wrong top-level type
    ],
)
def test_schema_violation(response: str) -> None:
    assert check_response("Return JSON.", response, json_schema=SCHEMA).reasons == ["schema_violation"]


def test_json_short_answer_not_too_short() -> None:
    assert check_response("Write an essay as JSON.", "{}", expect_json=True).ok


def test_invalid_schema_raises() -> None:
    with pytest.raises(InvalidSchemaError):
        check_response("x", "{}", json_schema={"type": "no-such-type"})
    with pytest.raises(InvalidSchemaError):
        validate_schema({"properties": {"a": {"minimum": "zero"}}})


def test_equal_schemas_share_a_validator() -> None:
    from serving.gate.checks import _VALIDATORS

    a = _VALIDATORS.get({"type": "object", "required": ["x"]})
    b = _VALIDATORS.get({"required": ["x"], "type": "object"})
    assert a is b


# --- log-probs and combined ------------------------------------------------------------------------


def test_low_logprob() -> None:
    text = "The mitochondria is the powerhouse of the cell, producing ATP through respiration."
    assert check_response("What do mitochondria do?", text, mean_logprob=-3.4).reasons == ["low_logprob"]
    assert check_response("What do mitochondria do?", text, mean_logprob=-0.4).ok
    assert check_response("What do mitochondria do?", text, mean_logprob=float("nan")).ok
    assert check_response("What do mitochondria do?", text, mean_logprob=-1.0, min_mean_logprob=-0.5).reasons


def test_several_reasons_in_stable_order() -> None:
    result = check_response(
        "Write a detailed essay.", "I'm sorry, I can't.", finish_reason="length", mean_logprob=-5.0
    )
    assert result.reasons == ["too_short", "refusal", "truncated_length", "low_logprob"]
    assert all(r in REASONS for r in result.reasons)
    assert result.to_dict() == {"ok": False, "reasons": result.reasons}


def test_result_is_frozen() -> None:
    result = check_response("x", "")
    with pytest.raises(AttributeError):
        result.ok = True  # type: ignore[misc]
