"""`tierroute bench gate`: in-process latency of the deterministic checks and of the full gate.

Job: a rerunnable benchmark (never a timed test) printing p50/p99 for one (prompt, response) per
call: a `prompt_tokens`-token prompt with each response length, through (a) `check_response` alone
and (b) `GateModel.decide` (checks + tokenisation + signals + one ONNX call). Texts are real
English cut to an exact token count with the bundle's tokenizer (`pipelines.bench.classify.text_of_tokens`),
and end with a full stop so the checks pass and the model always runs. Timings on a shared 2-core
box drift 20-30% between runs: compare rows of one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from pipelines.bench.classify import measure, text_of_tokens
from serving.gate.checks import check_response


@dataclass
class GateLatencyRow:
    what: str
    prompt_tokens: int
    response_tokens: int
    p50_ms: float
    p99_ms: float
    calls: int


def _tokenizer_json(bundle: Path | None) -> Path:
    if bundle is not None:
        return bundle / "tokenizer.json"
    from pipelines.train.encoder_export import source_model_dir

    return source_model_dir() / "tokenizer.json"


def _row(what: str, p: int, r: int, samples: np.ndarray) -> GateLatencyRow:
    return GateLatencyRow(
        what, p, r, float(np.percentile(samples, 50)), float(np.percentile(samples, 99)), len(samples)
    )


def run_gate_bench(
    bundle: Path | None,
    prompt_tokens: int,
    response_tokens: Sequence[int],
    repeats: int,
    check_repeats: int,
    threads: int = 1,
) -> list[GateLatencyRow]:
    tok = _tokenizer_json(bundle)
    prompt = "Please answer the customer below. " + text_of_tokens(tok, prompt_tokens).rstrip(" .") + "?"
    responses = {n: text_of_tokens(tok, n).rstrip() + "." for n in response_tokens}
    rows = []
    for n, response in responses.items():
        samples = measure(partial(check_response, prompt, response), check_repeats, warmup=50)
        rows.append(_row("checks alone", prompt_tokens, n, samples))
    if bundle is not None:
        from serving.gate.model import GateItem, GateModel

        gate = GateModel.load(bundle, threads=threads)
        for n, response in responses.items():
            item = [GateItem(prompt, response)]
            if gate.decide(item)[0].decided_by != "model":
                raise RuntimeError("benchmark texts failed the checks; the model would not run")
            samples = measure(partial(gate.decide, item), repeats, warmup=5)
            rows.append(
                _row(
                    f"gate (checks + model, {gate.manifest['encoder']['precision']})",
                    prompt_tokens,
                    n,
                    samples,
                )
            )
    return rows
