"""Per-source label maps for the default labelled request data, and the registry that lists them.

Job: `SOURCES` names every raw source the build reads (in priority order: when two sources hold the
same normalised text, the earlier one's row is kept), with its reader, its documented label map and its
sampling caps. The maps themselves live in `benchmarks`, `p3`, `instructions` and `hand` (tierroute's own
hand-labelled requests); each is a small pure
function `raw row -> RowLabel | Skip` with its rule in the docstring. Trade-off: caps are hand-set so
that no source dominates and every tier keeps >= 15% of rows; the data card reports the result.

`empty_heads`: proxy labels the build writes empty because the per-source rule contradicts the hand
guideline (`data/raw/tierroute_requests/SOURCE.md`) too often to train on, chosen by the label ablation
(`evals.eval.label_ablation`, evals/RESULTS.md): TruthfulQA's and GSM8K's tier (one-fact lookups all
`complex`; tier by solution step count), CoCoNot's task (every prompt `chat`) and AlpacaEval's task (a
keyword rule). MBPP's all-`simple` tier, MATH's level rule and P3's template rules were measured too and
kept (dropping them did not raise agreement with the hand rows). The rows stay (for the other head, for
coverage and, for AlpacaEval, for `weak_ok`); each head trains and is scored only on the rows labelled for it.
"""

from __future__ import annotations

from pipelines.data.sources import benchmarks as bm
from pipelines.data.sources import hand, p3
from pipelines.data.sources import instructions as ins
from pipelines.data.sources.base import LabelResult, RawRow, RowLabel, Skip, SourceSpec

SOURCES: tuple[SourceSpec, ...] = (
    # first: on a normalised-text collision the hand label (a person's reading of this request) wins
    SourceSpec(
        "tierroute_requests",
        hand.read_hand_requests,
        hand.label_hand_request,
        licence="CC0-1.0",
        label_kind="hand",
    ),
    SourceSpec(
        "routellm_mmlu",
        bm.read_routellm_mmlu,
        bm.label_routellm_mmlu,
        # sampling cells = outcome patterns: keep the rarer "weak wrong" outcomes well represented
        caps={"weak=True,strong=True": 800, "weak=True,strong=False": 250, "*": 1000},
        stratum=bm.mmlu_stratum,
        family=lambda raw: str(raw["subject"]),
        licence="Apache-2.0",
        label_kind="outcome",
    ),
    SourceSpec(
        "gsm8k_train",
        bm.read_gsm8k,
        bm.label_gsm8k,
        # sampling cells = the step-count tier (still computed), though the tier is written empty
        caps={"simple": 300, "complex": 450, "reasoning": 650},
        licence="MIT",
        empty_heads=("tier",),
    ),
    SourceSpec("math_levels", bm.read_math_levels, bm.label_math_levels, licence="MIT"),
    SourceSpec("svamp", bm.read_svamp, bm.label_svamp, caps={"*": 400}, licence="MIT"),
    SourceSpec("humaneval", bm.read_humaneval, bm.label_humaneval, licence="MIT"),
    SourceSpec("mbpp", bm.read_mbpp, bm.label_mbpp, licence="CC-BY-4.0"),
    SourceSpec(
        "truthfulqa", bm.read_truthfulqa, bm.label_truthfulqa, licence="Apache-2.0", empty_heads=("tier",)
    ),
    SourceSpec("nq_open", bm.read_nq_open, bm.label_nq_open, caps={"*": 700}, licence="CC-BY-SA-3.0"),
    SourceSpec(
        "p3_t0_sample",
        p3.read_p3,
        p3.label_p3,
        # per source dataset; the summarisation datasets get more so `summarization` reaches >= 300 rows
        caps={"*": 90, "xsum": 200, "cnn_dailymail": 200, "gigaword": 150, "multi_news": 180},
        stratum=p3.p3_stratum,
        family=p3.p3_family,
        licence="Apache-2.0",  # promptsource templates; each P3 dataset keeps its own terms (data card)
    ),
    SourceSpec("self_instruct_seed", ins.read_self_instruct, ins.label_self_instruct, licence="Apache-2.0"),
    SourceSpec(
        "alpaca_eval",
        ins.read_alpaca_eval,
        ins.label_alpaca_eval,
        licence="CC-BY-NC-4.0",  # AlpacaEval's data licence; its code is Apache-2.0
        commercial=False,
        label_kind="outcome",
        empty_heads=("task",),  # the keyword rule's task; the tier (from weak_ok) stays
    ),
    SourceSpec(
        "coconot", ins.read_coconot, ins.label_coconot, caps={"*": 900}, licence="MIT", empty_heads=("task",)
    ),
)

SOURCES_BY_NAME: dict[str, SourceSpec] = {spec.name: spec for spec in SOURCES}

__all__ = ["SOURCES", "SOURCES_BY_NAME", "LabelResult", "RawRow", "RowLabel", "Skip", "SourceSpec"]
