"""Every source format converts into the expected canonical records, from every file type."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from polyinstruct.data.formats import detect_format, read_records, write_records
from polyinstruct.data.sources import _iter_json
from polyinstruct.errors import UnknownNameError

FIX = Path(__file__).parent / "fixtures"


def expected(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIX / "expected" / name).read_text(encoding="utf-8").splitlines() if line]


def got(path, fmt=None, **kw) -> list[dict]:
    return [c.to_dict() for c in read_records(path, fmt, **kw)]


CASES = [
    ("alpaca.json", "alpaca", "alpaca.jsonl", {"language": "en"}),
    ("sharegpt.jsonl", "sharegpt", "sharegpt.jsonl", {}),
    ("openai.jsonl", "messages", "openai.jsonl", {}),
    ("dolly.jsonl", "dolly", "dolly.jsonl", {}),
    ("prompt_completion.csv", "prompt_completion", "prompt_completion.jsonl", {}),
    ("flan.jsonl", "flan", "flan.jsonl", {}),
    ("oasst1.jsonl", "oasst1", "oasst1_top.jsonl", {}),
]


@pytest.mark.parametrize("fixture,fmt,exp,kw", CASES, ids=[c[1] for c in CASES])
@pytest.mark.parametrize("explicit", [True, False], ids=["named", "detected"])
def test_each_format_converts_to_expected_records(fixture, fmt, exp, kw, explicit):
    assert got(FIX / fixture, fmt if explicit else None, **kw) == expected(exp)


def test_sharegpt_system_message_becomes_first_system_turn():
    conv = next(iter(read_records(FIX / "sharegpt.jsonl")))
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "user", "assistant"]


def test_oasst_every_path_of_a_multi_branch_tree():
    assert got(FIX / "oasst1.jsonl", "oasst1", oasst_paths="all") == expected("oasst1_all.jsonl")


def test_oasst_nested_trees_export_matches_flat_table():
    flat = got(FIX / "oasst1.jsonl", "oasst1", source="oasst1")[:1]
    nested = got(FIX / "oasst_trees.jsonl", source="oasst1")
    assert nested == flat


def test_oasst_rows_of_a_tree_must_be_contiguous(tmp_path):
    rows = (FIX / "oasst1.jsonl").read_text(encoding="utf-8").splitlines()
    p = tmp_path / "shuffled.jsonl"
    p.write_text("\n".join(rows[:3] + rows[7:8] + rows[3:7] + rows[8:]) + "\n", encoding="utf-8")
    with pytest.raises(Exception, match="not contiguous"):
        got(p, "oasst1")


def test_parquet_csv_folder_and_save_to_disk_inputs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = json.loads((FIX / "alpaca.json").read_text(encoding="utf-8"))
    want = [(r["instruction"], r["output"]) for r in rows]

    def pairs(records):
        return [(r["messages"][0]["content"].split("\n\n")[0], r["messages"][-1]["content"]) for r in records]

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    assert pairs(got(tmp_path / "a.parquet")) == want
    assert [r["id"] for r in got(tmp_path / "a.parquet")] == ["a-1", "a-2", "a-3"]

    with open(tmp_path / "b.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["instruction", "input", "output"])
        w.writeheader()
        w.writerows(rows)
    assert pairs(got(tmp_path / "b.csv")) == want

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "part1.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n", encoding="utf-8")
    (folder / "part2.jsonl").write_text(json.dumps(rows[2]) + "\n", encoding="utf-8")
    assert pairs(got(folder)) == want
    assert pairs(got(str(folder / "*.jsonl"))) == want  # a glob

    from datasets import Dataset

    Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    assert pairs(got(tmp_path / "hf")) == want


def test_json_array_streams_across_chunk_boundaries(tmp_path):
    rows = [{"instruction": f"q{i} é中", "output": f"a{i}"} for i in range(50)]
    p = tmp_path / "arr.json"
    p.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n", encoding="utf-8")
    out = list(_iter_json(p, chunk_size=7))
    assert [r.row for r in out] == rows
    assert [r.line for r in out] == list(range(2, 52))


def test_write_jsonl_and_parquet_round_trip(tmp_path):
    recs = list(read_records(FIX / "sharegpt.jsonl")) + list(read_records(FIX / "oasst1.jsonl", oasst_paths="all"))
    for name in ("out.jsonl", "out.parquet"):
        n = write_records(recs, tmp_path / name)
        assert n == len(recs)
        assert [c.to_dict() for c in read_records(tmp_path / name)] == [c.to_dict() for c in recs]


def test_write_is_atomic_on_failure(tmp_path):
    def boom():
        yield from read_records(FIX / "flan.jsonl")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_records(boom(), tmp_path / "x.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_suggests_names():
    with pytest.raises(UnknownNameError, match="Did you mean: sharegpt"):
        read_records(FIX / "sharegpt.jsonl", "sharegtp")


def test_undetectable_rows_name_the_fields():
    from polyinstruct.data.validate import RecordError

    with pytest.raises(RecordError, match="cannot detect the format"):
        detect_format({"question": "q", "answer": "a"})


def test_oasst_errors_point_at_each_bad_row(tmp_path):
    rows = [
        {"message_id": "m1", "parent_id": None, "message_tree_id": "t1", "role": "prompter", "text": "Hi"},
        {"message_id": "m2", "parent_id": "m1", "message_tree_id": "t1", "role": "assistant", "text": " ", "rank": 0},
        {"message_id": "n1", "parent_id": None, "message_tree_id": "t2", "role": "prompter", "text": "Yo"},
        {"message_id": "n2", "parent_id": "n1", "message_tree_id": "t2", "role": "assistant", "text": "", "rank": 0},
    ]
    p = tmp_path / "o.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    stream = read_records(p, on_error="skip")
    assert list(stream) == []
    # every row is accounted for: the empty reply where it is, its prompt as left without an answer
    assert stream.sink.messages == [f"{p}:2: text: message text is empty",
                                    f"{p}:1: replies: tree has no assistant reply (tree t1)",
                                    f"{p}:4: text: message text is empty",
                                    f"{p}:3: replies: tree has no assistant reply (tree t1)".replace("t1)", "t2)")]
    assert stream.rows == 4 and stream.sink.total == 4


def test_prompt_only_alpaca_rows_are_detected(tmp_path):
    """Evaluation prompts in Alpaca's columns (instruction/input, no output) need no --format."""
    assert detect_format({"instruction": "Translate", "input": "Bonjour"}) == "alpaca"
    assert detect_format({"instruction": "Say hi", "response": "hi"}) == "dolly"
    f = tmp_path / "prompts.jsonl"
    f.write_text('{"instruction": "Translate", "input": "Bonjour"}\n', encoding="utf-8")
    (rec,) = list(read_records(f, require_answer=False))
    assert rec.messages[0].role == "user" and rec.messages[0].content.startswith("Translate")


def test_predict_reports_a_data_error_before_loading_the_model(tmp_path, capsys):
    from polyinstruct.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no known format"}\n', encoding="utf-8")
    # a model that does not exist: the data error must come first (nothing was loaded)
    assert main(["predict", str(tmp_path / "no-such-model"), "--data", str(bad), "--out", str(tmp_path / "o.jsonl")]) != 0
    err = capsys.readouterr().err
    assert "cannot detect the format" in err and "no-such-model" not in err
