"""Build the gate's labelled (prompt, response) set: data/raw/ -> data/gate/gate.parquet + summary.json.

Job: turn the public response data copied into `data/raw/` into rows of (prompt, response,
acceptable, reason, source, split) for the learned gate, with every label's origin written in
`source`/`reason` so the data card (data/gate/README.md) can count and explain them.

Labelling (see the data card for counts and weaknesses):
- CoCoNoT preference pairs (allenai/noncompliance): the prompts are requests a model SHOULD answer
  (contrast set). `chosen` (GPT-4) -> acceptable/"ok". `rejected` -> unacceptable; its reason is
  the hand label where one exists (data/gate/refusal_labels.csv: R -> "refusal",
  Q -> "clarification"), "incorrect" for the false-presupposition subcategory (the rejected answer
  denies a true premise: "Nabokov did not write Lolita"), else "dispreferred" (CoCoNoT's relative
  preference only: the weakest label in the set). Refusals to requests that SHOULD be refused
  (coconot_eval) have no responses in the data; the gate judges helpfulness, not safety (moderation
  is a separate concern), so no row teaches "refusing a harmful request is acceptable".
- AlpacaEval outputs: NullModel (a constant text gaming the judge) -> "garbage" and gpt4_gamed
  (GPT-4's answer cut to 10 characters) -> "truncated", unacceptable by construction whatever the
  judge said. Other generators: `preference` - 1 = the GPT-4-turbo judge's probability that the
  output beats GPT-4-turbo's own answer. >= ACCEPT_MIN_WIN -> acceptable ("competitive with the
  strong model": a cascade would gain little by escalating); < REJECT_MAX_WIN -> unacceptable
  "low_quality" (the judge is near-certain the strong model is better); in between -> dropped as
  ambiguous. The gpt4_1106_preview generator IS the reference (preference 1.5 = tie) -> acceptable.
- HH-RLHF harmless: not used. Its labels are relative and about harmlessness; the chosen reply is
  more often the refusal (measured in summary.json), which is the opposite of what a helpfulness
  gate must learn.
- Synthetic negatives derived from real acceptable responses (source "synthetic:*"):
  "truncated" (cut at 25-70% of its length, mid-sentence) and "off_instruction" (a real acceptable
  answer to a different prompt of the same split, prompts with overlapping words excluded).

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

COLUMNS = ("id", "prompt", "response", "acceptable", "reason", "source", "generator", "group", "split")
REASONS = (
    "ok",
    "refusal",
    "clarification",
    "incorrect",
    "dispreferred",
    "low_quality",
    "garbage",
    "truncated",
    "off_instruction",
)

ACCEPT_MIN_WIN = 0.05
"""AlpacaEval: judge P(output beats GPT-4-turbo) at or above this -> acceptable."""
REJECT_MAX_WIN = 0.001
"""AlpacaEval: below this -> unacceptable low_quality; in between -> dropped (ambiguous)."""
GAMED_GENERATORS = {"NullModel": "garbage", "gpt4_gamed": "truncated"}
REFERENCE_GENERATOR = "gpt4_1106_preview"

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
    return {
        "id": rid,
        "prompt": prompt,
        "response": response,
        "acceptable": acceptable,
        "reason": reason,
        "source": source,
        "generator": generator,
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


def coconot_rows(raw_dir: Path, hand_labels: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
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
            reason = "dispreferred"
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
                rows.append(
                    _row(
                        prompt,
                        output,
                        False,
                        GAMED_GENERATORS[generator],
                        "alpaca_eval:by_construction",
                        generator,
                    )
                )
                continue
            if generator == REFERENCE_GENERATOR:
                rows.append(_row(prompt, output, True, "ok", "alpaca_eval:reference", generator))
                continue
            pref = r.get("preference")
            if pref is None:
                dropped["alpaca_eval:no_preference"] += 1
                continue
            win = float(pref) - 1.0
            if win >= ACCEPT_MIN_WIN:
                rows.append(_row(prompt, output, True, "ok", "alpaca_eval:judge", generator))
            elif win < REJECT_MAX_WIN:
                rows.append(_row(prompt, output, False, "low_quality", "alpaca_eval:judge", generator))
            else:
                dropped["alpaca_eval:ambiguous_preference"] += 1
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


def _words(text: str) -> set[str]:
    return {w for w in normalise_text(text).split(" ") if len(w) > 3}


def synthetic_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Truncated and off-instruction negatives from acceptable rows; `rows` must carry `split`/`group`."""
    out: list[dict[str, Any]] = []
    good = [r for r in rows if r["acceptable"]]
    for r in good:
        text = r["response"]
        if len(text) >= TRUNCATE_MIN_CHARS and _unit("gate-trunc-v1", r["id"]) < TRUNCATE_SHARE:
            frac = 0.25 + 0.45 * _unit("gate-trunc-frac-v1", r["id"])
            new = _row(
                r["prompt"],
                truncate_mid_sentence(text, frac),
                False,
                "truncated",
                "synthetic:truncate",
                r["generator"],
            )
            out.append({**new, "group": r["group"], "split": r["split"]})
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
                out.append({**new, "group": r["group"], "split": split})
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
    for needed in ("coconot/data_coconot_pref.jsonl", "alpaca_eval_outputs"):
        if not (raw_dir / needed).exists():
            raise FileNotFoundError(f"{raw_dir / needed} is missing: copy the raw data into {raw_dir} first")
    dropped: Counter[str] = Counter()
    rows = coconot_rows(raw_dir, read_refusal_labels(labels_csv)) + alpaca_rows(raw_dir, dropped)
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
            "alpaca_accept_min_win": ACCEPT_MIN_WIN,
            "alpaca_reject_max_win": REJECT_MAX_WIN,
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
