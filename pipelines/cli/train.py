"""Training commands: `tierroute train`, `tierroute demo`, `tierroute bench classify|variants|fast`.

Job: thin typer commands over `pipelines.*`; heavy imports happen inside command bodies so the
root `--help` stays fast and a serving-only install can still run `tierroute serve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.train.label_weights import DEFAULT_HAND_WEIGHT as HAND_WEIGHT  # numpy only: --help stays light
from serving.cli.errors import fail

ROUTING_C = 0.01
ROUTING_LENGTH_COEF = 2.0
ROUTING_OBJECTIVE = "pairwise_difficulty"
ROUTING_ROWS = 2000
ROUTING_SOURCE_WEIGHTS = {"traffic": 4.0}
"""Defaults of `pipelines.train.routing` (DEFAULT_C, ...), repeated so `--help` imports no sklearn;
tests/pipelines/train/test_routing.py checks they agree."""

console = Console(stderr=False)
err = Console(stderr=True)


def _parse_label_sets(values: list[str] | None) -> dict[str, list[str]] | None:
    if not values:
        return None
    out: dict[str, list[str]] = {}
    for item in values:
        head, sep, labels = item.partition("=")
        if not sep or not head.strip() or not labels.strip():
            raise typer.BadParameter(
                f"expected HEAD=label1,label2,... got {item!r}", param_hint="--label-set"
            )
        out[head.strip()] = [v.strip() for v in labels.split(",") if v.strip()]
    return out


def _parse_source_weights(values: list[str] | None) -> dict[str, float]:
    out = dict(ROUTING_SOURCE_WEIGHTS)
    for item in values or []:
        source, sep, weight = item.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not source.strip() or not value >= 0:
            raise typer.BadParameter(
                f"expected SOURCE=WEIGHT with a weight >= 0, got {item!r}",
                param_hint="--routing-source-weight",
            )
        out[source.strip()] = value
    return out


def train_cmd(
    data: Annotated[
        Path, typer.Option("--data", help="Labelled CSV, JSONL or Parquet with a `text` column.")
    ] = Path("data/labelled/requests.parquet"),
    label_columns: Annotated[
        str,
        typer.Option(
            "--label-columns",
            help="Comma-separated label columns; one head is trained per column, on the rows labelled "
            "for it (a row may leave some heads empty, e.g. `data from-log` rows carry only weak_ok).",
        ),
    ] = "tier,task",
    label_set: Annotated[
        list[str] | None,
        typer.Option(
            "--label-set",
            help="Declare a head's allowed labels: HEAD=a,b,c (repeatable). "
            "tier/task default to the built-in sets; other heads default to the observed labels.",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            help="Tokens the encoder sees per text (<= 512; default 128, 512 for --encoder static)."
        ),
    ] = None,
    truncation: Annotated[
        str, typer.Option(help="'head_tail' (keep start and end) or 'head'.")
    ] = "head_tail",
    head_tokens: Annotated[int, typer.Option(help="With head_tail: tokens kept from the start.")] = 32,
    precision: Annotated[
        str | None,
        typer.Option(
            help="Encoder precision: fp32, int8-static (calibrated QDQ, batches) or int8 (dynamic, one "
            "text per call). Default: int8 for the minilm encoder, fp32 for --encoder static and --distil.",
            show_default="int8 (minilm) / fp32 (static, --distil)",
        ),
    ] = None,
    encoder: Annotated[
        str,
        typer.Option(
            help="minilm (the transformer) or static (a model2vec lookup distilled from it: the fast path)."
        ),
    ] = "minilm",
    encoder_layers: Annotated[
        int | None,
        typer.Option(
            help="MiniLM transformer layers kept (1-6; 6 = the whole model; default 3: about half the "
            "compute, measured no less accurate on the shipped data; evals/RESULTS.md 'Truncated encoder')."
        ),
    ] = None,
    distil: Annotated[
        bool,
        typer.Option(
            help="With --encoder-layers < 6: first distil the cut encoder toward the 6-layer one's "
            "embeddings on the train split (a few CPU minutes, seeded, cached under models/encoder)."
        ),
    ] = False,
    full_bundle: Annotated[
        Path | None,
        typer.Option(
            help="With --encoder static: a MiniLM bundle folder; also write a two-stage bundle that answers "
            "from the static model when it is confident (bar calibrated on the validation split) and "
            "from this bundle otherwise."
        ),
    ] = None,
    two_stage_heads: Annotated[
        str | None,
        typer.Option(help="Comma-separated heads whose confidence gates the fast stage (default: all)."),
    ] = None,
    two_stage_agreement: Annotated[
        float, typer.Option(help="Validation agreement with MiniLM the fast stage's answers must reach.")
    ] = 0.97,
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = "tierroute-classifier",
    out: Annotated[Path, typer.Option(help="Folder for exported bundles.")] = Path("models/bundles"),
    register: Annotated[
        bool, typer.Option(help="Log to MLflow and register a version with alias `candidate`.")
    ] = True,
    min_confidence: Annotated[
        float, typer.Option(help="Tier confidence below which routers use rules.")
    ] = 0.5,
    hand_weight: Annotated[
        float,
        typer.Option(
            help="Loss weight of hand rows (label_kind `hand`) in the tier/task heads (1: unweighted)."
        ),
    ] = HAND_WEIGHT,
    seed: Annotated[int, typer.Option(help="Random seed for CV folds.")] = 0,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads for embedding.")] = 2,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    routing_head: Annotated[
        bool,
        typer.Option(
            help="Train the routing head (bundle output `p_weak_ok`; `complexity = 1 - p_weak_ok`) on the "
            "outcome rows and any labelled `weak_ok` rows."
        ),
    ] = True,
    outcomes: Annotated[
        Path,
        typer.Option(help="Outcome rows (`tierroute data build` writes them); built from --raw when absent."),
    ] = Path("data/labelled/outcomes.parquet"),
    raw: Annotated[Path, typer.Option(help="Raw data folder the outcome rows are built from.")] = Path(
        "data/raw"
    ),
    routing_c: Annotated[float, typer.Option("--routing-c", help="Routing head's inverse L2 strength.")] = (
        ROUTING_C
    ),
    routing_length_coef: Annotated[
        float,
        typer.Option(
            help="Length prior: weight on the standardised log token count (0: none), in standard "
            "deviations of the head's training scores ('pairwise_difficulty') or logit units ('logistic')."
        ),
    ] = ROUTING_LENGTH_COEF,
    routing_objective: Annotated[
        str,
        typer.Option(
            help="Routing head objective: 'logistic' (weak_ok, pooled) or 'pairwise_difficulty' (item "
            "difficulty ranked on pairs of rows of the same source; evals/RESULTS.md 'Routing value')."
        ),
    ] = ROUTING_OBJECTIVE,
    routing_rows_per_source: Annotated[
        int, typer.Option(help="Outcome rows per source (seeded hash sample; bounds the embedding time).")
    ] = ROUTING_ROWS,
    routing_source_weight: Annotated[
        list[str] | None,
        typer.Option(
            "--routing-source-weight",
            help="SOURCE=WEIGHT (repeatable): a source's total weight in the routing head relative to the "
            "others (1 each; 0 leaves it out). `traffic` (rows of `tierroute data from-log`) defaults to "
            f"{ROUTING_SOURCE_WEIGHTS['traffic']:g}.",
        ),
    ] = None,
    loso: Annotated[
        bool,
        typer.Option(
            help="Report leave-one-source-out APGR / CPT(50%) / CPT(80%) of the routing head per outcome "
            "source (logged as loso_* metrics)."
        ),
    ] = True,
    previous_model: Annotated[
        str | None,
        typer.Option(
            help="Bundle folder or models:/ URI (e.g. models:/tierroute-classifier@champion) whose "
            "`complexity` the LOSO report shows on the same rows."
        ),
    ] = None,
) -> None:
    """Train one calibrated head per label column on frozen MiniLM embeddings, export an ONNX bundle,
    check ONNX/training parity, log everything to MLflow and register a new version as `candidate`.

    The data file is validated before anything runs; a bad file exits with code 2 and writes nothing.
    """
    # Over 60 lines: mostly typer option declarations; the body is config -> train -> print.
    from pipelines.data.dataset import DataValidationError
    from pipelines.train.classifier import TrainConfig, train
    from serving.model.textprep import TruncationSpec

    try:
        config = TrainConfig(
            data=data,
            label_columns=tuple(c.strip() for c in label_columns.split(",") if c.strip()),
            label_sets=_parse_label_sets(label_set),
            spec=TruncationSpec(
                max_tokens=max_tokens or (512 if encoder == "static" else 128),
                strategy=truncation,  # type: ignore[arg-type]
                head_tokens=head_tokens,
            ),
            precision=precision,  # type: ignore[arg-type]
            encoder=encoder,  # type: ignore[arg-type]
            encoder_layers=encoder_layers,
            encoder_distil=distil,
            full_bundle=full_bundle,
            two_stage_heads=tuple(h.strip() for h in two_stage_heads.split(",") if h.strip())
            if two_stage_heads
            else None,
            two_stage_agreement=two_stage_agreement,
            model_name=model_name,
            out_dir=out,
            register=register,
            min_confidence=min_confidence,
            hand_weight=hand_weight,
            seed=seed,
            threads=threads,
            routing_head=routing_head,
            outcomes=outcomes,
            raw=raw,
            routing_C=routing_c,
            routing_length_coef=routing_length_coef,
            routing_objective=routing_objective,
            routing_rows_per_source=routing_rows_per_source,
            routing_source_weights=_parse_source_weights(routing_source_weight),
            loso=loso,
            previous_model=previous_model,
        )
        result = train(config, progress=progress, echo=console.print)
    except (DataValidationError, ValueError) as exc:
        raise fail(exc) from exc
    _print_metrics(result.metrics, config.label_columns)
    if result.two_stage_dir is not None:
        console.print(f"two-stage bundle: {result.two_stage_dir}")


def _print_metrics(metrics: dict[str, float], heads: tuple[str, ...] | list[str]) -> None:
    table = Table(title="test metrics")
    for col in ("head", "accuracy", "macro-F1", "log-loss", "ECE", "n"):
        table.add_column(col)
    for h in heads:
        g = lambda k, h=h: metrics.get(f"test_{h}_{k}", float("nan"))  # noqa: E731
        table.add_row(
            h,
            f"{g('accuracy'):.3f}",
            f"{g('macro_f1'):.3f}",
            f"{g('log_loss'):.3f}",
            f"{g('ece'):.3f}",
            f"{g('n'):.0f}",
        )
    console.print(table)


def bench_classify_cmd(
    bundle: Annotated[
        Path | None, typer.Option(help="Bundle folder (default: newest under models/bundles).")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed calls per cell at batch 1.")] = 100,
    tokens: Annotated[str, typer.Option(help="Comma-separated input sizes in tokens.")] = "16,64,256,1024",
    embed_texts: Annotated[
        int, typer.Option(help="Texts for the embedding-throughput row (0 to skip).")
    ] = 512,
    embed_precisions: Annotated[
        str, typer.Option(help="Encoder precisions timed for embedding throughput, same run, same texts.")
    ] = "fp32,int8-static",
) -> None:
    """Print p50/p99 in-process bundle latency (batch 1 and 32, 1 and 2 threads) and training
    embedding throughput (texts/s per encoder precision, <= 128 tokens). No timed assertions: read the
    table."""
    import platform

    from pipelines.bench.classify import bench_bundle, bench_embedding_throughput, latest_bundle

    path = bundle or latest_bundle()
    if path is None:
        raise fail("no bundle found; run `tierroute train` or pass --bundle")
    sizes = [int(x) for x in tokens.split(",") if x.strip()]
    rows = bench_bundle(path, token_sizes=sizes, repeats=repeats)
    table = Table(title=f"bundle latency, {path.name} ({platform.processor() or platform.machine()})")
    for col in ("tokens", "batch", "threads", "p50 ms", "p99 ms", "ms/text"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r.tokens),
            str(r.batch),
            str(r.threads),
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.per_text_ms:.2f}",
        )
    console.print(table)
    if embed_texts > 0:
        import json

        from serving.model.bundle import Bundle
        from serving.model.textprep import TruncationSpec

        spec = TruncationSpec.from_dict(json.loads((path / "bundle.json").read_text())["text"])
        texts = _sample_texts(embed_texts)
        rates: dict[str, float] = {}
        for precision in [p.strip() for p in embed_precisions.split(",") if p.strip()]:
            rates[precision] = rate = bench_embedding_throughput(texts, spec, precision=precision)
            first = next(iter(rates.values()))
            console.print(
                f"embedding throughput, {precision}: {rate:.0f} texts/s on {len(texts)} real texts "
                f"(max {spec.max_tokens} tokens, length-sorted batches; x{rate / first:.2f} the first row)"
            )
        del Bundle


def _sample_texts(n: int, split: str | None = None) -> list[str]:
    data = Path("data/labelled/requests.parquet")
    if data.is_file():
        import pandas as pd

        df = pd.read_parquet(data)
        if split is not None and "split" in df.columns:
            df = df[df["split"] == split]
        return df["text"].sample(n=min(n, len(df)), random_state=0).tolist()
    from pipelines.bench.classify import PARAGRAPH

    return [PARAGRAPH[: 40 + (i * 37) % 400] for i in range(n)]


def bench_variants_cmd(
    data: Annotated[Path, typer.Option(help="Labelled data to train each variant on.")] = Path(
        "data/labelled/requests.parquet"
    ),
    only: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated variant names to run (e.g. 'head_tail 128,head_tail 128 int8-static')."
        ),
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed batch-1 calls per latency cell.")] = 60,
    keep: Annotated[
        Path | None, typer.Option(help="Keep each variant's bundle in this folder (default: discarded).")
    ] = None,
) -> None:
    """Train the default heads for several truncation/precision variants (no registry) and print test
    macro-F1 (as trained, and as served one text at a time), routing value (APGR of `complexity` on the
    test rows with a `weak_ok` outcome), the bundle/training parity, training embedding throughput and
    p50/p99 latency at 64 and 1,024 tokens with its ratio to the first row of the same run: the evidence
    behind the defaults. Slow (one embedding pass per variant, cached afterwards)."""
    from pipelines.bench.variants import run_variants, select_variants

    try:
        variants = select_variants(only)
    except ValueError as exc:
        raise fail(exc) from exc
    rows = run_variants(data, variants, repeats=repeats, keep_dir=keep)
    table = Table(title="truncation / precision variants (2 threads, batch 1)")
    heads = list(rows[0].macro_f1) if rows else []
    columns = [
        "variant",
        *[f"{h} macro-F1 (train-time / served)" for h in heads],
        "routing APGR",
        "parity",
        "embed texts/s",
        "p50/p99 ms @64",
        "p50/p99 ms @1024",
        "p50 ratio @64 / @1024",
    ]
    for col in columns:
        table.add_column(col)
    base = rows[0] if rows else None
    for r in rows:
        assert base is not None
        table.add_row(
            r.name,
            *[f"{r.macro_f1[h]:.3f} / {r.served_macro_f1[h]:.3f}" for h in heads],
            f"{r.routing_apgr:.3f} ({r.routing_rows} rows)",
            f"{r.parity:.1e}",
            f"{r.embed_texts_per_s:.0f}" if r.embed_texts_per_s > 0 else "cached",
            f"{r.p50_64:.1f} / {r.p99_64:.1f}",
            f"{r.p50_1024:.1f} / {r.p99_1024:.1f}",
            f"{r.p50_64 / base.p50_64:.2f} / {r.p50_1024 / base.p50_1024:.2f}",
        )
    console.print(table)


def bench_fast_cmd(
    bundle: Annotated[
        Path,
        typer.Option(help="A two-stage bundle folder (`tierroute train --encoder static --full-bundle`)."),
    ],
    repeats: Annotated[int, typer.Option(help="Timed calls per cell at batch 1.")] = 200,
    tokens: Annotated[str, typer.Option(help="Comma-separated input sizes in tokens.")] = "64,1024",
    real_texts: Annotated[
        int, typer.Option(help="Real test-split texts timed one call each per variant (0 to skip).")
    ] = 300,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads per session.")] = 2,
) -> None:
    """Print p50/p99 in-process latency (batch 1) of the static fast path alone, MiniLM alone and the
    two-stage bundle, measured in one run, with the ratio to MiniLM and the share of requests the fast
    stage answers. No timed assertions: read the table."""
    import platform

    from pipelines.bench.fast import bench_fast

    texts = _sample_texts(real_texts, split="test") if real_texts > 0 else []
    try:
        rows = bench_fast(
            bundle, texts, [int(x) for x in tokens.split(",") if x.strip()], repeats, threads=threads
        )
    except ValueError as exc:
        raise fail(exc) from exc
    minilm = {r.inputs: r for r in rows if r.variant == "MiniLM-only"}
    table = Table(
        title=f"fast path vs MiniLM, {bundle.name}, batch 1, {threads} threads "
        f"({platform.processor() or platform.machine()})"
    )
    for col in ("variant", "inputs", "p50 ms", "p99 ms", "p50 vs MiniLM", "answered by fast stage"):
        table.add_column(col, justify="right")
    for r in rows:
        ref = minilm.get(r.inputs)
        table.add_row(
            r.variant,
            r.inputs,
            f"{r.p50_ms:.3f}",
            f"{r.p99_ms:.3f}",
            f"{r.p50_ms / ref.p50_ms:.3f}x" if ref else "-",
            f"{r.share_fast:.0%}" if r.share_fast is not None else "-",
        )
    console.print(table)


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Mount `train`, `demo` and `bench classify|variants|fast`."""
    from pipelines.cli.demo import demo_cmd

    root.command("train")(train_cmd)
    root.command("demo")(demo_cmd)
    bench.command("classify")(bench_classify_cmd)
    bench.command("variants")(bench_variants_cmd)
    bench.command("fast")(bench_fast_cmd)
