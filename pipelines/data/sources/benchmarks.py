"""Label maps for benchmark sources: MMLU (RouteLLM outcomes), GSM8K, MATH, SVAMP, HumanEval, MBPP,
NQ-open and TruthfulQA.

Job: turn one raw benchmark row into the request a user would send plus `tier`/`task` (and `weak_ok`
where the source records per-model outcomes). Every rule lives in one small pure function with the
reasoning in its docstring; the data card (data/README.md) repeats them. Trade-off: apart from MMLU
(measured model outcomes), tiers are proxies for difficulty (step counts, levels, source), chosen by
judgement and stated, not measured per model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pipelines.data.sources.base import (
    LabelResult,
    RawRow,
    RowLabel,
    Skip,
    read_csv,
    read_json_list,
    read_jsonl,
)

# --------------------------------------------------------------------------------------------- MMLU

MMLU_WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
MMLU_STRONG_MODEL = "gpt-4-1106-preview"

MMLU_MATH_SUBJECTS = frozenset(
    {
        "abstract_algebra",
        "college_mathematics",
        "elementary_mathematics",
        "high_school_mathematics",
        "high_school_statistics",
    }
)
"""Subjects whose questions are mathematics: task `math`. Every other subject is `factual_qa`."""

MMLU_FORMAL_SUBJECTS = MMLU_MATH_SUBJECTS | frozenset(
    {
        "college_physics",
        "high_school_physics",
        "college_chemistry",
        "high_school_chemistry",
        "college_computer_science",
        "high_school_computer_science",
        "machine_learning",
        "formal_logic",
        "electrical_engineering",
        "econometrics",
        "professional_accounting",
    }
)
"""Quantitative / formal subjects: a question the weak model misses here needs multi-step derivation
(calculation, proof, logic), so it is `reasoning`; elsewhere a weak-model miss is usually missing
knowledge, which a capable model (`complex`) has."""

_ANSWER_SUFFIX = re.compile(r"\s*Answer:\s*$")


def read_routellm_mmlu(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of every `mmlu_<subject>.csv`, in file-name order; adds `subject` to each row.

    Key: `<subject>:<row index in its file>`.
    """
    folder = raw_dir / "routellm_mmlu" / "mmlu_responses"
    paths = sorted(folder.glob("mmlu_*.csv"))
    if not paths:
        raise FileNotFoundError(f"no mmlu_*.csv files in {folder}")
    for path in paths:
        subject = path.stem.removeprefix("mmlu_")
        for index, row in enumerate(read_csv(path)):
            yield f"{subject}:{index}", {**row, "subject": subject}


def _outcome(value: str) -> bool | None:
    return {"True": True, "False": False}.get(value.strip())


def label_routellm_mmlu(row: RawRow) -> LabelResult:
    """MMLU question with RouteLLM's correctness of a weak (Mixtral-8x7B) and a strong (GPT-4) model.

    - text: the prompt (question + lettered options) without RouteLLM's trailing "Answer:" cue.
    - tier: weak right -> `simple` (the cheap model suffices); weak wrong and strong right -> `complex`,
      or `reasoning` for quantitative/formal subjects (`MMLU_FORMAL_SUBJECTS`); both wrong ->
      `reasoning` (harder than what the strong model reliably gets; see the data card: some of these
      are MMLU label errors).
    - task: `math` for `MMLU_MATH_SUBJECTS`, else `factual_qa`.
    - weak_ok: weak_correct >= strong_correct (True also when both fail: the strong model is no better).
    Rows with an outcome other than "True"/"False" are skipped.
    """
    weak, strong = _outcome(row[MMLU_WEAK_MODEL]), _outcome(row[MMLU_STRONG_MODEL])
    if weak is None or strong is None:
        return Skip("unparseable model outcome")
    subject = row["subject"]
    text = _ANSWER_SUFFIX.sub("", row["prompt"]).strip()
    task = "math" if subject in MMLU_MATH_SUBJECTS else "factual_qa"
    if weak:
        tier = "simple"
    elif strong:
        tier = "reasoning" if subject in MMLU_FORMAL_SUBJECTS else "complex"
    else:
        tier = "reasoning"
    return RowLabel(text=text, tier=tier, task=task, weak_ok=weak >= strong)


def mmlu_stratum(row: RawRow, label: RowLabel) -> str:
    """Sampling cell for MMLU: the outcome pattern, so rare outcomes are not drowned by weak-right rows."""
    return f"weak={row[MMLU_WEAK_MODEL].strip()},strong={row[MMLU_STRONG_MODEL].strip()}"


# -------------------------------------------------------------------------------------------- GSM8K

GSM8K_SIMPLE_MAX_STEPS = 2
GSM8K_COMPLEX_MAX_STEPS = 4


def gsm8k_steps(answer: str) -> int:
    """Worked-solution steps: non-empty lines before the final `#### <answer>` line."""
    return sum(1 for line in answer.split("####")[0].splitlines() if line.strip())


def read_gsm8k(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of `train.jsonl`; key: the 0-based line index."""
    for index, row in enumerate(read_jsonl(raw_dir / "gsm8k_train" / "train.jsonl")):
        yield str(index), row


def label_gsm8k(row: RawRow) -> LabelResult:
    """GSM8K word problem -> task `math`, tier from the reference solution's step count.

    <= 2 steps -> `simple`; 3-4 -> `complex`; >= 5 -> `reasoning`. Why: one- and two-step arithmetic is
    within reach of small models, while their errors compound with every extra step (GSM8K accuracy
    of small models falls steadily with solution length), so long chains are sent to the strongest
    tier. Counts in the shipped file: 2 steps 1,961; 3-4 steps 3,808; 5-9 steps 1,704.
    The build writes this tier empty (`SourceSpec.empty_heads`: the step count disagrees with the hand
    guideline's reading of word problems); it still names the sampling cell.
    """
    steps = gsm8k_steps(row["answer"])
    if steps == 0:
        return Skip("no solution steps")
    if steps <= GSM8K_SIMPLE_MAX_STEPS:
        tier = "simple"
    elif steps <= GSM8K_COMPLEX_MAX_STEPS:
        tier = "complex"
    else:
        tier = "reasoning"
    return RowLabel(text=row["question"].strip(), tier=tier, task="math")


# --------------------------------------------------------------------------------------------- MATH

_LEVEL = re.compile(r"^Level\s+([1-5])$")


def read_math_levels(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of `math_1000.jsonl`; key: the 0-based line index."""
    for index, row in enumerate(read_jsonl(raw_dir / "math_levels" / "math_1000.jsonl")):
        yield str(index), row


def label_math_levels(row: RawRow) -> LabelResult:
    """Competition math (MATH) -> task `math`; Level 1-3 -> `complex`, Level 4-5 -> `reasoning`.

    Even Level 1 competition problems need a capable model (never `simple`); Levels 4-5 are where
    strong models still fail often, so they get the strongest tier. Unparseable levels are skipped.
    """
    match = _LEVEL.match(str(row.get("level", "")).strip())
    if match is None:
        return Skip("unparseable level")
    tier = "complex" if int(match.group(1)) <= 3 else "reasoning"
    return RowLabel(text=row["problem"].strip(), tier=tier, task="math")


# -------------------------------------------------------------------------------------------- SVAMP


def read_svamp(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of `math_word_problems/svamp.jsonl` (the only file of that folder we ship); key: SVAMP `ID`."""
    for row in read_jsonl(raw_dir / "math_word_problems" / "svamp.jsonl"):
        yield str(row["ID"]), row


def label_svamp(row: RawRow) -> LabelResult:
    """SVAMP one/two-operation word problem -> `math`, `simple`; text = Body + " " + Question."""
    text = f"{row['Body'].strip()} {row['Question'].strip()}".strip()
    return RowLabel(text=text, tier="simple", task="math")


# ------------------------------------------------------------------------------------------ HumanEval


def read_humaneval(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of `HumanEval.jsonl.gz`; key: `task_id` (e.g. HumanEval/0)."""
    for row in read_jsonl(raw_dir / "humaneval" / "HumanEval.jsonl.gz"):
        yield str(row["task_id"]), row


def label_humaneval(row: RawRow) -> LabelResult:
    """HumanEval prompt (signature + docstring to complete) -> `code`, `complex`.

    Each problem is a self-contained algorithm with hidden edge cases; small models pass well under
    half of them, so a capable model is the safe default.
    """
    return RowLabel(text=row["prompt"].strip("\n"), tier="complex", task="code")


# --------------------------------------------------------------------------------------------- MBPP


def read_mbpp(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of `sanitized-mbpp.json`; key: `task_id`."""
    for row in read_json_list(raw_dir / "mbpp" / "sanitized-mbpp.json"):
        yield str(row["task_id"]), row


def label_mbpp(row: RawRow) -> LabelResult:
    """MBPP one-sentence programming task -> `code`, `simple`.

    text = the prompt plus its first test assertion (MBPP's own prompting shows tests; the assertion
    fixes the function name and signature). MBPP was written to be solvable by entry-level programmers
    and cheap models solve most of it, unlike HumanEval (`complex`). Kept by the label ablation: leaving
    it empty did not raise agreement with the hand rows (`evals.eval.label_ablation`).
    """
    tests = row.get("test_list") or []
    text = row["prompt"].strip()
    if tests:
        text = f"{text}\nYour code should pass this test:\n{str(tests[0]).strip()}"
    return RowLabel(text=text, tier="simple", task="code")


# ------------------------------------------------------------------------------------------ NQ-open

NQ_FILES = ("NQ-open.dev.jsonl", "NQ-open.efficientqa.dev.1.1.jsonl")


def read_nq_open(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of both NQ-open files; key: `dev:<line>` or `efficientqa:<line>`."""
    for name, prefix in zip(NQ_FILES, ("dev", "efficientqa"), strict=True):
        for index, row in enumerate(read_jsonl(raw_dir / "nq_open" / name)):
            yield f"{prefix}:{index}", row


def label_nq_open(row: RawRow) -> LabelResult:
    """Real search question with a short answer -> `factual_qa`, `simple` (one fact, one lookup)."""
    return RowLabel(text=row["question"].strip(), tier="simple", task="factual_qa")


# --------------------------------------------------------------------------------------- TruthfulQA


def read_truthfulqa(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of `TruthfulQA.csv`; key: the 0-based data row index."""
    for index, row in enumerate(read_csv(raw_dir / "truthfulqa" / "TruthfulQA.csv")):
        yield str(index), row


def label_truthfulqa(row: RawRow) -> LabelResult:
    """TruthfulQA question -> `factual_qa`, `complex`.

    The questions look simple but were written so that the popular (wrong) answer is tempting; small
    models repeat the misconception far more often than capable ones, so they need the capable tier.
    The build writes this tier empty (`SourceSpec.empty_heads`): the texts read like one-fact lookups,
    and 817 of them all `complex` taught the tier head to send one-fact lookups to a capable model.
    """
    return RowLabel(text=row["Question"].strip(), tier="complex", task="factual_qa")
