"""Build the gate's labelled (prompt, response) set: data/raw/ -> data/gate/gate.parquet + summary.json.

Job: turn the public response and outcome data copied into `data/raw/` into rows of (prompt,
response, acceptable, reason, source, split) for the learned gate, with every label's origin in
`source`/`reason` and its licence in `licence`/`non_commercial`, so the data card
(data/gate/README.md) can count and explain them.

What "acceptable" means: a careful reviewer would return this answer to the user. A competent
answer by a weaker model IS acceptable, and so is a one-line correct answer to a one-line
question. Being worse than the strongest model is a routing question, answered before the call,
so no label here comes from a relative preference alone. Unacceptable: refusal or deflection of
an answerable request, clarification where none was needed, truncated, off-topic (answers
another question), garbage or judge-gaming, factually wrong where a source says so.

Sources (see the data card for counts and weaknesses):
- CoCoNoT preference pairs (allenai/noncompliance, MIT): the prompts are requests a model SHOULD
  answer. `chosen` (GPT-4) -> acceptable. `rejected` -> unacceptable ONLY where something says why:
  the hand label (data/gate/refusal_labels.csv: R -> "refusal", Q -> "clarification") or the
  false-presupposition subcategory ("incorrect": the answer denies a true premise). Other rejected
  answers are only dispreferred, often still reasonable: dropped.
- AlpacaEval outputs (CC BY-NC 4.0, non-commercial): GPT-4-turbo and Claude 2.1 answers ->
  acceptable (strong models' answers to real user instructions); weaker generators' answers the
  GPT-4-turbo judge found competitive (P(beats GPT-4-turbo) >= COMPETENT_MIN_WIN) -> acceptable;
  their other answers are dropped (the judge says the strong model is better, not that the answer
  is unacceptable). NullModel (constant judge-gaming text) -> "garbage" and gpt4_gamed (GPT-4's
  answer cut to 10 characters) -> "truncated", by construction.
- TruthfulQA (Apache-2.0): the best answer and one other listed correct answer -> acceptable
  (short, one sentence); one of the listed incorrect answers -> "incorrect".
- NQ-open (CC BY-SA 3.0): a gold short answer, as written or in a short sentence -> acceptable
  (short answers are not bad answers).
- MMLU-Pro (Apache-2.0): question + options; the gold option -> acceptable, a wrong option ->
  "incorrect" (the outcome file has per-question gold letters, no model outputs).
- HH-RLHF harmless: not used. Its labels are relative and about harmlessness; the chosen reply is
  more often the refusal (measured in summary.json).
- Synthetic negatives derived from real acceptable responses (source "synthetic:*"):
  "truncated" (cut at 25-70% of its length, mid-sentence at a word boundary, inside a word, or
  inside a code block: `TRUNCATION_STYLES`; only answers >= 240 characters) and
  "off_instruction" (a real acceptable answer to a different prompt of the same split, prompts
  with overlapping words excluded).

Splits: prompts are grouped (exact normalised text + shared word 6-grams, `near_duplicate_groups`)
and each group goes to train/validation/test by a hash of its key (70/15/15), so one prompt's
responses, and their synthetic derivatives, never straddle splits. Deterministic: hash-based
sampling, rows sorted by id, no timestamps.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.data.build import assign_split, near_duplicate_groups, normalise_text
from serving.gate.refusals import is_refusal

if TYPE_CHECKING:
    import pandas as pd

RAW_DIR = Path("data/raw")
OUT_PATH = Path("data/gate/gate.parquet")
REFUSAL_LABELS = Path("data/gate/refusal_labels.csv")

COLUMNS = (
    "id",
    "prompt",
    "response",
    "acceptable",
    "reason",
    "source",
    "generator",
    "licence",
    "non_commercial",
    "group",
    "split",
)
REASONS = (
    "ok",
    "refusal",
    "clarification",
    "incorrect",
    "garbage",
    "truncated",
    "off_instruction",
)

COMPETENT_MIN_WIN = 0.05
"""AlpacaEval, weaker generators: judge P(output beats GPT-4-turbo) at or above this -> acceptable."""
GAMED_GENERATORS = {"NullModel": "garbage", "gpt4_gamed": "truncated"}
STRONG_GENERATORS = frozenset({"gpt4_1106_preview", "claude-2.1"})
"""AlpacaEval generators whose answers are acceptable as given (the strong models of the set)."""

LICENCES = {
    "coconot": ("MIT", False),
    "alpaca_eval": ("CC-BY-NC-4.0 (AlpacaEval data; outputs under the providers' terms)", True),
    "truthfulqa": ("Apache-2.0", False),
    "nq_open": ("CC-BY-SA-3.0", False),
    "mmlu_pro": ("Apache-2.0", False),
}
"""Source family -> (licence, non-commercial only). Synthetic rows inherit their parent's."""

TRUTHFULQA_SHARE = 1.0
"""Share of TruthfulQA questions used (each gives one correct and one incorrect answer)."""
TRUTHFULQA_EXTRA_CORRECT = True
"""Add a second listed correct TruthfulQA answer per question (source `truthfulqa:correct`): short
sentences restating the question that are RIGHT, so the gate does not learn "short restating sentence
= TruthfulQA's wrong answer" (without them 42% of such rows were listed wrong answers)."""
NO_SYNTHETIC_PARENTS: frozenset[str] = frozenset({"truthfulqa:correct"})
"""Sources that seed no synthetic rows: the extra TruthfulQA answers are short (no truncations) and
their question's best answer already seeds its off-topic swap, so every other synthetic row stays the
same as before they were added."""
NQ_ROWS = 900
"""NQ-open dev questions used (hash-sampled), each with one gold short answer."""
MMLU_PRO_ROWS = 500
"""MMLU-Pro questions used (hash-sampled), each with its gold option and one wrong option."""

TRUNCATE_SHARE = 0.35
"""Share of acceptable responses (>= TRUNCATE_MIN_CHARS) that get a truncated twin."""
TRUNCATE_MIN_CHARS = 240
SWAP_SHARE = 0.35
"""Share of acceptable rows whose prompt gets a swapped (off-instruction) response."""
PROMPT_GROUP_WORDS = 6


@dataclass
class GateBuildReport:
    rows: int
    path: Path
    digest: str
    by_source_label: dict[str, dict[str, int]] = field(default_factory=dict)
    by_split_label: dict[str, dict[str, int]] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "path": str(self.path),
            "digest": self.digest,
            "by_source_label": self.by_source_label,
            "by_split_label": self.by_split_label,
            "by_reason": self.by_reason,
            "dropped": self.dropped,
            "notes": self.notes,
        }


def _sha(prefix: str, value: str) -> str:
    return hashlib.sha256(f"{prefix}:{value}".encode()).hexdigest()


def _unit(prefix: str, value: str) -> float:
    """A deterministic number in [0, 1) from a hash: seeded sampling independent of file order."""
    return int(_sha(prefix, value)[:12], 16) / float(1 << 48)


def _row(
    prompt: str, response: str, acceptable: bool, reason: str, source: str, generator: str
) -> dict[str, Any]:
    rid = _sha("gate-row-v1", f"{source}\0{generator}\0{prompt}\0{response}")[:16]
    licence, non_commercial = LICENCES.get(source.split(":", 1)[0].split("_pref", 1)[0], ("", False))
    return {
        "id": rid,
        "prompt": prompt,
        "response": response,
        "acceptable": acceptable,
        "reason": reason,
        "source": source,
        "generator": generator,
        "licence": licence,
        "non_commercial": non_commercial,
    }


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def read_refusal_labels(path: Path) -> dict[tuple[str, str], str]:
    """(coconot id, field) -> hand label R (refusal) / Q (clarification) / C (complies)."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {(r["id"], r["field"]): r["label"] for r in csv.DictReader(fh)}


def coconot_rows(
    raw_dir: Path, hand_labels: dict[tuple[str, str], str], dropped: Counter[str]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in _read_jsonl(raw_dir / "coconot" / "data_coconot_pref.jsonl"):
        prompt = r["prompt"]
        rows.append(
            _row(prompt, r["chosen"], True, "ok", "coconot_pref:chosen", r.get("chosen_model") or "gpt-4")
        )
        hand = hand_labels.get((r["id"], "rejected"))
        if hand == "R":
            reason = "refusal"
        elif hand == "Q":
            reason = "clarification"
        elif r.get("subcategory") == "false presuppositions":
            reason = "incorrect"
        else:
            dropped["coconot:rejected_only_dispreferred"] += 1
            continue
        rows.append(_row(prompt, r["rejected"], False, reason, "coconot_pref:rejected", "unknown"))
    return rows


def alpaca_rows(raw_dir: Path, dropped: Counter[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    folder = raw_dir / "alpaca_eval_outputs"
    for path in sorted(folder.glob("*.jsonl")):
        generator = path.stem
        if generator.startswith("reference_"):
            continue  # identical to the gpt4_1106_preview generator's outputs
        for r in _read_jsonl(path):
            prompt, output = r["instruction"], r["output"]
            if generator in GAMED_GENERATORS:
                reason = GAMED_GENERATORS[generator]
                rows.append(_row(prompt, output, False, reason, "alpaca_eval:by_construction", generator))
                continue
            if generator in STRONG_GENERATORS:
                rows.append(_row(prompt, output, True, "ok", "alpaca_eval:strong", generator))
                continue
            pref = r.get("preference")
            if pref is not None and float(pref) - 1.0 >= COMPETENT_MIN_WIN:
                rows.append(_row(prompt, output, True, "ok", "alpaca_eval:competent", generator))
            else:
                dropped["alpaca_eval:weaker_not_judged_competent"] += 1
    return rows


def truthfulqa_rows(raw_dir: Path) -> list[dict[str, Any]]:
    """Best answer -> acceptable; one other listed correct answer (hash-chosen, not "I have no comment")
    -> acceptable (`TRUTHFULQA_EXTRA_CORRECT`); one listed incorrect answer (hash-chosen) -> "incorrect"."""
    rows: list[dict[str, Any]] = []
    path = raw_dir / "truthfulqa" / "TruthfulQA.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            q, best = r["Question"].strip(), r["Best Answer"].strip()
            if _unit("gate-tqa-v1", q) >= TRUTHFULQA_SHARE or not q or not best:
                continue
            rows.append(_row(q, _sentence(best), True, "ok", "truthfulqa:best", "truthfulqa"))
            right = [
                a.strip()
                for a in r["Correct Answers"].split(";")
                if a.strip() and a.strip() != best and "no comment" not in a.lower()
            ]
            if right and TRUTHFULQA_EXTRA_CORRECT:
                pick = right[int(_unit("gate-tqa-right-v1", q) * len(right))]
                rows.append(_row(q, _sentence(pick), True, "ok", "truthfulqa:correct", "truthfulqa"))
            wrong = [a.strip() for a in r["Incorrect Answers"].split(";") if a.strip()]
            if wrong:
                pick = wrong[int(_unit("gate-tqa-wrong-v1", q) * len(wrong))]
                rows.append(
                    _row(q, _sentence(pick), False, "incorrect", "truthfulqa:incorrect", "truthfulqa")
                )
    return rows


def _sentence(text: str) -> str:
    return text if text[-1:] in ".!?" else text + "."


def nq_rows(raw_dir: Path) -> list[dict[str, Any]]:
    """NQ-open gold short answers: the bare answer, "X." or "The answer is X." (hash-chosen)."""
    items = []
    for r in _read_jsonl(raw_dir / "nq_open" / "NQ-open.dev.jsonl"):
        q = r["question"].strip()
        q = q[:1].upper() + q[1:] + ("" if q.endswith("?") else "?")
        items.append((_sha("gate-nq-v1", q), q, r["answer"][0].strip()))
    rows = []
    for _, q, a in sorted(items)[:NQ_ROWS]:
        style = int(_unit("gate-nq-style-v1", q) * 3)
        text = (a, _sentence(a[:1].upper() + a[1:]), f"The answer is {a}.")[style]
        rows.append(_row(q, text, True, "ok", "nq_open:gold", "nq_open"))
    return rows


def mmlu_pro_rows(raw_dir: Path) -> list[dict[str, Any]]:
    """MMLU-Pro: prompt = question + lettered options; gold option -> ok, one wrong option -> incorrect."""
    path = raw_dir / "mmlu_pro_outcomes" / "mmlu_pro_outcomes.jsonl.gz"
    picked = sorted(
        (_sha("gate-mmlu-v1", str(r["question_id"])), r) for r in _read_jsonl(path) if len(r["options"]) >= 2
    )[:MMLU_PRO_ROWS]
    rows = []
    for _, r in picked:
        letters = "ABCDEFGHIJKLMNOP"
        opts = r["options"]
        prompt = r["question"].strip() + "\n\n" + "\n".join(f"{letters[i]}. {o}" for i, o in enumerate(opts))
        gold = letters.index(r["answer"])
        wrong = [i for i in range(len(opts)) if i != gold]
        bad = wrong[int(_unit("gate-mmlu-wrong-v1", str(r["question_id"])) * len(wrong))]
        style = int(_unit("gate-mmlu-style-v1", str(r["question_id"])) * 2)
        for i, ok in ((gold, True), (bad, False)):
            text = (f"The answer is ({letters[i]}) {opts[i]}.", f"{letters[i]}. {opts[i]}")[style]
            reason, src = ("ok", "mmlu_pro:gold") if ok else ("incorrect", "mmlu_pro:wrong_option")
            rows.append(_row(prompt, text, ok, reason, src, "mmlu_pro"))
    return rows


_SENT_END = re.compile(r"[.!?:;)\]\"'`*]\s*$")


def truncate_mid_sentence(text: str, fraction: float) -> str:
    """Cut `text` at a word boundary near `fraction` of its length, never right after a sentence end."""
    cut = max(1, int(len(text) * fraction))
    space = text.rfind(" ", 0, cut)
    head = text[: space if space > 20 else cut].rstrip()
    while _SENT_END.search(head) and " " in head:
        head = head[: head.rfind(" ")].rstrip()
    return head


def truncate_mid_word(text: str, fraction: float) -> str:
    """Cut `text` inside a word at or after `fraction` of its length (what a token limit does)."""
    for cut in range(max(1, int(len(text) * fraction)), len(text) - 1):
        if text[cut - 1].isalnum() and text[cut].isalnum():
            return text[:cut]
    return truncate_mid_sentence(text, fraction)


def truncate_in_code(text: str, fraction: float) -> str | None:
    """Cut `text` inside its first fenced code block (the fence stays open), or None without one."""
    start = text.find("```")
    end = text.find("```", start + 3) if start >= 0 else -1
    body = text.find("\n", start) + 1 if start >= 0 else 0
    if start < 0 or end < 0 or end - body < 40:
        return None
    cut = body + max(1, int((end - body) * fraction))
    return text[:cut].rstrip()


TRUNCATION_STYLES = ("word", "mid_word", "code")
"""How a synthetic truncation cuts: at a word boundary mid-sentence, inside a word, or inside a code
block (answers with one; the others fall back to `word`). Chosen per answer by hash."""


def truncate_response(text: str, fraction: float, style: str) -> str:
    if style == "code":
        cut = truncate_in_code(text, fraction)
        if cut is not None:
            return cut
    if style == "mid_word":
        return truncate_mid_word(text, fraction)
    return truncate_mid_sentence(text, fraction)


def _words(text: str) -> set[str]:
    return {w for w in normalise_text(text).split(" ") if len(w) > 3}


def _inherit(parent: dict[str, Any]) -> dict[str, Any]:
    return {"licence": parent["licence"], "non_commercial": parent["non_commercial"]}


def synthetic_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Truncated and off-instruction negatives from acceptable rows; `rows` must carry `split`/`group`."""
    out: list[dict[str, Any]] = []
    good = [r for r in rows if r["acceptable"] and r["source"] not in NO_SYNTHETIC_PARENTS]
    for r in good:
        text = r["response"]
        if len(text) >= TRUNCATE_MIN_CHARS and _unit("gate-trunc-v1", r["id"]) < TRUNCATE_SHARE:
            frac = 0.25 + 0.45 * _unit("gate-trunc-frac-v1", r["id"])
            style = TRUNCATION_STYLES[int(3 * _unit("gate-trunc-style-v2", r["id"])) % 3]
            new = _row(
                r["prompt"],
                truncate_response(text, frac, style),
                False,
                "truncated",
                "synthetic:truncate",
                r["generator"],
            )
            out.append({**new, **_inherit(r), "group": r["group"], "split": r["split"]})
    for split in ("train", "validation", "test"):
        pool = sorted(
            (r for r in good if r["split"] == split), key=lambda r: _sha("gate-swap-order-v1", r["id"])
        )
        n = len(pool)
        for i, r in enumerate(pool):
            if _unit("gate-swap-v1", r["id"]) >= SWAP_SHARE:
                continue
            mine = _words(r["prompt"])
            for k in range(1, min(n, 50)):
                other = pool[(i + k) % n]
                if other["group"] == r["group"]:
                    continue
                theirs = _words(other["prompt"])
                if mine & theirs and len(mine & theirs) / max(1, len(mine | theirs)) > 0.2:
                    continue  # related prompts: the swapped answer might still fit
                new = _row(
                    r["prompt"],
                    other["response"],
                    False,
                    "off_instruction",
                    "synthetic:swap",
                    other["generator"],
                )
                out.append({**new, **_inherit(other), "group": r["group"], "split": split})
                break
    return out


def hh_rlhf_refusal_rates(raw_dir: Path) -> dict[str, float]:
    """Share of HH-RLHF harmless chosen/rejected final replies the refusal phrase list flags."""
    path = raw_dir / "hh_rlhf_harmless" / "test.jsonl.gz"
    if not path.is_file():
        return {}
    chosen = rejected = n = 0
    for r in _read_jsonl(path):
        n += 1
        chosen += is_refusal(r["chosen"].rsplit("Assistant:", 1)[-1])
        rejected += is_refusal(r["rejected"].rsplit("Assistant:", 1)[-1])
    return {
        "pairs": n,
        "chosen_refusal_rate": chosen / max(n, 1),
        "rejected_refusal_rate": rejected / max(n, 1),
    }


def assign_groups(rows: list[dict[str, Any]]) -> None:
    """Add `group` (near-duplicate prompt group) and `split` to every row, in place."""
    prompts = sorted({r["prompt"] for r in rows})
    ids = [_sha("gate-prompt-v1", p)[:16] for p in prompts]
    groups = near_duplicate_groups(ids, prompts, n=PROMPT_GROUP_WORDS)
    by_prompt = dict(zip(prompts, groups, strict=True))
    for r in rows:
        g = by_prompt[r["prompt"]]
        r["group"] = g
        r["split"] = assign_split("gate:" + g)


def build_rows(
    raw_dir: Path = RAW_DIR, labels_csv: Path = REFUSAL_LABELS
) -> tuple[list[dict[str, Any]], Counter[str]]:
    for needed in (
        "coconot/data_coconot_pref.jsonl",
        "alpaca_eval_outputs",
        "truthfulqa/TruthfulQA.csv",
        "nq_open/NQ-open.dev.jsonl",
        "mmlu_pro_outcomes/mmlu_pro_outcomes.jsonl.gz",
    ):
        if not (raw_dir / needed).exists():
            raise FileNotFoundError(f"{raw_dir / needed} is missing: copy the raw data into {raw_dir} first")
    dropped: Counter[str] = Counter()
    rows = (
        coconot_rows(raw_dir, read_refusal_labels(labels_csv), dropped)
        + alpaca_rows(raw_dir, dropped)
        + truthfulqa_rows(raw_dir)
        + nq_rows(raw_dir)
        + mmlu_pro_rows(raw_dir)
    )
    empty = [r for r in rows if not r["response"].strip()]
    dropped["empty_response"] += len(empty)
    rows = [r for r in rows if r["response"].strip()]
    seen: set[str] = set()
    unique = []
    for r in rows:
        if r["id"] in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(r["id"])
        unique.append(r)
    assign_groups(unique)
    unique += synthetic_rows(unique)
    unique.sort(key=lambda r: r["id"])
    return unique, dropped


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["acceptable"] = df["acceptable"].astype(bool)
    return df


def _write_parquet(df: pd.DataFrame, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, tmp, compression="zstd", compression_level=9, use_dictionary=True)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


LENGTH_BINS = ((0, 40, "<40"), (40, 240, "40-239"), (240, 1000, "240-999"), (1000, 10**12, ">=1000"))
"""Response-length bins (characters) for per-length counts and false-escalation rates."""


def length_bin(n: int) -> str:
    return next(name for lo, hi, name in LENGTH_BINS if lo <= n < hi)


def _length_bins(responses: pd.Series) -> pd.Series:
    return responses.astype(str).str.len().map(length_bin).rename("length")


def _crosstab(df: pd.DataFrame, key: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (k, acc), n in df.groupby([key, "acceptable"]).size().items():
        out.setdefault(str(k), {})["acceptable" if acc else "unacceptable"] = int(n)
    return out


def build_gate_dataset(
    raw_dir: Path = RAW_DIR, out: Path = OUT_PATH, labels_csv: Path = REFUSAL_LABELS
) -> GateBuildReport:
    """Build, write (atomically) and summarise the gate dataset."""
    from pipelines.data.dataset import dataset_digest

    rows, dropped = build_rows(raw_dir, labels_csv)
    df = to_frame(rows)
    _write_parquet(df, out)
    digest = dataset_digest(df)
    report = GateBuildReport(
        rows=len(df),
        path=out,
        digest=digest,
        by_source_label=_crosstab(df, "source"),
        by_split_label=_crosstab(df, "split"),
        by_reason={str(k): int(v) for k, v in df["reason"].value_counts().sort_index().items()},
        dropped=dict(sorted(dropped.items())),
        notes={
            "hh_rlhf_harmless": hh_rlhf_refusal_rates(raw_dir),
            "alpaca_competent_min_win": COMPETENT_MIN_WIN,
            "non_commercial_rows": int(df["non_commercial"].sum()),
            "acceptable_by_response_chars": {
                str(k): {"acceptable" if a else "unacceptable": int(n) for a, n in g.items()}
                for k, g in df.groupby(_length_bins(df["response"]))["acceptable"]
                .value_counts()
                .unstack(fill_value=0)
                .iterrows()
            },
            "prompt_groups": int(df["group"].nunique()),
            "reason_by_split": {
                str(s): {str(k): int(v) for k, v in g["reason"].value_counts().sort_index().items()}
                for s, g in df.groupby("split")
            },
        },
    )
    (out.parent / "summary.json").write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    return report


def load_gate_dataset(path: Path = OUT_PATH) -> pd.DataFrame:
    """Read gate.parquet and check its columns and labels; ValueError names the problem."""
    import pandas as pd

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found: run `tierroute gate data build` first")
    df = pd.read_parquet(path)
    missing = [c for c in ("prompt", "response", "acceptable", "reason", "split") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    bad_split = sorted(set(df["split"]) - {"train", "validation", "test"})
    if bad_split:
        raise ValueError(f"{path}: unknown split values {bad_split}")
    if df["prompt"].isna().any() or df["response"].isna().any():
        raise ValueError(f"{path}: null prompt or response")
    return df
