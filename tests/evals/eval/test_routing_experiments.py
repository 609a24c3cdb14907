"""`--grid within` of the routing experiments runs end to end on synthetic sources and records its picks."""

from __future__ import annotations

import numpy as np

from evals.eval.loso import leave_one_source_out, mean_apgr
from evals.eval.routing_experiments import within_grid
from serving.model.textprep import REQUEST_FEATURE_NAMES


def test_within_grid_scores_every_candidate_and_records_nested_picks() -> None:
    rng = np.random.default_rng(0)
    names = np.array(["s0", "s1", "s2"])
    src = np.repeat(names, 150)
    n = src.size
    log_tokens = rng.normal(3.0, 1.0, n)
    feats = rng.normal(size=(n, len(REQUEST_FEATURE_NAMES)))
    feats[:, list(REQUEST_FEATURE_NAMES).index("log_tokens")] = log_tokens
    emb = rng.normal(size=(n, 4))
    difficulty = 1 / (1 + np.exp(-(log_tokens - 3.0 + rng.normal(0, 0.5, n))))  # longer = harder
    ok = rng.random(n) > difficulty
    weak, strong = ok.astype(float), np.ones(n)
    picks: dict[str, dict[str, str]] = {}
    routers = within_grid(emb, feats, ok, src, weak, strong, difficulty, log_tokens, picks)
    results = leave_one_source_out(src, weak, strong, routers, {"prompt length": log_tokens}, n_boot=20)
    assert {r.router for r in results} == {"random", "prompt length", *routers}
    # length is the signal here: the difficulty head learns it, and beats random on the held-out sources
    new_default = next(k for k in routers if k.startswith("new default"))
    assert mean_apgr(results, new_default) > 0.6
    assert mean_apgr(results, "prompt length") > 0.6
    for chosen in picks.values():  # a choice per held-out source, made on the other two only
        assert set(chosen) == set(names)
        for held, text in chosen.items():
            inner = text.split("(inner", 1)[1]
            assert held not in inner and all(s in inner for s in names if s != held)
