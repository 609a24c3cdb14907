"""Registers the gate commands: `tierroute gate data build|train|check|judge` and `tierroute bench gate`.

Job: thin typer commands over `pipelines.gate.data`, `pipelines.gate.train`, `serving.gate`. Heavy
imports (pandas, sklearn, onnx, mlflow) happen inside command bodies so `tierroute --help` stays
fast. Exit codes: `gate check` / `gate judge` exit 0 when the response is acceptable and 1 when it
is rejected (like grep), 2 for usage errors; other commands exit 2 on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.gate.economics import (
    DEFAULT_BAD_ANSWER_COST,
    DEFAULT_CHEAP_COST,
    DEFAULT_PASS_RATE,
    DEFAULT_STRONG_COST,
)
from serving.cli.errors import fail as _fail

console = Console()
err = Console(stderr=True)

DEFAULT_BUNDLES = Path("models/bundles")


def latest_gate_bundle(root: Path = DEFAULT_BUNDLES) -> Path | None:
    """The newest `tierroute-gate-*` bundle folder under `root`, if any."""
    found = sorted(p for p in Path(root).glob("tierroute-gate-*") if (p / "bundle.json").is_file())
    return found[-1] if found else None


def _load_schema(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else value
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"--json-schema is neither a file nor valid JSON ({exc.msg})") from None
    if not isinstance(schema, dict):
        raise _fail("--json-schema must be a JSON object")
    return schema


# ------------------------------------------------------------------------------------------- data


def data_build_cmd(
    raw: Annotated[
        Path, typer.Option(help="Folder holding the raw copies (coconot, alpaca_eval_outputs, ...).")
    ] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Parquet file to write (summary.json goes next to it).")] = Path(
        "data/gate/gate.parquet"
    ),
    labels: Annotated[
        Path, typer.Option(help="Hand labels of CoCoNoT responses (refusal / clarification).")
    ] = Path("data/gate/refusal_labels.csv"),
) -> None:
    """Build the gate's labelled (prompt, response) set from data/raw; see data/gate/README.md."""
    from pipelines.gate.data import build_gate_dataset

    try:
        report = build_gate_dataset(raw, out, labels)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"{report.path}: {report.rows} rows (digest {report.digest[:12]})")
    for col in ("source", "acceptable", "unacceptable"):
        table.add_column(col)
    for src, counts in sorted(report.by_source_label.items()):
        table.add_row(src, str(counts.get("acceptable", 0)), str(counts.get("unacceptable", 0)))
    console.print(table)
    console.print("reasons:", report.by_reason)
    console.print("splits:", report.by_split_label)
    console.print("dropped:", report.dropped)


# ------------------------------------------------------------------------------------------ train


def train_cmd(
    data: Annotated[Path, typer.Option(help="Gate dataset built by `gate data build`.")] = Path(
        "data/gate/gate.parquet"
    ),
    precision: Annotated[str, typer.Option(help="Encoder precision: int8 (faster) or fp32.")] = "int8",
    prompt_tokens: Annotated[
        int, typer.Option(help="Tokens of the prompt the encoder sees (head+tail).")
    ] = 48,
    prompt_head_tokens: Annotated[
        int, typer.Option(help="Of those, tokens kept from the prompt's start.")
    ] = 16,
    response_tokens: Annotated[
        int, typer.Option(help="Tokens of the response the encoder sees (head+tail).")
    ] = 96,
    response_head_tokens: Annotated[
        int, typer.Option(help="Of those, tokens kept from the response's start.")
    ] = 48,
    target_false_accept: Annotated[
        float | None,
        typer.Option(
            help="Set the threshold by a fixed false-accept target, not by cascade economics (the default)."
        ),
    ] = None,
    cheap_cost: Annotated[
        float, typer.Option(help="Cascade economics: $ per 1,000 requests on the cheap model.")
    ] = DEFAULT_CHEAP_COST,
    strong_cost: Annotated[
        float, typer.Option(help="Cascade economics: $ per 1,000 requests on the strong model.")
    ] = DEFAULT_STRONG_COST,
    pass_rate: Annotated[
        float, typer.Option(help="Cascade economics: share of the cheap model's answers that are acceptable.")
    ] = DEFAULT_PASS_RATE,
    bad_answer_cost: Annotated[
        float, typer.Option(help="Cascade economics: $ one bad answer served costs.")
    ] = DEFAULT_BAD_ANSWER_COST,
    reason_head: Annotated[
        bool, typer.Option(help="Also train a reason head (refusal, truncated, ...).")
    ] = True,
    head: Annotated[
        str,
        typer.Option(
            help="Acceptability head: mlp (one hidden layer), logistic, or auto (mlp from 2,000 rows)."
        ),
    ] = "auto",
    hidden: Annotated[int, typer.Option(help="Hidden units of the MLP head.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed of the heads (MLP initialisation, CV folds).")] = 0,
    seeds: Annotated[
        int, typer.Option(help="MLPs fitted (seeds seed, seed+1, ...) and averaged into one head.")
    ] = 3,
    listed_wrong_weight: Annotated[
        float,
        typer.Option(help="Training weight of listed wrong answers (TruthfulQA, MMLU-Pro) in the head."),
    ] = 0.2,
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = "tierroute-gate",
    alias: Annotated[str, typer.Option(help="Alias set on the new version.")] = "candidate",
    register: Annotated[bool, typer.Option(help="Log to MLflow and register the version.")] = True,
    out: Annotated[Path, typer.Option(help="Folder for exported bundles.")] = DEFAULT_BUNDLES,
    limit: Annotated[int | None, typer.Option(help="Use at most this many rows (quick runs).")] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads for embedding.")] = 2,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train the learned gate (P(acceptable) + reason), calibrate its threshold, evaluate it against the
    string-match baselines on the test split, export an ONNX gate bundle, check parity, register it."""
    # Over 60 lines: mostly typer option declarations; the body is config -> train_gate -> print.
    from pipelines.gate.economics import CascadePrices
    from pipelines.gate.train import GateTrainConfig, train_gate

    if precision not in ("fp32", "int8"):
        raise _fail(f"--precision must be fp32 or int8, got {precision!r}")
    try:
        config = GateTrainConfig(
            data=data,
            out_dir=out,
            precision=precision,  # type: ignore[arg-type]
            prompt_tokens=prompt_tokens,
            prompt_head_tokens=prompt_head_tokens,
            response_tokens=response_tokens,
            response_head_tokens=response_head_tokens,
            target_false_accept=target_false_accept,
            prices=CascadePrices(cheap_cost, strong_cost, pass_rate, bad_answer_cost),
            reason_head=reason_head,
            head=head,  # type: ignore[arg-type]
            hidden=hidden,
            listed_wrong_weight=listed_wrong_weight,
            seed=seed,
            seeds=seeds,
            model_name=model_name,
            alias=alias,
            register=register,
            limit=limit,
            threads=threads,
        )
        result = train_gate(config, progress=progress, echo=console.print)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # registry errors etc.: one clear line, no traceback
        if type(exc).__name__ in ("RegistryError", "RuntimeError"):
            raise _fail(str(exc), 1) from None
        raise
    table = Table(title="test split: served gate vs baselines (same rows)")
    for col in (
        "system",
        "ROC-AUC",
        "FAR",
        "reject recall",
        "reject precision",
        "accept recall",
        "bal. acc.",
    ):
        table.add_column(col)
    for name in ("gate", "model_only", "baseline_refusal", "baseline_checks"):
        r = result.report["test"][name]
        table.add_row(
            name,
            f"{r['roc_auc']:.3f}",
            f"{r['false_accept_rate']:.3f}",
            f"{r['reject_recall']:.3f}",
            f"{r['reject_precision']:.3f}",
            f"{r['accept_recall']:.3f}",
            f"{r['balanced_accuracy']:.3f}",
        )
    console.print(table)


# ------------------------------------------------------------------------------------ check/judge


def check_cmd(
    prompt: Annotated[str, typer.Option(help="The request.")],
    response: Annotated[str, typer.Option(help="The model's answer.")],
    expect_json: Annotated[bool, typer.Option(help="The caller asked for JSON.")] = False,
    json_schema: Annotated[str | None, typer.Option(help="JSON Schema (a file or inline JSON).")] = None,
    finish_reason: Annotated[
        str | None, typer.Option(help="Provider finish reason (stop, length, ...).")
    ] = None,
    mean_logprob: Annotated[float | None, typer.Option(help="Mean token log-probability.")] = None,
    min_chars: Annotated[
        int | None, typer.Option(help="Override the request-dependent minimum length.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the deterministic checks only. Exit 0 if the response passes, 1 if it fails."""
    from serving.gate.checks import InvalidSchemaError, check_response

    try:
        result = check_response(
            prompt,
            response,
            expect_json=expect_json,
            json_schema=_load_schema(json_schema),
            finish_reason=finish_reason,
            mean_logprob=mean_logprob,
            min_chars=min_chars,
        )
    except InvalidSchemaError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    else:
        console.print("ok" if result.ok else "rejected: " + ", ".join(result.reasons))
    raise typer.Exit(0 if result.ok else 1)


def judge_cmd(
    prompt: Annotated[str, typer.Option(help="The request.")],
    response: Annotated[str, typer.Option(help="The model's answer.")],
    model: Annotated[
        Path | None,
        typer.Option(help="Gate bundle folder (default: newest models/bundles/tierroute-gate-*)."),
    ] = None,
    finish_reason: Annotated[
        str | None, typer.Option(help="Provider finish reason (stop, length, ...).")
    ] = None,
    expect_json: Annotated[bool, typer.Option(help="The caller asked for JSON.")] = False,
    threshold: Annotated[float | None, typer.Option(help="Override the bundle's threshold.")] = None,
) -> None:
    """Checks, then the learned gate (as /v1/gate does). Exit 0 if acceptable, 1 if rejected."""
    from serving.gate.model import GateItem, GateModel
    from serving.model.bundle import BundleError

    path = model or latest_gate_bundle()
    if path is None:
        raise _fail("no gate bundle found: pass --model or run `tierroute gate train`")
    try:
        gate = GateModel.load(path)
    except BundleError as exc:
        raise _fail(str(exc)) from None
    decision = gate.decide(
        [GateItem(prompt, response, expect_json=expect_json, finish_reason=finish_reason)],
        threshold=threshold,
    )[0]
    console.print_json(json.dumps({"model": gate.describe(), **decision.to_result()}))
    raise typer.Exit(0 if decision.acceptable else 1)


def calibrate_cmd(
    model: Annotated[
        str | None,
        typer.Option(
            help="Gate bundle folder or models:/ URI (default: newest models/bundles/tierroute-gate-*)."
        ),
    ] = None,
    data: Annotated[Path, typer.Option(help="Gate dataset (validation picks, test reports).")] = Path(
        "data/gate/gate.parquet"
    ),
    out: Annotated[
        Path | None, typer.Option(help="Write a copy of the bundle with the chosen threshold here.")
    ] = None,
    register: Annotated[
        bool, typer.Option(help="Register the calibrated copy (needs --out) as a new version.")
    ] = False,
    alias: Annotated[
        str, typer.Option(help="Alias for the registered copy; champion only when you ask for it.")
    ] = "candidate",
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = "tierroute-gate",
    cheap_cost: Annotated[
        float, typer.Option(help="$ per 1,000 requests on the cheap model.")
    ] = DEFAULT_CHEAP_COST,
    strong_cost: Annotated[
        float, typer.Option(help="$ per 1,000 requests on the strong model.")
    ] = DEFAULT_STRONG_COST,
    pass_rate: Annotated[
        float, typer.Option(help="Share of the cheap model's answers that are acceptable.")
    ] = DEFAULT_PASS_RATE,
    bad_answer_cost: Annotated[
        float, typer.Option(help="$ one bad answer served costs.")
    ] = DEFAULT_BAD_ANSWER_COST,
    limit: Annotated[int | None, typer.Option(help="Score at most this many rows per split.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Pick the gate's threshold by cascade economics: expected cost and bad answers served per 1,000
    requests as a function of the threshold; the cheapest cost + bad-answer penalty on validation wins."""
    # Over 60 lines: mostly typer option declarations; the body is resolve -> calibrate -> write -> print.
    from pipelines.gate.calibrate import calibrate_gate, write_calibrated_copy
    from pipelines.gate.economics import CascadePrices
    from serving.model.bundle import BundleError

    if register and out is None:
        raise _fail("--register needs --out (the calibrated copy is what gets registered)")
    try:
        prices = CascadePrices(cheap_cost, strong_cost, pass_rate, bad_answer_cost)
        bundle = _resolve_gate(model)
        result = calibrate_gate(bundle, data, prices, limit=limit)
        if out is not None:
            result["written"] = str(write_calibrated_copy(bundle, out, result))
    except (FileNotFoundError, FileExistsError, ValueError, BundleError) as exc:
        raise _fail(str(exc)) from None
    if register and out is not None:
        from pipelines.registry import TrainingRecord, log_and_register

        record = TrainingRecord(
            experiment=model_name,
            run_name=f"{out.name}-calibrate",
            params={f"price_{k}": v for k, v in result["prices"].items()} | {"source": str(model)},
            metrics={f"test_{k}": float(v) for k, v in result["at_threshold"].items()},
            artifacts=[],
            tags={"tierroute.kind": "gate", "gate_threshold": f"{result['threshold']:.4f}"},
        )
        version = log_and_register(record, out, model_name=model_name, alias=alias)
        result["registered"] = f"{model_name} v{version.version} @{alias}"
    if as_json:
        console.print_json(json.dumps(result, default=float))
        return
    table = Table(
        title=f"cascade economics on {result['reported_on']} (threshold chosen on {result['chosen_on']})"
    )
    for col in ("threshold", "accept good", "false accept", "escalated", "$ / 1,000", "bad / 1,000"):
        table.add_column(col)
    for c in result["curve"][::2]:
        table.add_row(
            f"{c['threshold']:.2f}",
            f"{c['accept_good']:.3f}",
            f"{c['false_accept']:.3f}",
            f"{c['escalated']:.3f}",
            f"{c['cost_per_1000']:.2f}",
            f"{c['bad_per_1000']:.1f}",
        )
    console.print(table)
    at = result["at_threshold"]
    console.print(
        f"chosen threshold {result['threshold']:.2f}: ${at['cost_per_1000']:.2f} and"
        f" {at['bad_per_1000']:.1f} bad answers per 1,000 requests ({at['escalated']:.3f} escalated);"
        f" always strong ${result['baselines']['always_strong']['cost_per_1000']:.2f}"
    )
    for key in ("written", "registered"):
        if key in result:
            console.print(f"{key}: {result[key]}")


def _resolve_gate(model: str | None) -> Path:
    """A local gate bundle folder for `model` (a folder or a models:/ URI, downloaded)."""
    if model is None:
        found = latest_gate_bundle()
        if found is None:
            raise FileNotFoundError("no gate bundle found: pass --model or run `tierroute gate train`")
        return found
    if model.startswith("models:/"):
        import tempfile

        from pipelines.registry import download_bundle

        return Path(download_bundle(model, Path(tempfile.mkdtemp(prefix="tierroute-gate-"))))
    return Path(model)


# ------------------------------------------------------------------------------------------ bench


def bench_gate_cmd(
    model: Annotated[
        Path | None,
        typer.Option(help="Gate bundle folder (default: newest models/bundles/tierroute-gate-*)."),
    ] = None,
    prompt_tokens: Annotated[int, typer.Option(help="Prompt length in tokens.")] = 200,
    response_tokens: Annotated[
        str, typer.Option(help="Comma-separated response lengths in tokens.")
    ] = "300,1500",
    repeats: Annotated[int, typer.Option(help="Timed calls per row (gate).")] = 200,
    check_repeats: Annotated[int, typer.Option(help="Timed calls per row (checks alone).")] = 5000,
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads.")] = 1,
    checks_only: Annotated[
        bool, typer.Option(help="Time the deterministic checks only (no bundle needed).")
    ] = False,
) -> None:
    """In-process latency, p50/p99: deterministic checks alone and the full gate (checks + model), one
    (prompt, response) per call. Targets: checks p99 <= 0.1 ms, gate p99 <= 30 ms."""
    from pipelines.gate.bench import run_gate_bench

    try:
        lengths = [int(v) for v in response_tokens.split(",") if v.strip()]
    except ValueError:
        raise _fail(f"--response-tokens must be comma-separated integers, got {response_tokens!r}") from None
    path = None if checks_only else (model or latest_gate_bundle())
    if path is not None and not (path / "bundle.json").is_file():
        raise _fail(f"{path} is not a gate bundle folder (no bundle.json)")
    rows = run_gate_bench(path, prompt_tokens, lengths, repeats, check_repeats, threads)
    table = Table(title=f"gate latency, in process ({path or 'no gate bundle: checks only'})")
    for col in ("what", "prompt tok", "response tok", "p50 ms", "p99 ms", "calls"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.what,
            str(r.prompt_tokens),
            str(r.response_tokens),
            f"{r.p50_ms:.4f}",
            f"{r.p99_ms:.4f}",
            str(r.calls),
        )
    console.print(table)


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Mount `gate ...` on the root app and `gate` on the bench group."""
    gate = typer.Typer(help="The response-acceptability gate: data, training, checks.", no_args_is_help=True)
    data = typer.Typer(help="Gate dataset.", no_args_is_help=True)
    data.command("build")(data_build_cmd)
    gate.add_typer(data, name="data")
    gate.command("train")(train_cmd)
    gate.command("check")(check_cmd)
    gate.command("judge")(judge_cmd)
    gate.command("calibrate")(calibrate_cmd)
    root.add_typer(gate, name="gate")
    bench.command("gate")(bench_gate_cmd)
