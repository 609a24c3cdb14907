"""The routing head (`p_weak_ok`): export, `complexity` as its monotone function, old bundles, LOSO report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from serving.model.bundle import Bundle, BundleError, complexity_from_tier_probs

TEXTS = [
    "What is the capital of France?",
    "hi",
    "Translate 'cat' into German.",
    "Prove that there are infinitely many primes, then generalise the argument to primes of the form 4k+3.",
    "Refactor this service so it handles retries and backpressure:\n```python\ndef f(x):\n    return x\n```",
    "Summarise this article about tea in three sentences. " * 12,
    "Solve step by step: a train leaves at 3pm at 60 km/h; a second at 4pm at 80 km/h. When do they meet?",
    "| name | age |\n| --- | --- |\n| Ann | 31 |\nExtract the ages as JSON.",
]


@pytest.fixture(scope="module")
def bundles(session_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle with a routing head, the same heads without one: an old-style bundle)."""
    from tests.support.bundles import build_small_bundle

    root = tmp_path_factory.mktemp("routing-bundles")
    cache = session_cache / "encoder"
    return (
        build_small_bundle(root / "with", cache, routing=True),
        build_small_bundle(root / "without", cache, routing=False),
    )


def test_complexity_is_one_minus_p_weak_ok_and_monotone(bundles: tuple[Path, Path]) -> None:
    bundle = Bundle.load(bundles[0])
    bundle.self_check()
    preds = bundle.predict(TEXTS)
    p = np.array([x.p_weak_ok for x in preds], dtype=float)
    c = np.array([x.complexity for x in preds], dtype=float)
    assert np.all((p >= 0.0) & (p <= 1.0))
    np.testing.assert_allclose(c, 1.0 - p, atol=1e-6)
    order = np.argsort(p)
    assert np.all(np.diff(c[order]) <= 1e-9)  # higher p_weak_ok, never higher complexity
    for x in preds:
        r = x.to_result()
        assert r["p_weak_ok"] == x.p_weak_ok and r["tier"] == max(r["tier_probs"], key=r["tier_probs"].get)


def test_bundle_without_routing_head_serves_as_before(bundles: tuple[Path, Path]) -> None:
    with_head, without = (Bundle.load(b) for b in bundles)
    assert "routing" not in without.manifest and without.routing is None
    without.self_check()
    old = without.predict_arrays(TEXTS)
    new = with_head.predict_arrays(TEXTS)
    assert old.p_weak_ok is None
    for head in ("tier", "task"):  # the routing head changes no other output
        np.testing.assert_allclose(old.probs[head], new.probs[head], atol=1e-6)
    for pred, tier in zip(without.predict(TEXTS), old.probs["tier"], strict=True):
        r = pred.to_result()
        assert r["p_weak_ok"] is None
        assert r["complexity"] == pytest.approx(float(complexity_from_tier_probs(tier[None, :])[0]), abs=1e-6)


def test_routing_head_reading_other_features_is_refused(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundles[0], copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["routing"]["features"] = list(reversed(manifest["routing"]["features"]))
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="request features"):
        Bundle.load(copy)


def test_recorded_p_weak_ok_is_checked(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundles[0], copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    case = manifest["self_check"]["cases"][0]
    case["p_weak_ok"] = 1.0 - case["p_weak_ok"] if abs(case["p_weak_ok"] - 0.5) > 0.1 else 0.99
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="p_weak_ok"):
        Bundle.load(copy).self_check()


def _synthetic(n: int = 900, seed: int = 0) -> dict[str, np.ndarray]:
    """Three sources; the cheap model fails long requests (log tokens) and a 'hard' embedding direction."""
    from serving.model.textprep import REQUEST_FEATURE_NAMES

    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 16)).astype(np.float32)
    feats = rng.normal(size=(n, len(REQUEST_FEATURE_NAMES))).astype(np.float32)
    log_tokens = feats[:, REQUEST_FEATURE_NAMES.index("log_tokens")]
    logit = -1.5 * log_tokens - 1.0 * emb[:, 0]
    ok = rng.random(n) < 1 / (1 + np.exp(-logit))
    strong = np.ones(n)
    weak = ok.astype(float)
    src = np.array(["a", "b", "c"])[np.arange(n) % 3]
    return {
        "emb": emb,
        "feats": feats,
        "ok": ok,
        "weak": weak,
        "strong": strong,
        "src": src,
        "len": log_tokens,
    }


def test_length_prior_and_calibration() -> None:
    from pipelines.train.routing import equal_source_weights, fit_routing_head

    d = _synthetic()
    head = fit_routing_head(d["emb"], d["feats"], d["ok"], d["src"], C=1.0, length_coef=0.0)
    p = head.predict(d["emb"], d["feats"])
    assert abs(float(p.mean()) - float(d["ok"].mean())) < 0.05  # calibrated on its training rows
    assert np.corrcoef(p, d["len"])[0, 1] < -0.3  # learned: longer -> less likely fine
    longer = d["feats"].copy()
    longer[:, 0] += 1.0
    prior = fit_routing_head(d["emb"], d["feats"], d["ok"], d["src"], C=1.0, length_coef=3.0)
    gain = prior.predict(d["emb"], d["feats"]) - prior.predict(d["emb"], longer)
    base = head.predict(d["emb"], d["feats"]) - head.predict(d["emb"], longer)
    assert float(np.mean(gain)) > float(np.mean(base)) > 0  # the prior adds to the learned length weight
    w = equal_source_weights(np.array(["a", "a", "a", "b"]))
    assert w.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])


def test_loso_report_keys_and_ranges() -> None:
    from pipelines.train.loso import HEAD_ROUTER, LENGTH_ROUTER, loso_metrics, routing_loso
    from pipelines.train.routing import fit_routing_head

    d = _synthetic()

    def fit_score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        head = fit_routing_head(d["emb"][train], d["feats"][train], d["ok"][train], d["src"][train], C=1.0)
        return 1.0 - head.predict(d["emb"][test], d["feats"][test])

    results = routing_loso(d["src"], d["weak"], d["strong"], d["len"], fit_score, n_boot=50)
    assert {(r.source, r.router) for r in results} >= {(s, HEAD_ROUTER) for s in "abc"} | {
        ("a", LENGTH_ROUTER)
    }
    m = loso_metrics(results)
    for s in "abc":
        for key in (f"loso_apgr_{s}", f"loso_cpt50_{s}", f"loso_cpt80_{s}", f"loso_length_apgr_{s}"):
            assert 0.0 <= m[key] <= 1.0, key
        assert m[f"loso_random_apgr_{s}"] == pytest.approx(0.5)
        assert m[f"loso_apgr_{s}"] > 0.6  # the signal is learnable across sources here
    assert m["loso_apgr_min"] <= m["loso_apgr_mean"] <= 1.0


def test_train_reports_loso_and_exports_the_head(trained) -> None:  # type: ignore[no-untyped-def]
    m = trained.metrics
    sources = [k.removeprefix("loso_apgr_") for k in m if k.startswith("loso_apgr_")]
    sources = [s for s in sources if s not in ("mean", "min")]
    assert {"llmrouter_scores", "mmlu_pro_outcomes", "alpaca_eval_preferences"} <= set(sources)
    for s in sources:
        for key in (f"loso_apgr_{s}", f"loso_length_apgr_{s}", f"loso_cpt50_{s}", f"loso_cpt80_{s}"):
            assert 0.0 <= m[key] <= 1.0, key
    manifest = json.loads((Path(trained.bundle_dir) / "bundle.json").read_text())
    assert (
        manifest["routing"]["output"] == "p_weak_ok" and manifest["routing"]["complexity"] == "1 - p_weak_ok"
    )
    assert "loso_apgr_mean" in manifest["metrics"]


def test_cli_defaults_match_the_module() -> None:
    from pipelines.cli import train as cli
    from pipelines.train import routing

    assert (
        cli.ROUTING_C,
        cli.ROUTING_LENGTH_COEF,
        cli.ROUTING_OBJECTIVE,
        cli.ROUTING_ROWS,
        cli.ROUTING_SOURCE_WEIGHTS,
    ) == (
        routing.DEFAULT_C,
        routing.DEFAULT_LENGTH_COEF,
        routing.DEFAULT_OBJECTIVE,
        routing.DEFAULT_ROWS_PER_SOURCE,
        routing.DEFAULT_SOURCE_WEIGHTS,
    )


def test_previous_model_complexity_on_the_scored_rows(bundles: tuple[Path, Path]) -> None:
    """`--previous-model DIR`: the previous bundle's `complexity` on the rows with both qualities."""
    import pandas as pd

    from pipelines.train.classifier import _previous_complexity

    rows = pd.DataFrame(
        {
            "text": TEXTS,
            "weak_quality": [1.0, np.nan, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0],
            "strong_quality": [1.0, np.nan, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    got = _previous_complexity(str(bundles[1]), rows, lambda _m: None)
    assert got is not None and got.shape == (7,)
    scored = [t for i, t in enumerate(TEXTS) if i != 1]
    want = [p.complexity for p in Bundle.load(bundles[1]).predict(scored)]
    np.testing.assert_allclose(got, np.array(want, dtype=float), atol=1e-6)
    assert _previous_complexity(None, rows, lambda _m: None) is None


def test_routing_rows_read_weak_ok_strings_and_keep_traffic_as_its_source(tmp_path: Path) -> None:
    """The closed-loop bug: the validated frame holds `weak_ok` as the strings "true"/"false", and
    `astype(bool)` read "false" as True, so every traffic row taught the head "the cheap model is fine"."""
    import pandas as pd

    from pipelines.train.routing import routing_rows

    outcomes = tmp_path / "outcomes.parquet"
    pd.DataFrame(
        {
            "id": ["o1", "o2", "o3"],
            "text": ["outcome a", "outcome b", "also an outcome text"],
            "source": ["src_a", "src_a", "src_b"],
            "weak_ok": [True, False, True],
            "weak_quality": [1.0, 0.0, 1.0],
            "strong_quality": [1.0, 1.0, 1.0],
        }
    ).to_parquet(outcomes)
    labelled = pd.DataFrame(
        {
            "text": [
                "Erkläre das bitte.",
                "Explain it, please.",
                "Was ist das?",
                "no label",
                "also an outcome text",
            ],
            "source": ["traffic", "traffic", "traffic", "traffic", "traffic"],
            "weak_ok": pd.array(["false", "true", "false", None, "false"], dtype="string"),
        }
    )
    rows = routing_rows(labelled, outcomes, None, rows_per_source=1, echo=lambda _m: None)
    traffic = rows[rows["source"] == "traffic"].set_index("text")["weak_ok"].to_dict()
    assert traffic == {"Erkläre das bitte.": False, "Explain it, please.": True, "Was ist das?": False}
    # capped (1 per source): the outcome row the cap left out does not come back as a labelled row
    assert rows["source"].value_counts().to_dict() == {"traffic": 3, "src_a": 1, "src_b": 1}
    # a labelled row of an outcome source is the outcome rows' business, even with a new text
    from_outcome_source = labelled.assign(source="src_a", text=["x1", "x2", "x3", "x4", "x5"])
    rows = routing_rows(from_outcome_source, outcomes, None, echo=lambda _m: None)
    assert set(rows["source"]) == {"src_a", "src_b"}
    with pytest.raises(ValueError, match="weak_ok must be"):
        routing_rows(labelled.assign(weak_ok="maybe"), None, None, echo=lambda _m: None)
    # an outcomes file written before `difficulty` existed: NaN (the pairwise head ranks by weak_ok)
    assert rows["difficulty"].isna().all()


def test_routing_rows_carry_the_outcome_difficulty(tmp_path: Path) -> None:
    import pandas as pd

    from pipelines.train.routing import routing_rows

    outcomes = tmp_path / "outcomes.parquet"
    pd.DataFrame(
        {
            "id": ["o1", "o2"],
            "text": ["outcome a", "outcome b"],
            "source": ["src_a", "src_a"],
            "weak_ok": [True, False],
            "weak_quality": [1.0, 0.0],
            "strong_quality": [1.0, 1.0],
            "difficulty": [0.1, 0.7],
        }
    ).to_parquet(outcomes)
    labelled = pd.DataFrame({"text": ["t"], "source": ["traffic"], "weak_ok": [False]})
    rows = routing_rows(labelled, outcomes, None, echo=lambda _m: None).set_index("text")
    assert rows.loc["outcome a", "difficulty"] == 0.1
    assert rows.loc["outcome b", "difficulty"] == 0.7
    assert np.isnan(rows.loc["t", "difficulty"])


def test_source_weights_scale_a_sources_total_weight() -> None:
    from pipelines.train.routing import equal_source_weights

    src = np.array(["a", "a", "a", "traffic"])
    w = equal_source_weights(src, {"traffic": 3.0})
    assert w.mean() == pytest.approx(1.0)
    assert w[src == "traffic"].sum() == pytest.approx(3 * w[src == "a"].sum())
    assert equal_source_weights(src, {"traffic": 0.0})[-1] == 0.0
    with pytest.raises(ValueError):
        equal_source_weights(src, {"a": 0.0, "traffic": 0.0})
