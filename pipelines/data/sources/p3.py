"""Label map for the P3 / T0 prompt sample (SAMSum rows already removed from data/raw).

Job: give every P3 prompt a task and tier from facts of the source: `source_dataset` and `template`.
The sample's `task_type_*` columns are a coarse suggestion and are NOT used (they are wrong in places,
e.g. PAWS `labeled_final_Rewrite` is a yes/no paraphrase question, not generation). Trade-off: rules are
per dataset with explicit per-template overrides, so every label is traceable to one table entry below;
the price is that a new template needs a new entry (unknown datasets are skipped, never guessed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from pipelines.data.sources.base import LabelResult, RawRow, RowLabel, Skip, read_jsonl

P3_FILES = ("p3_t0_sample_part00.jsonl", "p3_t0_sample_part01.jsonl", "p3_t0_sample_part02.jsonl")

# dataset -> (task, tier). Why each tier:
#   simple: sentiment/topic/paraphrase classification, short-passage extractive QA, one-sentence
#           headlines, concept-to-sentence writing, easy science/commonsense multiple choice;
#   complex: long-document or multi-document summarisation, multi-hop QA, coreference-heavy or
#            "apply the background to a new situation" reading comprehension, causal process questions.
# No P3 dataset is `reasoning`: none needs the strongest model.
P3_DATASET_RULES: dict[str, tuple[str, str]] = {
    "adversarial_qa": ("extraction", "simple"),  # one short Wikipedia passage, span answer
    "ag_news": ("classification", "simple"),
    "amazon_polarity": ("classification", "simple"),
    "app_reviews": ("classification", "simple"),
    "cnn_dailymail": ("summarization", "complex"),  # long news article
    "common_gen": ("writing", "simple"),  # write one sentence from a few concepts
    "commonsense_qa": ("factual_qa", "simple"),
    "cosmos_qa": ("extraction", "complex"),  # answer needs inference beyond the passage
    "dbpedia_14": ("classification", "simple"),
    "dream": ("extraction", "simple"),  # short dialogue, multiple choice
    "duorc": ("extraction", "simple"),  # SelfRC; ParaphraseRC is overridden to complex below
    "gigaword": ("summarization", "simple"),  # headline for a single sentence
    "glue_mrpc": ("classification", "simple"),
    "glue_qqp": ("classification", "simple"),
    "imdb": ("classification", "simple"),
    "kilt_tasks": ("factual_qa", "complex"),  # HotpotQA: closed-book multi-hop
    "multi_news": ("summarization", "complex"),  # multi-document
    "paws": ("classification", "simple"),
    "qasc": ("factual_qa", "simple"),
    "quarel": ("factual_qa", "complex"),  # qualitative-relation word problems
    "quartz": ("extraction", "simple"),  # answer follows from one given sentence
    "quoref": ("extraction", "complex"),  # coreference across a long passage
    "ropes": ("extraction", "complex"),  # apply background knowledge to a new situation
    "rotten_tomatoes": ("classification", "simple"),
    "sciq": ("factual_qa", "simple"),
    "social_i": ("factual_qa", "simple"),
    "trec": ("classification", "simple"),
    "wiki_bio": ("extraction", "simple"),  # pull fields out of a short bio / infobox
    "wiki_hop": ("extraction", "complex"),  # multi-hop over several passages
    "wiki_qa": ("classification", "simple"),  # "is this a correct answer?" / topic prediction
    "wiqa": ("extraction", "complex"),  # causal effects of perturbing a described process
    "xsum": ("summarization", "complex"),  # one-sentence abstract of a full article
    "yelp_review": ("classification", "simple"),  # star rating of a review
}

# (dataset, template) -> (task, tier) for templates that change the task, mostly templates that invert
# it (write the question for an answer, the article for a summary, the review for a rating).
P3_TEMPLATE_RULES: dict[tuple[str, str], tuple[str, str]] = {
    **{
        ("adversarial_qa", f"{model}_generate_question"): ("writing", "simple")
        for model in ("dbert", "dbidaf", "droberta")
    },
    ("app_reviews", "generate_review"): ("writing", "simple"),
    ("cnn_dailymail", "generate_story"): ("writing", "complex"),  # full news article from bullets
    ("cnn_dailymail", "spice_up_story"): ("writing", "complex"),
    ("common_gen", "sentence_to_concepts"): ("extraction", "simple"),  # list the concepts of a sentence
    ("common_gen", "topics_from_the_sentence"): ("extraction", "simple"),
    ("cosmos_qa", "only_question_answer"): ("factual_qa", "complex"),  # no passage: open commonsense "why"
    ("dream", "generate_first_utterance"): ("writing", "simple"),
    ("dream", "generate_last_utterance"): ("writing", "simple"),
    **{
        ("duorc", f"ParaphraseRC_{t}"): ("extraction", "complex")
        for t in (
            "answer_question",
            "decide_worth_it",
            "extract_answer",
            "movie_director",
            "question_answering",
        )
    },  # question written on a different telling of the plot: needs paraphrase matching
    **{("duorc", f"{rc}_build_story_around_qa"): ("writing", "complex") for rc in ("SelfRC", "ParaphraseRC")},
    **{
        ("duorc", f"{rc}_{t}"): ("writing", "simple")
        for rc in ("SelfRC", "ParaphraseRC")
        for t in ("generate_question", "generate_question_by_answer")
    },
    **{
        ("duorc", f"{rc}_title_generation"): ("summarization", "complex") for rc in ("SelfRC", "ParaphraseRC")
    },
    ("gigaword", "reverse_writing"): ("writing", "simple"),  # one sentence from a headline
    ("gigaword", "write_an_article"): ("writing", "simple"),
    ("glue_mrpc", "generate_paraphrase"): ("writing", "simple"),
    ("glue_mrpc", "generate_sentence"): ("writing", "simple"),
    ("multi_news", "expand_reverse_task_"): ("writing", "complex"),  # long article from a summary
    ("quoref", "Guess_Title_For_Context"): ("summarization", "complex"),
    ("social_i", "qa_Generate_the_question_from_the_answer"): ("writing", "simple"),
    ("wiki_bio", "who"): ("writing", "simple"),  # write a short biography from bullet facts
    ("wiki_qa", "Direct_Answer_to_Question"): ("factual_qa", "simple"),
    ("wiki_qa", "Jeopardy_style"): ("writing", "simple"),  # write the question for an answer
    ("wiki_qa", "Generate_Question_from_Topic"): ("writing", "simple"),
}

EXCLUDED_DATASETS = frozenset({"samsum"})
"""CC BY-NC-ND 4.0: never shipped; the rule stays so a re-copied raw file cannot leak it in."""


def read_p3(raw_dir: Path) -> Iterator[tuple[str, RawRow]]:
    """Rows of the three part files. Key: `<dataset>/<template>/<sha1(prompt)[:12]>`.

    The prompt hash (not the line number) keeps ids stable if the sample is re-cut or re-filtered;
    an identical prompt twice in one template is a duplicate (a counter suffix keeps the key unique).
    """
    seen: dict[str, int] = {}
    for name in P3_FILES:
        for row in read_jsonl(raw_dir / "p3_t0_sample" / name):
            digest = hashlib.sha1(row["prompt"].encode("utf-8")).hexdigest()[:12]
            key = f"{row['source_dataset']}/{row['template']}/{digest}"
            seen[key] = seen.get(key, 0) + 1
            yield (key if seen[key] == 1 else f"{key}#{seen[key]}"), row


def p3_rule(dataset: str, template: str) -> tuple[str, str] | None:
    """(task, tier) for a P3 dataset/template, the template override first; None for unknown datasets."""
    if (dataset, template) in P3_TEMPLATE_RULES:
        return P3_TEMPLATE_RULES[(dataset, template)]
    return P3_DATASET_RULES.get(dataset)


def label_p3(row: RawRow) -> LabelResult:
    """P3 prompt -> (task, tier) by `p3_rule(source_dataset, template)`; text = the prompt as given.

    Skipped: SAMSum (licence), datasets without a rule, prompts that are empty after stripping.
    """
    dataset, template = row["source_dataset"], row["template"]
    if dataset in EXCLUDED_DATASETS:
        return Skip(f"{dataset}: licence forbids shipping")
    rule = p3_rule(dataset, template)
    if rule is None:
        return Skip(f"no rule for dataset {dataset}")
    text = row["prompt"].strip()
    if not text:
        return Skip("empty prompt")
    task, tier = rule
    return RowLabel(text=text, tier=tier, task=task)


def p3_stratum(row: RawRow, label: RowLabel) -> str:
    """Sampling cell for P3: the source dataset, so every dataset keeps the same budget."""
    return str(row["source_dataset"])


def p3_family(row: RawRow) -> str:
    """Prompt family for near-duplicate detection: `<dataset>/<template>`."""
    return f"{row['source_dataset']}/{row['template']}"
