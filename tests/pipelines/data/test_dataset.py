"""load_labelled_file: the happy paths in every format and every validation error path."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines.data.dataset import DataValidationError, LabelledData, dataset_digest, load_labelled_file
from pipelines.data.labels import TASKS, TIERS

TIER_TASK = ["tier", "task"]


def good_rows(per_class: int = 8, with_id: bool = True) -> list[dict[str, Any]]:
    """per_class rows for every tier and every task (tiers and tasks cycle independently)."""
    rows = []
    for i in range(per_class * len(TASKS)):
        row: dict[str, Any] = {
            "text": f"request number {i}: please help with item {i * 3}",
            "tier": TIERS[i % len(TIERS)],
            "task": TASKS[i % len(TASKS)],
        }
        if with_id:
            row = {"id": f"r{i}", **row}
        rows.append(row)
    return rows


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".csv":
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


def error(path: Path, columns: list[str] = TIER_TASK, **kwargs: Any) -> str:
    with pytest.raises(DataValidationError) as info:
        load_labelled_file(path, columns, **kwargs)
    message = str(info.value)
    assert str(path) in message  # every message names the file
    return message


# ----------------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_loads_every_format_to_the_same_data(tmp_path: Path, suffix: str) -> None:
    data = load_labelled_file(write(tmp_path / f"d{suffix}", good_rows()), TIER_TASK)
    reference = load_labelled_file(write(tmp_path / "ref.jsonl", good_rows()), TIER_TASK)
    assert isinstance(data, LabelledData)
    assert list(data.df.columns) == ["id", "text", "tier", "task", "split"]
    assert len(data.df) == 64
    assert data.label_sets == {"tier": TIERS, "task": TASKS}
    assert data.digest == reference.digest
    assert data.digest == dataset_digest(data.df, ["id", "text", "tier", "task", "split"])
    assert set(data.df["split"]) <= {"train", "validation", "test"}
    assert len(data.split("train")) + len(data.split("validation")) + len(data.split("test")) == 64


def test_ids_and_splits_are_derived_when_absent(tmp_path: Path) -> None:
    rows = good_rows(with_id=False)
    rows.append(dict(rows[0]))  # the same text twice
    data = load_labelled_file(write(tmp_path / "d.jsonl", rows), TIER_TASK)
    ids = data.df["id"].tolist()
    assert len(set(ids)) == len(ids)
    assert ids[-1] == ids[0] + "#2"
    assert data.df["split"].iloc[-1] == data.df["split"].iloc[0]  # copies never straddle splits
    again = load_labelled_file(write(tmp_path / "e.csv", rows), TIER_TASK)
    assert again.df["split"].tolist() == data.df["split"].tolist()  # stable: hash of the text
    assert again.digest == data.digest


def test_given_split_column_is_used(tmp_path: Path) -> None:
    rows = good_rows()
    for i, row in enumerate(rows):
        row["split"] = ("train", "validation", "test")[i % 3]
    data = load_labelled_file(write(tmp_path / "d.csv", rows), TIER_TASK)
    assert data.df["split"].tolist() == [r["split"] for r in rows]


def test_custom_heads_use_observed_or_declared_labels(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "urgency": ("low", "high")[i % 2], "tier": TIERS[i % 3]} for i in range(30)]
    path = write(tmp_path / "d.jsonl", rows)
    data = load_labelled_file(path, ["urgency"])
    assert data.label_sets == {"urgency": ("high", "low")}
    declared = load_labelled_file(path, ["urgency"], {"urgency": ["low", "high"]})
    assert declared.label_sets == {"urgency": ("low", "high")}
    message = error(path, ["urgency"], label_sets={"urgency": ["low", "medium", "high"]})
    assert "'medium' has 0" in message


def test_int_and_bool_labels_are_strings(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "flag": i % 2 == 0, "stars": i % 2 + 1} for i in range(20)]
    data = load_labelled_file(write(tmp_path / "d.jsonl", rows), ["flag", "stars"])
    assert data.label_sets == {"flag": ("false", "true"), "stars": ("1", "2")}


def test_missing_labels_allowed_on_request(tmp_path: Path) -> None:
    rows = good_rows()
    for row in rows[:20]:
        row["weak_ok"] = True
    for row in rows[20:40]:
        row["weak_ok"] = False
    path = write(tmp_path / "d.jsonl", rows)
    assert "label is missing" in error(path, ["tier", "weak_ok"])
    data = load_labelled_file(path, ["tier", "weak_ok"], allow_missing_labels=True)
    assert int(data.df["weak_ok"].isna().sum()) == len(rows) - 40


def test_shipped_labelled_set_validates() -> None:
    path = Path(__file__).resolve().parents[3] / "data" / "labelled" / "requests.parquet"
    data = load_labelled_file(path, ["tier", "task"], allow_missing_labels=True)  # as `train` reads it
    shipped = pd.read_parquet(path)
    # some sources leave a proxy label empty (data/README.md, "Proxy labels left empty")
    assert "label is missing" in error(path, ["tier", "task"])
    assert int(data.df["tier"].isna().sum()) == int(shipped["tier"].isna().sum()) > 0
    assert data.df["split"].tolist() == shipped["split"].tolist()  # the shipped split is kept
    assert data.df["id"].tolist() == shipped["id"].tolist()


# ----------------------------------------------------------------------------------- error paths


def test_missing_text_column_suggests_close_match(tmp_path: Path) -> None:
    rows = [{"Text" if k == "text" else k: v for k, v in r.items()} for r in good_rows()]
    message = error(write(tmp_path / "d.csv", rows))
    assert "missing column 'text'" in message and "did you mean 'Text'" in message


def test_misnamed_label_column_suggests_close_match(tmp_path: Path) -> None:
    message = error(write(tmp_path / "d.jsonl", good_rows()), ["tiers", "task"])
    assert "missing column 'tiers'" in message and "did you mean 'tier'" in message
    assert "Columns found: 'id', 'text', 'tier', 'task'" in message


def test_no_label_columns_or_reserved_or_repeated(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", good_rows())
    assert "no label columns" in error(path, [])
    assert "cannot be a label column" in error(path, ["split"])
    assert "listed twice" in error(path, ["tier", "tier"])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_empty_or_whitespace_text(tmp_path: Path, suffix: str) -> None:
    rows = good_rows()
    rows[3]["text"] = ""
    rows[5]["text"] = "   \n "
    message = error(write(tmp_path / f"d{suffix}", rows))
    where = {".csv": ("line 5", "line 7"), ".jsonl": ("line 4", "line 6"), ".parquet": ("row 4", "row 6")}[
        suffix
    ]
    assert "column 'text'" in message and "2 bad row(s)" in message
    assert f"{where[0]}: text is empty" in message and f"{where[1]}: text is empty" in message


def test_non_string_text_in_jsonl(tmp_path: Path) -> None:
    rows = good_rows()
    rows[2]["text"] = 42
    rows[4]["text"] = None
    message = error(write(tmp_path / "d.jsonl", rows))
    assert "line 3: text is int 42, expected a string" in message
    assert "line 5: text is NoneType None" in message


def test_label_outside_declared_set_names_line_and_value(tmp_path: Path) -> None:
    rows = good_rows()
    rows[6]["tier"] = "hard"
    message = error(write(tmp_path / "d.csv", rows))
    assert "column 'tier'" in message and "outside the declared set" in message
    assert "line 8: 'hard'" in message and "'simple', 'complex', 'reasoning'" in message


def test_listing_is_limited_to_the_first_few(tmp_path: Path) -> None:
    rows = good_rows()
    for row in rows[:12]:
        row["task"] = "poetry"
    message = error(write(tmp_path / "d.jsonl", rows))
    assert "12 label(s) outside" in message and "and 7 more" in message
    assert "line 5: 'poetry'" in message and "line 6: 'poetry'" not in message


def test_class_with_too_few_rows(tmp_path: Path) -> None:
    rows = good_rows(per_class=8)
    rows = [r for r in rows if r["task"] != "code"] + [r for r in rows if r["task"] == "code"][:3]
    message = error(write(tmp_path / "d.jsonl", rows))
    assert "column 'task'" in message and "too few rows" in message and "'code' has 3" in message
    assert load_labelled_file(tmp_path / "d.jsonl", TIER_TASK, min_rows_per_class=3).df.shape[0] == len(rows)


def test_single_class_column(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "mood": "calm"} for i in range(20)]
    assert "at least 2 classes" in error(write(tmp_path / "d.jsonl", rows), ["mood"])


def test_missing_label_value(tmp_path: Path) -> None:
    rows = good_rows()
    rows[9]["tier"] = ""
    assert "line 11: label is missing" in error(write(tmp_path / "d.csv", rows))


def test_non_scalar_label(tmp_path: Path) -> None:
    rows = good_rows()
    rows[0]["tier"] = ["simple"]
    assert "line 1: value ['simple'] is a list" in error(write(tmp_path / "d.jsonl", rows))


def test_duplicate_ids(tmp_path: Path) -> None:
    rows = good_rows()
    rows[10]["id"] = "r1"
    rows[11]["id"] = "r1"
    message = error(write(tmp_path / "d.csv", rows))
    assert "column 'id'" in message and "2 duplicate id(s)" in message
    assert "line 12: id 'r1' already used at line 3" in message


def test_empty_id(tmp_path: Path) -> None:
    rows = good_rows()
    rows[4]["id"] = " "
    assert "line 5: id is missing" in error(write(tmp_path / "d.jsonl", rows))


def test_bad_split_value(tmp_path: Path) -> None:
    rows = good_rows()
    for row in rows:
        row["split"] = "train"
    rows[7]["split"] = "dev"
    assert "column 'split'" in (message := error(write(tmp_path / "d.csv", rows)))
    assert "line 9: 'dev'" in message


def test_bad_json_line_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", good_rows())
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = '{"id": "r4", "text": "broken'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "line 5: invalid JSON" in error(path)


def test_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"text": "a", "tier": "simple", "task": "chat"}\n["not", "an", "object"]\n', encoding="utf-8"
    )
    assert "line 2: expected a JSON object, got list" in error(path)


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "d.parquet", good_rows())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "unreadable or corrupt Parquet" in error(path)
    garbage = tmp_path / "g.parquet"
    garbage.write_bytes(b"this is not parquet at all")
    assert "unreadable or corrupt Parquet" in error(garbage)


def test_unknown_extension_missing_file_empty_file(tmp_path: Path) -> None:
    other = tmp_path / "d.xlsx"
    other.write_text("x", encoding="utf-8")
    assert "unsupported file type '.xlsx'" in error(other)
    assert "file not found" in error(tmp_path / "nope.csv")
    assert "not a file" in error(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    assert "no data rows" in error(empty)
    header_only = tmp_path / "h.csv"
    header_only.write_text("text,tier,task\n", encoding="utf-8")
    assert "no data rows" in error(header_only)


def test_csv_row_with_too_many_values(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", good_rows())
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] += ",extra"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "line 4: more values than the 4 header columns" in error(path)


def test_semicolon_separated_csv_is_read(tmp_path: Path) -> None:
    """European spreadsheets export ';'-separated .csv: the header decides the delimiter; texts may
    still hold commas."""
    rows = good_rows()
    rows[0]["text"] = "hello, world; and more"
    comma = load_labelled_file(write(tmp_path / "c.csv", rows), TIER_TASK)
    path = tmp_path / "s.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    semi = load_labelled_file(path, TIER_TASK)
    assert semi.digest == comma.digest
    assert semi.df["text"].iloc[0] == "hello, world; and more"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("text,tier,task\ncaf\xe9,simple,chat\n".encode("latin-1"))
    assert "not UTF-8" in error(path)


def test_csv_line_numbers_count_multiline_fields(tmp_path: Path) -> None:
    rows = good_rows()
    rows[0]["text"] = "first line\nsecond line"
    rows[2]["tier"] = "hard"
    # header = line 1, row 0 spans lines 2-3, row 1 = line 4, row 2 = line 5
    assert "line 5: 'hard'" in error(write(tmp_path / "d.csv", rows))


def test_group_column_is_kept_and_filled(tmp_path: Path) -> None:
    rows = good_rows()
    for i, row in enumerate(rows):
        row["group"] = f"g{i // 2}" if i < 10 else ""
    data = load_labelled_file(write(tmp_path / "d.csv", rows), TIER_TASK)
    assert data.df["group"].tolist()[:4] == ["g0", "g0", "g1", "g1"]
    assert data.df["group"].iloc[20] == data.df["id"].iloc[20]
    assert "cannot be a label column" in error(tmp_path / "d.csv", ["group"])
    assert "group" not in load_labelled_file(write(tmp_path / "e.jsonl", good_rows()), TIER_TASK).df.columns


def test_provenance_columns_pass_through_without_changing_the_digest(tmp_path: Path) -> None:
    rows = good_rows()
    plain = load_labelled_file(write(tmp_path / "plain.jsonl", rows), TIER_TASK)
    for i, row in enumerate(rows):
        row["label_kind"] = "hand" if i % 4 == 0 else "proxy"
        row["source"] = None if i == 1 else f"src{i % 2}"
    data = load_labelled_file(write(tmp_path / "d.jsonl", rows), TIER_TASK)
    assert data.df["label_kind"].tolist()[:4] == ["hand", "proxy", "proxy", "proxy"]
    assert data.df["source"].tolist()[:3] == ["src0", "", "src0"]
    assert data.digest == plain.digest  # provenance is not part of what the model learns from
    assert "label_kind" not in plain.df.columns and "source" not in plain.df.columns


def test_one_reader_for_train_and_evals_in_every_format(tmp_path: Path) -> None:
    """CSV, TSV, JSONL, JSON and Parquet give the same rows to `train`/`data validate` and to `eval`."""
    from evals.io.tables import InputError, read_table
    from pipelines.data.dataset import read_frame

    df = pd.DataFrame(
        {
            "text": ["hello there", "prove that 2+2=4", "fix my code"],
            "tier": ["simple", "reasoning", "complex"],
        }
    )
    df["weak_ok"] = [1, 0, 1]
    paths = {
        "csv": lambda p: df.to_csv(p, index=False),
        "tsv": lambda p: df.to_csv(p, index=False, sep="\t"),
        "jsonl": lambda p: df.to_json(p, orient="records", lines=True),
        "json": lambda p: df.to_json(p, orient="records"),
        "parquet": lambda p: df.to_parquet(p),
    }
    for suffix, write in paths.items():
        path = tmp_path / f"rows.{suffix}"
        write(path)
        for read in (read_frame, read_table):
            got = read(path)
            assert got["text"].tolist() == df["text"].tolist(), (suffix, read)
            assert got["tier"].tolist() == df["tier"].tolist(), (suffix, read)
            assert [int(v) for v in got["weak_ok"]] == [1, 0, 1], (suffix, read)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"text": "a"},\n {"text": ]')
    with pytest.raises(DataValidationError, match=r"broken\.json: line 2: invalid JSON"):
        read_frame(broken)
    with pytest.raises(InputError, match=r"broken\.json: line 2: invalid JSON"):
        read_table(broken)
