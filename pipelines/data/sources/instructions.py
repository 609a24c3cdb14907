"""Label maps for instruction-style sources: Self-Instruct seeds, CoCoNot prompts, AlpacaEval instructions.

Job: these sources carry no task label (except Self-Instruct's `is_classification`), so the task comes
from one documented keyword rule, `instruction_task`, applied to the instruction only (never to the
input it operates on). AlpacaEval also gives `weak_ok`/tier from how cheap generators fared against the
GPT-4 reference. Trade-off: a keyword rule is transparent and testable but coarse; its misfires are
listed as a known weakness in the data card.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from pipelines.data.sources.base import LabelResult, RawRow, RowLabel, Skip, read_jsonl

_CODE = re.compile(
    r"\b(python|javascript|typescript|java|c\+\+|c#|sql|html|css|bash|regex|regular expression|leetcode"
    r"|gdscript|luau|npm|code|coding)\b"
    r"|\b(write|implement|create|generate)\b[^.?!\n]{0,40}\b(program|function)\b",
    re.IGNORECASE,
)
_SUMMARY = re.compile(r"\bsummar(y|ise|ize|ization|isation)\b|\btl;?dr\b", re.IGNORECASE)
_EXTRACT = re.compile(
    r"\bextract\b|\bentit(y|ies)\b|\b(names|words?|phrases?) in the (paragraph|sentence|text)\b",
    re.IGNORECASE,
)
_MATH = re.compile(
    r"\b(math|maths|equations?|arithmetic)\b|\bsolv(e|ing)\b[^.?!\n]{0,40}\b(problems?|system|for [a-z])\b"
    r"|\bcalculat(e|ion)\b|\bconvert(ing)?\s+\d",
    re.IGNORECASE,
)
_WRITING_VERB = re.compile(
    r"^\s*(please\s+)?(write|compose|draft|create|generate|rewrite|paraphrase|expand|make up|come up with"
    r"|brainstorm|reply to|respond to|turn down|complete the (lyrics|paragraph|story|sentence))\b",
    re.IGNORECASE,
)
_WRITING_ARTEFACT = re.compile(
    r"\b(poem|story|stories|essay|haiku|lyrics|letter|e-?mail|joke|slogan|speech|song|script|monologue"
    r"|tweet|blog post|article|plot|novel|limerick|cover letter|review)\b",
    re.IGNORECASE,
)


def instruction_task(instruction: str, *, is_classification: bool = False) -> str:
    """Task of a free-form instruction, first matching rule wins (rules match the instruction only).

    1. `classification` if the source flags it (Self-Instruct `is_classification`);
    2. `code`: names a programming language/tool or says "code", or asks to write/implement a
       program or function;
    3. `summarization`: "summary/summarize/tl;dr";
    4. `extraction`: "extract", "entities", "names/words/phrases in the paragraph/sentence/text";
    5. `math`: "math", "equation", "arithmetic", "calculate", "solve ... problem/system/for x",
       "convert <number>";
    6. `writing`: starts with a writing verb (write, compose, draft, create, generate, rewrite,
       paraphrase, expand, make up, come up with, brainstorm, reply to, ...) or names a written
       artefact (poem, story, essay, letter, email, joke, speech, script, article, review, ...);
    7. otherwise `chat` (questions, advice, explanations, plans, conversation).
    """
    if is_classification:
        return "classification"
    if _CODE.search(instruction):
        return "code"
    if _SUMMARY.search(instruction):
        return "summarization"
    if _EXTRACT.search(instruction):
        return "extraction"
    if _MATH.search(instruction):
        return "math"
    if _WRITING_VERB.search(instruction) or _WRITING_ARTEFACT.search(instruction):
        return "writing"
    return "chat"


# ------------------------------------------------------------------------------------- Self-Instruct


def read_self_instruct(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of `seed_tasks.jsonl`; key: the seed `id` (e.g. seed_task_0)."""
    for row in read_jsonl(raw_dir / "self_instruct_seed" / "seed_tasks.jsonl"):
        yield str(row["id"]), row


def _first_input(instances: object) -> str:
    """The `input` of the first instance; instances may be a list or its Python-literal string."""
    if isinstance(instances, str):
        try:
            instances = ast.literal_eval(instances)
        except (ValueError, SyntaxError):
            return ""
    if isinstance(instances, list) and instances and isinstance(instances[0], dict):
        return str(instances[0].get("input", "")).strip()
    return ""


def _as_bool(value: object) -> bool:
    return value is True or str(value).strip().lower() == "true"


def label_self_instruct(row: RawRow) -> LabelResult:
    """Self-Instruct seed task -> text = instruction + blank line + first instance input (if any).

    task = `instruction_task(instruction, is_classification=...)`; tier `simple`: these are short
    everyday tasks written to be answerable in a few lines, which a cheap model handles.
    """
    instruction = str(row["instruction"]).strip()
    first_input = _first_input(row.get("instances"))
    text = f"{instruction}\n\n{first_input}" if first_input else instruction
    task = instruction_task(instruction, is_classification=_as_bool(row.get("is_classification")))
    return RowLabel(text=text, tier="simple", task=task)


# ------------------------------------------------------------------------------------------ CoCoNot

COCONOT_FILES = (("eval", "data_coconot_eval.jsonl"), ("contrast", "data_coconot_contrast_eval.jsonl"))


def read_coconot(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Prompts of the CoCoNot eval (should refuse) and contrast (should comply) files.

    Key: `eval:<id>` / `contrast:<id>`. The preference file is not used for labels (the response gate
    of issue 5 uses it).
    """
    for prefix, name in COCONOT_FILES:
        for row in read_jsonl(raw_dir / "coconot" / name):
            yield f"{prefix}:{row['id']}", row


def label_coconot(row: RawRow) -> LabelResult:
    """CoCoNot prompt -> `chat`, `simple`.

    Whether to refuse is a policy decision, not a capability one: a cheap model can refuse or answer
    these (contrast prompts are ordinary requests), so they teach the classifier what everyday and
    borderline chat looks like without pushing it to an expensive tier. The build writes the task empty
    (`SourceSpec.empty_heads`): the prompts ask for every kind of thing, not only conversation.
    """
    return RowLabel(text=str(row["prompt"]).strip(), tier="simple", task="chat")


# ------------------------------------------------------------------------------------- AlpacaEval

ALPACA_CHEAP_GENERATORS = ("gpt-3.5-turbo-1106", "claude-instant-1.2")
"""Cheap, fast models of the AlpacaEval sample. NullModel and gpt4_gamed are never used (they game
the judge); the small open models are too weak to say whether *a* cheap tier suffices."""

ALPACA_WEAK_OK_THRESHOLD = 1.5
"""`preference` is 1 + P(judge prefers the generator's output over the GPT-4 reference); >= 1.5 means
the judge rates the cheap answer at least as good as the strong one."""


def read_alpaca_eval(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """One row per instruction of the GPT-4 reference file with `preferences` {cheap generator: float}.

    Key: AlpacaEval `idx`.
    """
    folder = raw_dir / "alpaca_eval_outputs"
    preferences: dict[str, dict[str, float]] = {}
    for generator in ALPACA_CHEAP_GENERATORS:
        for row in read_jsonl(folder / f"{generator}.jsonl"):
            value = row.get("preference")
            if value not in (None, ""):
                preferences.setdefault(str(row["idx"]), {})[generator] = float(value)
    for row in read_jsonl(folder / "reference_gpt4_1106_preview_outputs.jsonl"):
        idx = str(row["idx"])
        yield (
            idx,
            {
                "idx": idx,
                "instruction": row["instruction"],
                "dataset": row.get("dataset"),
                "preferences": preferences.get(idx, {}),
            },
        )


def label_alpaca_eval(row: RawRow) -> LabelResult:
    """AlpacaEval instruction -> task by `instruction_task`; `weak_ok`/tier from cheap generators.

    weak_ok = max(preference of `ALPACA_CHEAP_GENERATORS`) >= 1.5 (a cheap model's answer was judged
    at least as good as GPT-4's); tier `simple` if weak_ok else `complex` (the request needed a capable
    model; these open-ended chat requests never need the strongest tier). Rows without a cheap
    generator's preference are skipped. The build writes the task empty (`SourceSpec.empty_heads`: the
    keyword rule calls 373 of 472 instructions `chat`); tier and `weak_ok` stay.
    """
    prefs = row.get("preferences") or {}
    if not prefs:
        return Skip("no cheap-generator preference")
    weak_ok = max(prefs.values()) >= ALPACA_WEAK_OK_THRESHOLD
    instruction = str(row["instruction"]).strip()
    return RowLabel(
        text=instruction,
        tier="simple" if weak_ok else "complex",
        task=instruction_task(instruction),
        weak_ok=weak_ok,
    )
