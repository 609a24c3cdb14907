"""Hand-row weighting of the tier/task heads, and the held-out hand-row report of `tierroute train`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.train.heads import fit_head
from pipelines.train.label_weights import DEFAULT_HAND_WEIGHT, label_kind_weights
from pipelines.train.sanity import HAND_SOURCE, heldout_hand_report


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label_kind": ["proxy", "hand", "outcome", "hand", "proxy"],
            "split": ["train", "train", "train", "test", "train"],
        }
    )


def test_label_kind_weights_weight_hand_rows_in_mask_order() -> None:
    df = _frame()
    mask = (df["split"] == "train").to_numpy()
    assert label_kind_weights(df, mask, 7.0).tolist() == [1.0, 7.0, 1.0, 1.0]  # type: ignore[union-attr]
    assert label_kind_weights(df, mask).tolist()[1] == DEFAULT_HAND_WEIGHT  # type: ignore[union-attr]
    assert label_kind_weights(df, mask, 1.0) is None  # unweighted
    assert label_kind_weights(df.drop(columns="label_kind"), mask) is None  # a user's own file
    assert label_kind_weights(df, np.array([True, False, True, False, True])) is None  # no hand row
    with pytest.raises(ValueError, match="hand_weight"):
        label_kind_weights(df, mask, 0.0)


def _conflict() -> tuple[np.ndarray, list[str], np.ndarray]:
    """Proxy rows near x=+1 say `a`, near x=-1 say `b`; 20 hand rows at x=+0.4 (proxy `a` ground) say `b`."""
    rng = np.random.default_rng(0)
    X = np.vstack(
        [
            rng.normal([1.0, 0.0], 0.3, size=(200, 2)),
            rng.normal([0.4, 0.0], 0.05, size=(20, 2)),
            rng.normal([-1.0, 0.0], 0.3, size=(200, 2)),
        ]
    )
    y = ["a"] * 200 + ["b"] * 20 + ["b"] * 200
    is_hand = np.r_[np.zeros(200), np.ones(20), np.zeros(200)].astype(bool)
    return X, y, is_hand


def test_sample_weight_lets_hand_rows_win_where_they_exist() -> None:
    X, y, is_hand = _conflict()
    probe = np.array([[0.4, 0.0]])
    plain = fit_head("tier", X, y, X, y, ("a", "b"), Cs=(1.0,))
    weighted = fit_head("tier", X, y, X, y, ("a", "b"), Cs=(1.0,), sample_weight=np.where(is_hand, 30.0, 1.0))
    assert plain.labels[int(np.argmax(plain.predict_proba(probe)))] == "a"
    assert weighted.labels[int(np.argmax(weighted.predict_proba(probe)))] == "b"
    with pytest.raises(ValueError, match="sample weights"):
        fit_head("tier", X, y, X, y, ("a", "b"), Cs=(1.0,), sample_weight=np.ones(3))


def test_heldout_hand_report_separates_hand_test_rows_from_the_rest() -> None:
    X, y, is_hand = _conflict()
    head = fit_head("tier", X, y, X, y, ("a", "b"), Cs=(1.0,))  # unweighted: calls the hand rows `a`
    df = pd.DataFrame(
        {
            "source": np.where(is_hand, HAND_SOURCE, "proxy_source"),
            "split": ["test"] * len(y),
            "tier": y,
        }
    )
    report = heldout_hand_report(df, X, [head])
    assert report["heldout_hand_rows"] == 20
    assert report["heldout_hand_tier_agreement"] < 0.2  # the head disagrees with the annotator there
    assert report["test_tier_macro_f1_without_hand"] > 0.9  # and fits every other row
    assert heldout_hand_report(df.assign(split="train"), X, [head]) == {}  # no held-out hand row
    assert heldout_hand_report(df.drop(columns="source"), X, [head]) == {}
