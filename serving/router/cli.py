"""Router commands: `route`, `policy validate`, `policy to-litellm`, `bench router`.

Job: the command-line face of the router. `register(root, bench)` adds them to the root app.
Nothing here imports LiteLLM (3 s) unless a command needs it; `route` only decides (no LLM call),
so it works without provider keys. User errors (bad policy, unknown route, exhausted budget)
print a clear message on stderr and exit non-zero, without a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from serving.router.decision import (
    BudgetApplied,
    CascadePlanned,
    ClassifierConsulted,
    CooldownApplied,
    Decision,
    DefaultUsed,
    ExplicitRoute,
    ModelFiltered,
    RouterError,
    RuleMatched,
    Step,
)
from serving.router.policy import PolicyError, load_policy

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"

policy_app = typer.Typer(help="Check routing policies and translate them for LiteLLM.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _load(path: Path) -> Any:
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise _fail(str(exc)) from None


def _parse_metadata(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _fail(f"--metadata expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def describe_step(step: Step) -> str:
    if isinstance(step, ExplicitRoute):
        return f"explicit route {step.route} ({step.route_kind})"
    if isinstance(step, RuleMatched):
        return f"rule {step.rule_id} matched -> {step.target}"
    if isinstance(step, DefaultUsed):
        return f"no rule decided -> default {step.target}"
    if isinstance(step, ClassifierConsulted):
        if step.status == "ok":
            return (
                f"classifier (rule {step.rule_id}): tier {step.tier}, task {step.task}, "
                f"confidence {step.confidence:.2f}, {step.latency_ms} ms"
            )
        return f"classifier (rule {step.rule_id}): {step.status} - {step.detail}"
    if isinstance(step, ModelFiltered):
        excluded = "; ".join(f"{m}: {why}" for m, why in step.excluded.items())
        return f"{step.dimension} filter: wanted {step.wanted}, chose {step.chosen or 'nothing'} ({excluded})"
    if isinstance(step, BudgetApplied):
        moved = (
            f" {step.from_model} -> {step.to_model}"
            if step.to_model and step.to_model != step.from_model
            else ""
        )
        return f"budget {step.state}: ${step.spent_usd:.4f} of ${step.limit_usd:.2f}, {step.action}{moved}"
    if isinstance(step, CooldownApplied):
        return f"cooldown: {step.model} cooling ({', '.join(step.cooling)}) -> {step.chosen}"
    if isinstance(step, CascadePlanned):
        rate = "n/a" if step.fallback_rate is None else f"{step.fallback_rate:.0%}"
        skip = ", stage 1 skipped" if step.skip_stage1 else ""
        return f"cascade {step.name}: {step.stage1} -> gate -> {step.stage2} (fallback rate {rate}{skip})"
    return json.dumps(step.to_dict())


def _print_decision(d: Decision) -> None:
    typer.echo(f"model:      {d.model} ({d.litellm_model}, tier {d.tier})")
    typer.echo(f"decided by: {d.decided_by}")
    typer.echo(f"reason:     {d.reason}")
    typer.echo(f"fallbacks:  {', '.join(d.fallbacks) or '-'}")
    if d.cascade is not None:
        typer.echo(f"cascade:    {d.cascade.name}: {d.cascade.stage1} -> gate -> {d.cascade.stage2}")
    if d.classifier_latency_ms is not None:
        typer.echo(f"classifier: {d.classifier_latency_ms:.2f} ms")
    typer.echo(f"decided in: {d.decide_us:.0f} us")
    typer.echo("trace:")
    for i, step in enumerate(d.trace, 1):
        typer.echo(f"  {i}. {describe_step(step)}")


def route(
    policy: Path = typer.Option(..., "--policy", "-p", help="Policy YAML file.", exists=False),
    text: str = typer.Option(..., "--text", "-t", help="The user message to route."),
    system: str | None = typer.Option(None, "--system", help="System prompt sent with the message."),
    metadata: list[str] = typer.Option(
        [],
        "--metadata",
        "-m",
        help="Request metadata as key=value (repeatable), e.g. requires_code_execution=true.",
    ),
    use_case: str | None = typer.Option(None, "--use-case", help="Use-case tag (rules may match on it)."),
    sla: str | None = typer.Option(None, "--sla", help="SLA class (default: the policy's default class)."),
    critical: bool = typer.Option(
        False, "--critical", help="Mark the request critical (passes an exhausted budget)."
    ),
    route_name: str | None = typer.Option(
        None, "--route", help="Force a route (model, tier, cascade or rule id)."
    ),
    no_classifier: bool = typer.Option(
        False, "--no-classifier", help="Do not call the classifier (rules only)."
    ),
    ledger: Path | None = typer.Option(
        None, "--ledger", help="Budget ledger SQLite file (default: the policy's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
    bundle: Path | None = typer.Option(
        None,
        "--bundle",
        help="Classify in process with this local bundle folder instead of the policy's classifier url.",
    ),
) -> None:
    """Print which model the policy picks for a message, and the trace of why (no LLM is called)."""
    from serving.router.engine import Router
    from serving.router.request import RouteRequest

    pol = _load(policy)
    meta = _parse_metadata(metadata)
    kw: dict[str, Any] = {"use_case": use_case, "sla": sla, "route": route_name}
    kw = {k: v for k, v in kw.items() if v is not None}
    if critical:
        kw["critical"] = True
    classifier: Any = None if no_classifier else "policy"
    if bundle is not None and not no_classifier:
        from serving.client import BundleClassifier
        from serving.model.bundle import BundleError

        try:
            from serving.router.classify import INPROCESS_THREADS

            classifier = BundleClassifier(bundle, threads=INPROCESS_THREADS)
        except (BundleError, OSError) as exc:
            raise _fail(f"--bundle {bundle}: {exc}") from None
    router = Router(pol, classifier=classifier, ledger=ledger)
    try:
        decision = router.decide(RouteRequest.from_text(text, system=system, metadata=meta, **kw))
    except RouterError as err:
        if as_json:
            typer.echo(json.dumps(err.to_dict(), indent=2), err=True)
        else:
            typer.echo(f"error: {err}", err=True)
            for i, step in enumerate(err.trace, 1):
                typer.echo(f"  {i}. {describe_step(step)}", err=True)
        raise typer.Exit(1) from None
    finally:
        router.close()
    if as_json:
        typer.echo(json.dumps(decision.to_dict(), indent=2))
    else:
        _print_decision(decision)


@policy_app.command("validate")
def validate(policy: Path = typer.Argument(..., help="Policy YAML file.")) -> None:
    """Check a policy: shapes, references, prices; print every problem with its field and line."""
    pol = _load(policy)
    typer.echo(
        f"{policy}: ok ({len(pol.models)} models, {len(pol.rules)} rules, {len(pol.cascades)} cascades, "
        f"classifier {'on' if pol.classifier else 'off'}, budget {'on' if pol.budget else 'off'})"
    )


@policy_app.command("to-litellm")
def to_litellm(
    policy: Path = typer.Argument(..., help="Policy YAML file."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the LiteLLM config here (default: stdout)."
    ),
    no_auto_router: bool = typer.Option(
        False,
        "--no-auto-router",
        help="Leave out the complexity-router deployment that calls the classifier.",
    ),
) -> None:
    """Write the LiteLLM model_list / router_settings / fallbacks matching the policy's failover."""
    import yaml

    from serving.router.litellm_config import to_litellm_config, to_litellm_yaml

    pol = _load(policy)
    text = (
        yaml.safe_dump(to_litellm_config(pol, include_auto_router=False), sort_keys=False)
        if no_auto_router
        else to_litellm_yaml(pol, str(policy))
    )
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")


def bench_router(
    policy: Path = typer.Option(DEFAULT_POLICY, "--policy", "-p", help="Policy YAML file."),
    n: int = typer.Option(20000, "--n", help="Decisions per fast scenario.", min=100),
    n_slow: int = typer.Option(
        200, "--n-slow", help="Decisions with a blackholed classifier (each waits the timeout).", min=10
    ),
    bundle: Path | None = typer.Option(
        None,
        "--bundle",
        help="Also time decisions with this bundle in process (64 / ~900 tokens, idle / under load).",
    ),
    n_bundle: int = typer.Option(200, "--n-bundle", help="Decisions per in-process scenario.", min=10),
    threads: int = typer.Option(
        8, "--load-threads", help="Concurrent decisions for the under-load rows.", min=1
    ),
    deadline_ms: float | None = typer.Option(
        None, "--deadline-ms", help="In-process deadline (default: the policy's inprocess_timeout_ms)."
    ),
    variants: str = typer.Option(
        "before-nodeadline,before,after,after-noshed",
        "--variants",
        help="Comma-separated in-process variants to time, in this order (serving.router.bench.VARIANTS).",
    ),
    rounds: int = typer.Option(1, "--rounds", help="Alternate the variants this many times.", min=1),
    think_ms: float = typer.Option(
        0.0,
        "--think-ms",
        help="Under load, each thread pauses this long after a decision (its LLM call).",
        min=0,
    ),
    skip_overhead: bool = typer.Option(
        False, "--bundle-only", help="With --bundle, skip the decision-overhead table."
    ),
) -> None:
    """Decision overhead p50/p99: rules-only, classifier answered (minus the call), classifier unreachable;
    with --bundle, in-process decision latency and fallback share before/after batching, idle and loaded."""
    from serving.router.bench import format_classifier_table, format_table, run_bench, run_classifier_bench

    _load(policy)
    if bundle is None or not skip_overhead:
        results = run_bench(policy, n=n, n_slow=n_slow)
        typer.echo(f"tierroute bench router --policy {policy}")
        typer.echo(format_table(results))
    if bundle is not None:
        chosen = [v.strip() for v in variants.split(",") if v.strip()]
        typer.echo(
            f"\nin-process classification, bundle {bundle}, {threads} threads deciding, think {think_ms:g} ms"
        )
        typer.echo(f"load average before: {_loadavg()}")
        table = run_classifier_bench(
            policy,
            bundle,
            n=n_bundle,
            threads=threads,
            deadline_ms=deadline_ms,
            variants=chosen,
            rounds=rounds,
            think_ms=think_ms,
        )
        typer.echo(format_classifier_table(table))
        typer.echo(f"load average after: {_loadavg()}")


def _loadavg() -> str:
    import os

    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Add `route`, the `policy` group and `bench router`."""
    root.command("route", help="Print the routing decision and its trace for one message.")(route)
    root.add_typer(policy_app, name="policy")
    bench.command("router", help="Decision overhead of the router, p50/p99 in microseconds.")(bench_router)
