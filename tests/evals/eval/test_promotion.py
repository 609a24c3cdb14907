"""The eval promotion gate: paired comparison per head and per required slice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import evals.eval.promotion as promotion

HEADS = {"tier": ("simple", "complex", "reasoning")}


@dataclass
class _V:
    uri: str


@dataclass
class _Ctx:
    candidate: _V
    champion: _V | None
    tolerance: float = 0.01
    tracking_uri: str | None = None


@pytest.fixture()
def labelled(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 3, n)
    df = pd.DataFrame(
        {
            "text": [f"t{i}" for i in range(n)],
            "tier": [HEADS["tier"][i] for i in y],
            "source": np.where(np.arange(n) < 300, "big", "small"),
        }
    )
    path = tmp_path / "set.csv"
    df.to_csv(path, index=False)
    return path, y


def _fake(preds: dict[str, np.ndarray]) -> Any:
    def predictions(
        uri: str, texts: list[str], tracking_uri: str | None
    ) -> tuple[dict[str, np.ndarray], Any]:
        return {"tier": preds[uri]}, HEADS

    return predictions


def test_regression_on_required_slice_refuses(labelled: tuple[Path, np.ndarray], monkeypatch: Any) -> None:
    path, y = labelled
    champ = y.copy()
    cand = y.copy()
    cand[300:] = (y[300:] + 1) % 3  # candidate breaks the `small` slice completely
    monkeypatch.setattr(promotion, "_predictions", _fake({"c": cand, "p": champ}))
    rows = promotion.eval_gate([path], required_slices=["small"], n_boot=200)(_Ctx(_V("c"), _V("p")))
    by_metric = {r.metric: r for r in rows}
    small = by_metric["set.csv:source=small:tier_macro_f1"]
    assert not small.ok and small.delta < -0.5 and "worse by" in small.note
    assert not by_metric["set.csv:all:tier_macro_f1"].ok  # overall drops too (100 of 400 rows wrong)
    big = by_metric["set.csv:source=big:tier_macro_f1"]
    assert big.ok and "informational" in big.note  # not required


def test_identical_models_pass_and_no_champion_records_only(
    labelled: tuple[Path, np.ndarray], monkeypatch: Any
) -> None:
    path, y = labelled
    monkeypatch.setattr(promotion, "_predictions", _fake({"c": y, "p": y}))
    rows = promotion.eval_gate([path], required_slices=["*"], n_boot=200)(_Ctx(_V("c"), _V("p")))
    assert rows and all(r.ok and r.delta == 0 for r in rows)
    rows = promotion.eval_gate([path])(_Ctx(_V("c"), None))
    assert len(rows) == 1 and rows[0].ok and rows[0].champion is None and rows[0].candidate == 1.0


def test_promotion_checks_validate_files_before_promotion(tmp_path: Path) -> None:
    """Bad `--eval-set` input is an error (exit 2 upstream), not a check that refuses later."""
    from pipelines.cli.registry import EvalSetRequest

    df = pd.DataFrame(
        {
            "text": ["a", "b", "c", "d"],
            "tier": ["simple"] * 4,
            "source": ["x", "y", "x", "y"],
            "split": ["train", "test", "test", "train"],
        }
    )
    path = tmp_path / "with_split.csv"
    df.to_csv(path, index=False)
    assert promotion.eval_rows(path, "auto")["text"].tolist() == ["b", "c"]  # the test split
    assert len(promotion.eval_rows(path, None)) == 4
    no_split = tmp_path / "plain.csv"
    df.drop(columns="split").to_csv(no_split, index=False)
    assert len(promotion.eval_rows(no_split, "auto")) == 4  # no split column: every row

    def request(**kw: Any) -> EvalSetRequest:
        base: dict[str, Any] = {
            "files": [path],
            "tolerance": 0.01,
            "slice_column": "source",
            "required_slices": [],
            "split": "auto",
        }
        return EvalSetRequest(**{**base, **kw})

    checks = promotion.promotion_checks(request(required_slices=["x"]))
    assert [c.__name__ for c in checks] == ["eval_gate", "routing_value_gate"]
    with pytest.raises(ValueError, match=r"required slice\(s\) \['zz'\] not found"):
        promotion.promotion_checks(request(required_slices=["zz"]))
    with pytest.raises(ValueError, match="'lang' is not in the file"):
        promotion.promotion_checks(request(slice_column="lang", required_slices=["*"]))
    with pytest.raises(ValueError, match="split == 'validation'"):
        promotion.promotion_checks(request(split="validation"))
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,tier\nhi,simple\n")
    with pytest.raises(ValueError, match="text"):
        promotion.promotion_checks(request(files=[bad]))
