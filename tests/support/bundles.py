"""A small real bundle for the serving tests when the real `trained_bundle` fixture is not used.

Job: train two tiny heads (tier, task) on a few templated texts with the real encoder and
write a real bundle (same builder as `tierroute train`). Quality is irrelevant here; the
serving tests only need a real ONNX graph with the contract's heads.
"""

from __future__ import annotations

from pathlib import Path

TIER_TEXTS = {
    "simple": ["What is the capital of {x}?", "Say hello to {x}.", "Translate 'cat' into {x}."],
    "complex": [
        "Write a detailed report comparing {x} markets over the last decade.",
        "Refactor this service so {x} handles retries and backpressure.",
        "Draft a migration plan for moving {x} to a new database.",
    ],
    "reasoning": [
        "Prove that the sum of the first n odd numbers about {x} is n squared.",
        "Solve step by step: a train leaves {x} at 3pm at 60 km/h ...",
        "Find all integer solutions of x^2 - 2y^2 = 1 and explain for {x}.",
    ],
}
TASK_TEXTS = {
    "code": "Write a Python function that parses {x}.",
    "math": "Compute the integral of x^2 for {x}.",
    "summarization": "Summarise this article about {x}.",
    "extraction": "Extract every date mentioned in the text about {x}.",
    "classification": "Is this review about {x} positive or negative?",
    "factual_qa": "Who discovered {x}?",
    "writing": "Write a short poem about {x}.",
    "chat": "Hi, how are you doing today with {x}?",
}
FILLERS = ["France", "penicillin", "Rust", "the moon", "tea", "Kubernetes"]


def build_small_bundle(
    out_dir: Path, encoder_cache: Path, precision: str = "fp32", *, routing: bool = False
) -> Path:
    """Export the encoder into `encoder_cache` (cached) and write a bundle to `out_dir`.

    `routing=True` adds a routing head (`p_weak_ok`) trained on "the cheap model does the simple
    texts", with two alternating sources."""
    from pipelines.data.labels import TASKS, TIERS
    from pipelines.train.bundle_build import build_bundle
    from pipelines.train.embed import Embedder
    from pipelines.train.encoder_export import export_encoder
    from pipelines.train.heads import fit_head
    from serving.model.textprep import TruncationSpec

    texts: list[str] = []
    tiers: list[str] = []
    tasks: list[str] = []
    task_names = list(TASK_TEXTS)
    i = 0
    for tier, templates in TIER_TEXTS.items():
        for template in templates:
            for x in FILLERS:
                task = task_names[i % len(task_names)]
                texts.append(f"{template.format(x=x)} {TASK_TEXTS[task].format(x=x)}")
                tiers.append(tier)
                tasks.append(task)
                i += 1
    if precision not in ("fp32", "int8", "int8-static"):
        raise ValueError(f"unknown precision {precision!r}")
    # int8-static calibrates on these same texts (fast; the shipped-data default takes ~1 min)
    calibration = texts if precision == "int8-static" else None
    encoder = export_encoder(encoder_cache, precision, calibration_texts=calibration)  # type: ignore[arg-type]
    spec = TruncationSpec()
    X = Embedder(encoder, spec, cache_dir=None).embed(texts, progress=False)
    heads = [
        fit_head("tier", X, tiers, X, tiers, TIERS, Cs=(1.0,), cv_folds=2),
        fit_head("task", X, tasks, X, tasks, TASKS, Cs=(1.0,), cv_folds=2),
    ]
    head = None
    if routing:
        import numpy as np

        from pipelines.train.routing import fit_routing_head
        from serving.model.textprep import request_feature_matrix

        head = fit_routing_head(
            X,
            request_feature_matrix(texts),
            np.array([t == "simple" for t in tiers]),
            np.array(["a", "b"] * (len(texts) // 2) + ["a"] * (len(texts) % 2)),
            C=1.0,
        )
    return build_bundle(Path(out_dir), encoder, heads, spec, name="tierroute-classifier", routing=head)
