"""Closing the loop on a deployment's own traffic: simulate it, learn `weak_ok` from the log, measure.

Job: the pieces the closed-loop end-to-end test (`tests/test_closed_loop_e2e.py`, over the real service)
and this benchmark share:
- `simulate_requests(n, seed, topics)`: seeded synthetic traffic, English and German questions on
  the same topics plus a few pasted tables; `slice` says which is which;
- `cheap_answer(slice)`: how the simulated cheap model behaves: it refuses every German request
  (the gate's deterministic refusal check catches it and the cascade escalates), answers the rest
  well, and answers tables plausibly but wrongly (the gate accepts; users mark them bad);
- `routing_numbers(score, in_slice, weak_ok)`: AUC of the routing score for slice vs the rest and
  APGR with the share of strong calls for 50% of the gap, against `weak_ok` outcomes.

`python -m evals.eval.closed_loop` runs the whole loop at a larger size in process: the "before"
model (trained on the default outcome rows with a `weak_ok` head) classifies the simulated traffic,
the real cascade gate (`serving.router.cascade.run_gate`) judges the cheap answer, the outcome is
written with the service's own log writer, users' feedback is appended, `pipelines.data.from_log`
turns it into rows, the "after" model is trained on default + traffic rows, and both are scored on
held-out requests (topics never seen in the traffic). It prints the before/after table and the
command line. The service's HTTP path is what the e2e test covers; this skips only the transport.

`--slice list` swaps the German slice for English list and quiz asks (`LIST_TEMPLATES`, as long as the
other English requests), which the cheap model answers plausibly but uselessly: the gate passes them and
only users' feedback reveals the failure. Prompt length cannot find that slice, so it shows the served
`complexity` learning; the German slice is partly found by length already (German splits into more
word pieces).

Trade-off: a synthetic slice (a language, a kind of ask) is easy for an embedding to learn; real traffic
slices are fuzzier. The point it shows is the mechanism: a failure the default data never saw
becomes routing signal after one retrain.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TOPICS: tuple[tuple[str, str], ...] = (
    ("the French Revolution", "die Französische Revolution"),
    ("photosynthesis", "die Photosynthese"),
    ("black holes", "schwarze Löcher"),
    ("the stock market", "der Aktienmarkt"),
    ("climate change", "der Klimawandel"),
    ("machine learning", "maschinelles Lernen"),
    ("the Roman Empire", "das Römische Reich"),
    ("vaccines", "Impfstoffe"),
    ("inflation", "die Inflation"),
    ("the water cycle", "der Wasserkreislauf"),
    ("electric cars", "Elektroautos"),
    ("sleep", "der Schlaf"),
    ("coffee", "der Kaffee"),
    ("the moon landing", "die Mondlandung"),
    ("volcanoes", "Vulkane"),
    ("bees", "die Bienen"),
    ("the internet", "das Internet"),
    ("democracy", "die Demokratie"),
    ("solar energy", "die Solarenergie"),
    ("chess", "das Schachspiel"),
    ("the human heart", "das menschliche Herz"),
    ("earthquakes", "Erdbeben"),
    ("the Renaissance", "die Renaissance"),
    ("bread baking", "das Brotbacken"),
    ("the Olympic Games", "die Olympischen Spiele"),
    ("rainforests", "die Regenwälder"),
    ("quantum computers", "Quantencomputer"),
    ("the printing press", "der Buchdruck"),
    ("tides", "die Gezeiten"),
    ("glaciers", "die Gletscher"),
    ("the immune system", "das Immunsystem"),
    ("jazz music", "die Jazzmusik"),
    ("the Silk Road", "die Seidenstraße"),
    ("dinosaurs", "die Dinosaurier"),
    ("cryptocurrency", "Kryptowährungen"),
    ("the Cold War", "der Kalte Krieg"),
    ("antibiotics", "Antibiotika"),
    ("wind turbines", "Windkraftanlagen"),
    ("the Great Wall of China", "die Chinesische Mauer"),
    ("honey", "der Honig"),
)
TRAFFIC_TOPICS = TOPICS[:30]
HELD_OUT_TOPICS = TOPICS[30:]
EN_TEMPLATES = (
    "Can you explain {t} in simple terms?",
    "What are the main facts about {t}?",
    "Write a short paragraph about {t}.",
    "Why is {t} important?",
    "Give me three interesting facts about {t}.",
    "How would you describe {t} to a child?",
    "Summarise the history of {t} in a few sentences.",
    "What are common misconceptions about {t}?",
    "List the pros and cons of {t}.",
    "Tell me something surprising about {t}.",
    "Write a quiz question about {t}.",
    "How does {t} affect everyday life?",
)
DE_TEMPLATES = (
    "Thema: {t}. Erkläre mir das bitte in einfachen Worten.",
    "Was sind die wichtigsten Fakten zum Thema {t}?",
    "Schreib bitte einen kurzen Absatz. Das Thema ist {t}.",
    "Ich habe eine Frage zum Thema {t}: warum ist das wichtig?",
    "Nenne mir drei interessante Fakten. Thema: {t}.",
    "Wie würdest du einem Kind das Thema {t} erklären?",
    "Fasse bitte kurz zusammen, was man über das Thema {t} wissen sollte.",
    "Was sind häufige Irrtümer zum Thema {t}?",
    "Welche Vor- und Nachteile hat das Thema {t}?",
    "Erzähl mir etwas Überraschendes zum Thema {t}.",
    "Schreibe eine Quizfrage zum Thema {t}.",
    "Wie beeinflusst das Thema {t} unseren Alltag?",
)
TABLE_TEMPLATE = (
    "Here is a table:\n| item | price |\n| --- | --- |\n| {t} | {a} |\n| other | {b} |\n"
    "Which row has the highest price?"
)
SLICE = "de"
LIST_SLICE = "list"
SLICES = ("en", "de", "table", LIST_SLICE)
LIST_TEMPLATES = frozenset(
    {
        "Give me three interesting facts about {t}.",
        "List the pros and cons of {t}.",
        "Write a quiz question about {t}.",
    }
)
"""`--slice list`: English asks for a list or a quiz, about as long as the other English requests (so
prompt length cannot find them), which the simulated cheap model answers plausibly but uselessly."""
SLICE_NAMES = {SLICE: "German", LIST_SLICE: "list asks"}
GOOD_ANSWER = "Here is a clear, complete and helpful answer to your question, with the key facts."
REFUSAL = "I'm sorry, but I can't help with that request."
WRONG_TABLE_ANSWER = "The row with the highest price is the first one in the table, as shown above."
WRONG_LIST_ANSWER = "That is a broad subject with many sides, and there is a lot that could be said about it."


@dataclass(frozen=True)
class SimRequest:
    text: str
    slice: str  # en | de | table | list

    @property
    def weak_ok(self) -> bool:
        """The cheap model's answer is acceptable (what users and the gate together find out)."""
        return self.slice == "en"


def simulate_requests(
    n: int,
    seed: int,
    topics: Sequence[tuple[str, str]] = TRAFFIC_TOPICS,
    *,
    slice_share: float = 0.35,
    table_share: float = 0.08,
    distinct: bool = False,
    slice_kind: str = SLICE,
) -> list[SimRequest]:
    """`n` requests: about `slice_share` German, `table_share` tables, the rest English. Traffic repeats
    itself (users ask the same thing twice); `distinct=True` draws each text once (for held-out sets:
    at most 12 templates x topics per language). With `slice_kind="list"` there is no German: the
    English requests built from `LIST_TEMPLATES` (3 of 12) are the slice instead."""
    if slice_kind not in SLICE_NAMES:
        raise ValueError(f"slice_kind must be one of {sorted(SLICE_NAMES)}")
    if slice_kind == LIST_SLICE:
        slice_share = 0.0
    rng = random.Random(seed)
    out: list[SimRequest] = []
    seen: set[str] = set()
    for _ in range(n * 50):
        if len(out) == n:
            break
        en, de = rng.choice(list(topics))
        u = rng.random()
        if u < table_share:
            a, b = rng.randint(1, 99), rng.randint(100, 999)
            req = SimRequest(TABLE_TEMPLATE.format(t=en, a=a, b=b), "table")
        elif u < table_share + slice_share:
            req = SimRequest(rng.choice(DE_TEMPLATES).format(t=de), "de")
        else:
            template = rng.choice(EN_TEMPLATES)
            kind = LIST_SLICE if slice_kind == LIST_SLICE and template in LIST_TEMPLATES else "en"
            req = SimRequest(template.format(t=en), kind)
        if not distinct or req.text not in seen:
            seen.add(req.text)
            out.append(req)
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct requests from {len(topics)} topics; ask for fewer")
    return out


def cheap_answer(slice_name: str) -> tuple[str, str]:
    """(fake-provider step kind, content) of the simulated cheap model for a request of `slice_name`."""
    if slice_name == "de":
        return "refusal", REFUSAL
    if slice_name == "table":
        return "ok", WRONG_TABLE_ANSWER
    if slice_name == LIST_SLICE:
        return "ok", WRONG_LIST_ANSWER
    return "ok", GOOD_ANSWER


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    s = np.asarray(score, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    p, q = s[pos], s[~pos]
    if p.size == 0 or q.size == 0:
        raise ValueError("auc needs positives and negatives")
    greater = (p[:, None] > q[None, :]).sum() + 0.5 * (p[:, None] == q[None, :]).sum()
    return float(greater / (p.size * q.size))


def routing_numbers(score: np.ndarray, in_slice: np.ndarray, weak_ok: np.ndarray) -> dict[str, float]:
    """AUC (slice vs rest) of the 'send to strong' score, its mean on the slice and on the rest (the
    scale a threshold reads), APGR and the strong share for 50% of the gap."""
    from evals.eval.routing_value import evaluate_router

    weak = np.asarray(weak_ok, dtype=np.float64)
    rv = evaluate_router("router", np.asarray(score), weak, np.ones_like(weak), n_boot=200, seed=0)
    return {
        "auc": auc(score, in_slice),
        "slice_mean": float(np.mean(np.asarray(score)[np.asarray(in_slice, dtype=bool)])),
        "rest_mean": float(np.mean(np.asarray(score)[~np.asarray(in_slice, dtype=bool)])),
        "apgr": rv.apgr.estimate,
        "share_for_50": rv.share_for_50.estimate,
    }


ROUTER_SCORE = "not:weak_ok:true"
"""The routing score: 1 - P(weak_ok = true) from a head trained on the `weak_ok` column."""


def score_texts(bundle_dir: Path, texts: Sequence[str], router: str = ROUTER_SCORE) -> np.ndarray:
    from evals.eval.evaluate import router_score
    from evals.io.models import head_labels, load_bundle, predict_in_batches, resolve_model

    bundle = load_bundle(resolve_model(str(bundle_dir)))
    out = predict_in_batches(bundle, list(texts))
    return router_score(router, out.probs, head_labels(bundle), out.p_weak_ok)


# ------------------------------------------------------------------------------------- benchmark

DEFAULT_TASKS = ("chat", "factual_qa", "math", "writing")
"""Tasks the default outcome rows cover with enough rows for a head (the others have < 8)."""


def default_outcome_rows(labelled: Path, limit: int | None, seed: int = 0) -> Any:
    """The shipped rows with a `weak_ok` outcome and a task in `DEFAULT_TASKS` (a seeded sample).

    AlpacaEval's task, which the build leaves empty (`SourceSpec.empty_heads`), is its label map's keyword
    rule here (`instruction_task`, as before the build dropped it): the simulation needs outcome rows of
    `chat` and `writing`, and only AlpacaEval has them."""
    import pandas as pd

    from pipelines.data.sources.instructions import instruction_task

    df = pd.read_parquet(labelled)
    proxy = df["task"].isna() & (df["source"] == "alpaca_eval")
    df.loc[proxy, "task"] = df.loc[proxy, "text"].map(instruction_task)
    df = df[df["weak_ok"].notna() & df["task"].isin(DEFAULT_TASKS)]
    if limit is not None and len(df) > limit:
        parts = [
            g.sample(n=min(len(g), max(8, round(len(g) * limit / len(df)))), random_state=seed)
            for _, g in df.groupby(["task", "split"], sort=True)
        ]
        df = pd.concat(parts)
    return df.reset_index(drop=True)


def _simulate_log(bundle_dir: Path, traffic: Sequence[SimRequest], log_path: Path) -> dict[str, int]:
    """Classify, gate and log the traffic as the service does (in process), plus users' feedback."""
    from serving.client import BundleClassifier
    from serving.prediction_log import PredictionLog
    from serving.router.cascade import run_gate
    from serving.router.policy import GateSettings

    classifier = BundleClassifier(bundle_dir)
    settings = GateSettings()
    counts = {"requests": len(traffic), "escalated": 0, "feedback_bad": 0}
    log_path.unlink(missing_ok=True)  # the log appends: start from an empty one
    with PredictionLog(log_path, include_text=True) as log:
        for i, req in enumerate(traffic):
            response = classifier.classify([req.text])
            result = response.results[0].model_dump()
            model = response.model.model_dump(include={"name", "version", "alias"})
            _kind, content = cheap_answer(req.slice)
            verdict = run_gate(req.text, content, settings, finish_reason="stop")
            counts["escalated"] += int(not verdict.ok)
            rid = f"{i:032x}"
            route = {
                "decided_by": "classifier",
                "rule": "ask-classifier",
                "cascade": "loop",
                "stage1": "cheap",
                "gate": {"ok": verdict.ok, "reasons": list(verdict.reasons), "p_acceptable": None},
                "escalated": not verdict.ok,
                "final": "cheap" if verdict.ok else "strong",
            }
            log.write_routed(rid, route, req.text, result=result, model=model)
            if req.slice in ("table", LIST_SLICE) and verdict.ok:  # the user saw the wrong answer
                log.write_feedback(rid, "bad")
                counts["feedback_bad"] += 1
    return counts


def run_benchmark(
    work: Path,
    *,
    traffic_n: int,
    held_out_n: int,
    default_limit: int | None,
    labelled: Path,
    encoder_cache: Path,
    seed: int,
    routing: dict[str, Any] | None = None,
    slice_kind: str = SLICE,
) -> dict[str, Any]:
    """The loop in process; returns the numbers the table prints. `slice_kind`: what the cheap model
    fails (`de`: German requests, which it refuses; `list`: English list/quiz asks, answered uselessly,
    which only users' feedback reveals)."""
    from pipelines.data.from_log import merge_frames, rows_from_log, write_frame
    from pipelines.train.classifier import TrainConfig, train

    work.mkdir(parents=True, exist_ok=True)
    default = default_outcome_rows(labelled, default_limit, seed)
    default_path = write_frame(default, work / "default.parquet")
    heads = ("tier", "task", "weak_ok")
    label_sets = {"task": list(DEFAULT_TASKS), "weak_ok": ["false", "true"]}

    notes: list[str] = []

    def fit(data: Path, name: str) -> Path:
        config = TrainConfig(
            data=data,
            label_columns=heads,
            label_sets=label_sets,
            out_dir=work / name,
            encoder_cache=encoder_cache,
            embedding_cache=work / "embeddings",
            register=False,
            **(routing or {}),  # type: ignore[arg-type]
        )

        def echo(message: str) -> None:  # keep what the head was fitted on
            if message.startswith(("routing head:", "head weak_ok:")):
                notes.append(f"{name}: {message}")

        return Path(train(config, progress=False, echo=echo).bundle_dir)

    before = fit(default_path, "before")
    traffic = simulate_requests(traffic_n, seed, slice_kind=slice_kind)
    counts = _simulate_log(before, traffic, work / "traffic.jsonl")
    # tier/task stay empty on the log rows (the honest default): each head trains on its labelled rows
    rows, report = rows_from_log(work / "traffic.jsonl", seed=seed)
    merged, _ = merge_frames([default, rows])
    after = fit(write_frame(merged, work / "merged.parquet"), "after")

    held_all = simulate_requests(held_out_n, seed + 1, HELD_OUT_TOPICS, distinct=True, slice_kind=slice_kind)
    held = [r for r in held_all if r.slice != "table"]
    texts = [r.text for r in held]
    in_slice = np.array([r.slice == slice_kind for r in held])
    ok = np.array([r.weak_ok for r in held])
    # two scores per model: the `weak_ok` label head this loop trains, and `complexity` as served (1 -
    # p_weak_ok of the routing head, which `train` also fits on the merged file's `weak_ok` rows)
    numbers = {
        f"{name} ({router})": routing_numbers(score_texts(b, texts, router), in_slice, ok)
        for router in (ROUTER_SCORE, "complexity")
        for name, b in (("before", before), ("after", after))
    }
    return {
        "numbers": numbers,
        "counts": counts,
        "from_log": report.to_dict(),
        "default_rows": len(default),
        "held_out": len(held),
        "held_out_slice": int(in_slice.sum()),
        "notes": notes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m evals.eval.closed_loop",
        description="Simulate traffic whose German slice (or list asks) the cheap model fails, learn weak_ok "
        "from the outcome log, retrain once and print routing value on held-out requests before/after.",
    )
    parser.add_argument(
        "--slice",
        choices=sorted(SLICE_NAMES),
        default=SLICE,
        help="what the cheap model fails: 'de' German requests (it refuses; the gate escalates), 'list' "
        "English list/quiz asks as long as the rest (answered uselessly; only users' feedback says so). "
        "Default de",
    )
    parser.add_argument(
        "--traffic", type=int, default=1500, help="simulated requests in the log (default 1500)"
    )
    parser.add_argument(
        "--held-out", type=int, default=200, help="distinct held-out requests, unseen topics (default 200)"
    )
    parser.add_argument(
        "--default-rows",
        type=int,
        default=0,
        help="sample of the default outcome rows (0 = all, the default)",
    )
    parser.add_argument("--data", type=Path, default=Path("data/labelled/requests.parquet"))
    parser.add_argument("--encoder-cache", type=Path, default=Path("models/encoder"))
    parser.add_argument("--work", type=Path, default=Path(".cache/closed_loop"), help="scratch folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--routing-c", type=float, default=None, help="routing head C (default: the trainer's default)"
    )
    parser.add_argument(
        "--routing-length-coef",
        type=float,
        default=None,
        help="routing head length prior (default: the trainer's default)",
    )
    parser.add_argument(
        "--traffic-weight",
        type=float,
        default=None,
        help="routing head: total weight of the traffic rows relative to one outcome source "
        "(default: the trainer's, `pipelines.train.routing.DEFAULT_SOURCE_WEIGHTS`)",
    )
    args = parser.parse_args(argv)
    routing: dict[str, Any] = {}
    if args.routing_c is not None:
        routing["routing_C"] = args.routing_c
    if args.routing_length_coef is not None:
        routing["routing_length_coef"] = args.routing_length_coef
    if args.traffic_weight is not None:
        routing["routing_source_weights"] = {"traffic": args.traffic_weight}
    result = run_benchmark(
        args.work,
        traffic_n=args.traffic,
        held_out_n=args.held_out,
        default_limit=args.default_rows or None,
        labelled=args.data,
        encoder_cache=args.encoder_cache,
        seed=args.seed,
        routing=routing,
        slice_kind=args.slice,
    )
    c, r, nums = result["counts"], result["from_log"], result["numbers"]
    print("$ python -m evals.eval.closed_loop " + " ".join(sys.argv[1:] if argv is None else argv))
    print(
        f"default outcome rows {result['default_rows']}; traffic {c['requests']} requests, "
        f"{c['escalated'] / c['requests']:.1%} escalated by the gate, "
        f"{c['feedback_bad']} marked bad by users; "
        f"from-log rows {r['rows']} (weak_ok true {r['weak_ok_true']}, false {r['weak_ok_false']}, "
        f"feedback overrides {r['feedback_overrides']})"
    )
    name = SLICE_NAMES[args.slice]
    print(f"held out: {result['held_out']} requests on unseen topics, {result['held_out_slice']} {name}")
    for note in result["notes"]:
        print(note)
    print()
    print(
        f"| model (routing score) | slice AUC ({name} vs rest) | mean score {name} / rest | APGR "
        "| strong share for 50% of the gap |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, n in nums.items():
        print(
            f"| {name} | {n['auc']:.3f} | {n['slice_mean']:.3f} / {n['rest_mean']:.3f} | {n['apgr']:.3f} "
            f"| {n['share_for_50']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
