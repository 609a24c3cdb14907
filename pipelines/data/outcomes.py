"""Routing targets from measured per-model outcomes: model classes, graded `weak_ok`, outcome-ladder tier.

Job: the one place that says how "which models answered this request well" becomes a routing target.
Every outcome source (`OUTCOME_SOURCES`) gives, per request, a quality in [0, 1] for each of several
models (correctness for multiple choice and benchmarks, a judge's preference for open-ended chat).
Models are grouped into three documented classes (`MODEL_CLASSES`):

- `small`: open models of <= ~9B parameters (cheap, fast, self-hostable on one GPU);
- `mid`: 12B-141B open models and the cheaper hosted models (gpt-3.5-turbo, claude-instant,
  gemini-flash, Mixtral);
- `frontier`: the strongest hosted models of their time (gpt-4 / gpt-4o, gemini-1.5-pro).

Sizes and prices are the sources' own (e.g. `data/raw/llmrouter_scores/model_prices.json`); where a
source has no frontier model, its strongest class stands in as "strong" and this is written down.
Models that fail a source's answer format rather than its questions (the two `llama3-chatqa` models
of llmrouter) and models that game the judge are left out of every class.

Targets, per row:
- `weak_quality` / `strong_quality`: mean quality of the source's routing pair (`ROUTING_PAIRS`:
  the cheap class and the strong class). These are what APGR scores a router against.
- `p_weak_ok` (graded weak_ok): over every (cheap model, strong model) pair of the two classes, the
  share of pairs where the cheap model's quality is >= the strong model's. With one model per class
  and 0/1 correctness this is exactly the old boolean rule `weak_correct >= strong_correct`.
- `weak_ok`: `p_weak_ok >= 0.5`.
- `difficulty`: 1 - the mean quality of *every* classed model of the source measured on the row (10
  models for MMLU-Pro, 6 for LLMRouter, 15 for AlpacaEval, 2 for RouteLLM MMLU): a graded item
  difficulty, less noisy than one pair's `weak_ok`. With every model measured on every item this ranks
  items exactly as a 1-parameter IRT (Rasch) difficulty does (an item's total score is sufficient for its
  Rasch difficulty), so no IRT fit is needed.
- `ladder_tier`: the cheapest class whose mean quality is within `LADDER_TOLERANCE` of the strongest
  class's: `small` -> `simple`, `mid` -> `complex`, `frontier` -> `reasoning`. A request that even the
  strongest class mostly fails (mean quality < `UNSOLVED_QUALITY`) is `reasoning`: nothing cheaper is
  known to work, and the strongest model is the best bet.

Trade-offs: class means treat the models of a class as interchangeable (a deployment that runs one
specific cheap model should prefer `p_weak_ok` of that model's pair); a single sample per model makes
binary outcomes noisy, which the graded target smooths; judge preferences (AlpacaEval) carry the
judge's length and style bias.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.data.sources.base import read_csv, read_jsonl
from pipelines.data.sources.instructions import instruction_task

if TYPE_CHECKING:
    import pandas as pd

CLASSES: tuple[str, ...] = ("small", "mid", "frontier")
CLASS_TIER: dict[str, str] = {"small": "simple", "mid": "complex", "frontier": "reasoning"}
LADDER_TOLERANCE = 0.1
UNSOLVED_QUALITY = 0.5
OUTCOMES_NAME = "outcomes.parquet"

MODEL_CLASSES: dict[str, dict[str, tuple[str, ...]]] = {
    "mmlu_pro_outcomes": {
        "small": (
            "Qwen1.5-7B-Chat",
            "Mistral-7B-Instruct-v0.2",
            "Phi-3-mini-4k-instruct",
            "Llama-3.1-8B-Instruct",
        ),
        "mid": (
            "Mixtral-8x7B-Instruct-v0.1",
            "Qwen1.5-72B-Chat",
            "Llama-3.1-70B-Instruct",
            "gemini-1.5-flash-002",
        ),
        "frontier": ("gemini-1.5-pro-002", "gpt-4o-2024-05-13"),
    },
    "llmrouter_scores": {
        # codegemma-7b is a code-completion model (not a general cheap choice); the chatqa models fail
        # the answer format almost everywhere (see its SOURCE.md): all three are left out
        "small": (
            "qwen2.5-7b-instruct",
            "llama-3.1-8b-instruct",
            "gemma-2-9b-it",
            "mistral-7b-instruct-v0.3",
        ),
        "mid": ("llama-3.1-nemotron-51b-instruct", "llama-3.3-nemotron-super-49b-v1"),
    },
    "alpaca_eval_preferences": {
        # quality = judge preference - 1 (P(answer beats the GPT-4-1106 reference)); the reference
        # itself is 0.5 by construction. Only the plain (not _concise/_verbose) variants are used.
        "small": (
            "FuseChat-Gemma-2-9B-Instruct",
            "FuseChat-Llama-3.1-8B-Instruct",
            "FuseChat-Qwen-2.5-7B-Instruct",
            "FuseChat-Llama-3.2-3B-Instruct",
            "OpenHermes-2.5-Mistral-7B",
            "gemma-7b-it",
            "gemma-2b-it",
            "vicuna-7b-v1.5",
            "chatglm2-6b",
        ),
        "mid": (
            "gpt-3.5-turbo-1106",
            "claude-instant-1.2",
            "Qwen-14B-Chat",
            "Mixtral-8x7B-Instruct-v0.1_concise",
            "vicuna-13b-v1.5",
        ),
        # the judge compares every answer with GPT-4-1106's, so that reference is the frontier class
        "frontier": ("gpt4_1106_preview",),
    },
    "routellm_mmlu": {
        "mid": ("mistralai/Mixtral-8x7B-Instruct-v0.1",),
        "frontier": ("gpt-4-1106-preview",),
    },
}
"""Source -> class -> models. Each class lists only models the source measured."""

ROUTING_PAIRS: dict[str, tuple[str, str]] = {
    "mmlu_pro_outcomes": ("small", "frontier"),
    "llmrouter_scores": ("small", "mid"),
    "alpaca_eval_preferences": ("small", "frontier"),
    "routellm_mmlu": ("mid", "frontier"),
}
"""Source -> (cheap class, strong class) that `weak_ok`, `p_weak_ok` and APGR refer to."""

LICENCES: dict[str, tuple[str, bool]] = {
    "mmlu_pro_outcomes": ("Apache-2.0", True),
    "llmrouter_scores": ("MIT", True),
    "alpaca_eval_preferences": ("CC-BY-NC-4.0", False),
    "routellm_mmlu": ("Apache-2.0", True),
}
"""Source -> (licence of the rows, commercial use allowed)."""

_MMLU_PRO_MATH = {"math"}
_LLMROUTER_TASK = {
    "mbpp": "code",
    "human_eval": "code",
    "math": "math",
    "agentverse-logicgrid": "math",
    "commongen": "writing",
}
_ROUTELLM_MATH = {
    "abstract_algebra",
    "college_mathematics",
    "elementary_mathematics",
    "high_school_mathematics",
    "high_school_statistics",
}


@dataclass(frozen=True)
class OutcomeRow:
    """One request with each measured model's quality in [0, 1]."""

    id: str
    text: str
    source: str
    task: str
    domain: str
    quality: Mapping[str, float]


def class_quality(quality: Mapping[str, float], models: tuple[str, ...]) -> float | None:
    """Mean quality of the models of one class that were measured on this row (None: none were)."""
    values = [quality[m] for m in models if m in quality]
    return sum(values) / len(values) if values else None


def p_weak_ok(quality: Mapping[str, float], cheap: tuple[str, ...], strong: tuple[str, ...]) -> float | None:
    """Share of (cheap model, strong model) pairs where the cheap one scored >= the strong one."""
    pairs = [
        (quality[c], quality[s]) for c, s in itertools.product(cheap, strong) if c in quality and s in quality
    ]
    if not pairs:
        return None
    return sum(1.0 for c, s in pairs if c >= s) / len(pairs)


def item_difficulty(quality: Mapping[str, float], classes: Mapping[str, tuple[str, ...]]) -> float | None:
    """1 - mean quality over every model of `classes` measured on the row (None: none was)."""
    models = {m for members in classes.values() for m in members}
    mean = class_quality(quality, tuple(sorted(models)))
    return None if mean is None else 1.0 - mean


def ladder_tier(
    quality: Mapping[str, float],
    classes: Mapping[str, tuple[str, ...]],
    *,
    tolerance: float = LADDER_TOLERANCE,
    unsolved: float = UNSOLVED_QUALITY,
) -> str | None:
    """Tier of the cheapest class within `tolerance` of the strongest class (module docstring)."""
    means = [(c, class_quality(quality, classes[c])) for c in CLASSES if c in classes]
    measured = [(c, q) for c, q in means if q is not None]
    if not measured:
        return None
    best = measured[-1][1]
    if best < unsolved:
        return "reasoning"
    for name, q in measured:
        if q >= best - tolerance:
            return CLASS_TIER[name]
    return CLASS_TIER[measured[-1][0]]  # pragma: no cover  (the strongest class always qualifies)


def _options_text(question: str, options: list[str]) -> str:
    letters = "ABCDEFGHIJ"
    lines = [question.strip(), *(f"{letters[i]}. {str(o).strip()}" for i, o in enumerate(options))]
    return "\n".join(lines)


def read_mmlu_pro(raw_dir: Path) -> Iterator[OutcomeRow]:
    """MMLU-Pro: question + lettered options; quality = 1.0 if the model's answer letter was right."""
    for row in read_jsonl(raw_dir / "mmlu_pro_outcomes" / "mmlu_pro_outcomes.jsonl.gz"):
        category = str(row["category"])
        yield OutcomeRow(
            id=f"mmlu_pro_outcomes:{row['question_id']}",
            text=_options_text(str(row["question"]), list(row["options"])),
            source="mmlu_pro_outcomes",
            task="math" if category in _MMLU_PRO_MATH else "factual_qa",
            domain=category,
            quality={m: 1.0 if ok else 0.0 for m, ok in row["correct"].items()},
        )


def read_llmrouter(raw_dir: Path) -> Iterator[OutcomeRow]:
    """LLMRouter: question as given; quality = the source's per-model score in [0, 1]."""
    for index, row in enumerate(read_jsonl(raw_dir / "llmrouter_scores" / "llmrouter_scores.jsonl")):
        task_name = str(row["task_name"])
        yield OutcomeRow(
            id=f"llmrouter_scores:{index}",
            text=str(row["question"]).strip(),
            source="llmrouter_scores",
            task=_LLMROUTER_TASK.get(task_name, "factual_qa"),
            domain=task_name,
            quality={m: float(v) for m, v in row["scores"].items()},
        )


def read_alpaca_preferences(raw_dir: Path) -> Iterator[OutcomeRow]:
    """AlpacaEval: instruction; quality = judge preference - 1 (P(better than the GPT-4 reference))."""
    path = raw_dir / "alpaca_eval_preferences" / "alpaca_eval_preferences.jsonl"
    for index, row in enumerate(read_jsonl(path)):
        text = str(row["instruction"]).strip()
        yield OutcomeRow(
            id=f"alpaca_eval_preferences:{index}",
            text=text,
            source="alpaca_eval_preferences",
            task=instruction_task(text),
            domain=str(row["dataset"]),
            quality={
                m: min(1.0, max(0.0, float(v) - 1.0)) for m, v in row["preference"].items() if v is not None
            },
        )


def read_routellm(raw_dir: Path) -> Iterator[OutcomeRow]:
    """RouteLLM MMLU: prompt without the trailing `Answer:`; quality = correctness of Mixtral / GPT-4."""
    folder = raw_dir / "routellm_mmlu" / "mmlu_responses"
    for path in sorted(folder.glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        for index, row in enumerate(read_csv(path)):
            quality: dict[str, float] = {}
            for model in MODEL_CLASSES["routellm_mmlu"]["mid"] + MODEL_CLASSES["routellm_mmlu"]["frontier"]:
                value = str(row.get(model, "")).strip()
                if value in ("True", "False"):
                    quality[model] = 1.0 if value == "True" else 0.0
            prompt = str(row["prompt"]).rstrip()
            prompt = prompt.removesuffix("Answer:").rstrip()
            yield OutcomeRow(
                id=f"routellm_mmlu:{subject}:{index}",
                text=prompt,
                source="routellm_mmlu",
                task="math" if subject in _ROUTELLM_MATH else "factual_qa",
                domain=subject,
                quality=quality,
            )


READERS = {
    "mmlu_pro_outcomes": read_mmlu_pro,
    "llmrouter_scores": read_llmrouter,
    "alpaca_eval_preferences": read_alpaca_preferences,
    "routellm_mmlu": read_routellm,
}
OUTCOME_SOURCES: tuple[str, ...] = tuple(READERS)


def targets(row: OutcomeRow) -> dict[str, Any] | None:
    """The routing targets of one row (module docstring), or None when its pair was not measured."""
    classes = MODEL_CLASSES[row.source]
    cheap, strong = ROUTING_PAIRS[row.source]
    weak_q = class_quality(row.quality, classes[cheap])
    strong_q = class_quality(row.quality, classes[strong])
    p = p_weak_ok(row.quality, classes[cheap], classes[strong])
    if weak_q is None or strong_q is None or p is None:
        return None
    licence, commercial = LICENCES[row.source]
    return {
        "id": row.id,
        "text": row.text,
        "source": row.source,
        "task": row.task,
        "domain": row.domain,
        "weak_quality": weak_q,
        "strong_quality": strong_q,
        "p_weak_ok": p,
        "weak_ok": p >= 0.5,
        "difficulty": item_difficulty(row.quality, classes),
        "ladder_tier": ladder_tier(row.quality, classes),
        "licence": licence,
        "commercial": commercial,
        "label_kind": "outcome",
    }


def build_outcomes(
    raw_dir: Path = Path("data/raw"),
    out_dir: Path | None = Path("data/labelled"),
    *,
    commercial_only: bool = False,
) -> pd.DataFrame:
    """Every outcome source -> one table of routing targets (sorted by id); writes `outcomes.parquet`.

    Rows whose routing pair was not measured are dropped; empty texts too. With `commercial_only`,
    sources whose licence forbids commercial use are left out.
    """
    import pandas as pd

    records = []
    for source, reader in READERS.items():
        if commercial_only and not LICENCES[source][1]:
            continue
        for row in reader(raw_dir):
            if not row.text.strip():
                continue
            target = targets(row)
            if target is not None:
                records.append(target)
    df = pd.DataFrame.from_records(records).sort_values("id", kind="stable").reset_index(drop=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        df.to_parquet(out_dir / OUTCOMES_NAME, index=False, compression="zstd")
    return df


def model_classes_json() -> str:
    """`MODEL_CLASSES` and `ROUTING_PAIRS` as JSON (for the data card and reports)."""
    return json.dumps({"classes": MODEL_CLASSES, "pairs": ROUTING_PAIRS}, indent=1)
