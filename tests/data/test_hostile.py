"""Hostile inputs: every malformed row is a located error, nothing crashes, no record is lost or duplicated.

The corpus lives in ``tests/data/hostile/`` (``cases.json`` says what each file
must give; giant files are generated here). A property-based test then throws
random records, valid and not, at the JSONL and JSON readers.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyinstruct.cli import main
from polyinstruct.data import api
from polyinstruct.data.formats import read_records
from polyinstruct.templates import load_template
from tests.data.hostile.make_corpus import giant_cases

HOSTILE = Path(__file__).parent / "hostile"
CASES = json.loads((HOSTILE / "cases.json").read_text(encoding="utf-8"))
LOCATED = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?:(?P<field>[^:]+): )?(?P<reason>.+)$", re.S)


def _check_case(path: Path, case: dict, tmp_path: Path) -> None:
    fmt = case.get("format")
    out = tmp_path / (path.stem + ".out.jsonl")
    rejects = tmp_path / (path.stem + ".rejects.jsonl")
    rep = api.convert_file(path, out, fmt, on_error="skip", rejects_path=rejects)
    assert rep["rows"] == case["rows"], rep
    assert rep["records"] == case["valid"], rep
    assert rep["rejected"] == case["rejects"], rep
    n_rejects = sum(case["rejects"].values())
    if "unselected" in case:  # OASST table: every message is on an output path, unselected, or rejected
        assert rep["unselected"] == case["unselected"]
        assert rep["rows"] == rep["oasst_used"] + rep["unselected"] + n_rejects
    else:
        assert rep["rows"] == rep["records"] + n_rejects  # in = out + rejects
    # the rejects file: one valid JSON line per reject, each located at a line of this file
    lines = rejects.read_text(encoding="utf-8").splitlines() if n_rejects else []
    assert len(lines) == n_rejects
    for line in lines:
        row = json.loads(line, parse_constant=lambda c: pytest.fail(f"rejects file holds {c}"))
        assert row["where"].startswith(f"{path}:") and row["reason"]
    # the output re-reads unchanged, with unique ids
    again = [c.to_dict() for c in read_records(out)] if case["valid"] else []
    assert len(again) == case["valid"]
    assert len({(r["id"], r.get("language")) for r in again}) == len(again)
    if case["valid"]:
        assert [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()] == again


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_hostile_file_is_skipped_row_by_row_and_accounted(case, tmp_path):
    _check_case(HOSTILE / case["file"], case, tmp_path)


@pytest.mark.parametrize("case", [c for c in CASES if c["rejects"]], ids=lambda c: c["file"])
def test_hostile_file_fails_with_one_located_line_and_no_traceback(case, tmp_path, capsys):
    args = ["data", "validate", str(HOSTILE / case["file"])]
    if case.get("format"):
        args += ["--format", case["format"]]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    first = err.splitlines()[0]
    m = LOCATED.match(first)
    assert m and m["path"] == str(HOSTILE / case["file"]) and int(m["line"]) >= 1, first
    code = main(["data", "convert", str(HOSTILE / case["file"]), str(tmp_path / "o.jsonl")]
                + (["--format", case["format"]] if case.get("format") else []))
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and err.startswith(f"error: {HOSTILE / case['file']}:")


@pytest.mark.slow
def test_giant_hostile_files(tmp_path):
    for case in giant_cases(tmp_path):
        _check_case(tmp_path / case["file"], case, tmp_path)
    big = next(iter(read_records(tmp_path / "big_cell.csv")))
    assert len(big.messages[0].content) == 140_000  # read whole, not cut or rejected


def test_json_lookalike_csv_cells_stay_text():
    recs = {r.id: [m.content for m in r.messages] for r in read_records(HOSTILE / "json_lookalike_cells.csv")}
    case = next(c for c in CASES if c["file"] == "json_lookalike_cells.csv")
    assert {f"json_lookalike_cells-{line}": v for line, v in case["exact"].items()} == recs


def test_integers_beyond_64_bits_are_kept_exactly(tmp_path):
    case = next(c for c in CASES if c["file"] == "big_integers.jsonl")
    out = tmp_path / "big.jsonl"
    api.convert_file(HOSTILE / "big_integers.jsonl", out)
    assert [r.meta for r in read_records(out)] == case["exact_meta"]  # not rounded through a float


def test_one_line_json_array_gets_unique_ids():
    ids = [r.id for r in read_records(HOSTILE / "one_line_array.json")]
    assert len(ids) == 5 and len(set(ids)) == 5


def test_validate_reports_duplicate_ids_including_int_and_string():
    rep = api.validate_file(HOSTILE / "duplicate_ids.jsonl")
    assert not rep["ok"] and rep["rejected"] == {"duplicate-id": 2}
    assert any("id '1' was already used earlier" in e and ":2: id:" in e for e in rep["errors"])


def test_same_role_turns_merge_only_when_asked(tmp_path):
    out = tmp_path / "m.jsonl"
    rep = api.convert_file(HOSTILE / "same_role_turns.jsonl", out, merge_consecutive=True)
    assert rep["records"] == 3 and not rep["rejected"]
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][0]["content"] == "a\n\nb" and first["meta"] == {"merged_turns": 1}


def test_cot_placeholder_typed_by_a_user_is_not_replaced():
    t = load_template("alpaca", cot=True, language="en")
    text = t.render([{"role": "user", "content": "Write {cot} and {content} literally"},
                     {"role": "assistant", "content": "ok"}])
    assert "Write {cot} and {content} literally\nLet's think step by step." in text


def test_writer_refuses_nan_instead_of_writing_null_or_bare_nan(tmp_path):
    from polyinstruct.data.formats import write_records
    from polyinstruct.data.validate import RecordError

    rec = {"id": "x", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
           "meta": {"score": math.nan}}
    with pytest.raises(RecordError, match="meta.score"):
        write_records([rec], tmp_path / "o.jsonl")


# ---------------------------------------------------------------- property-based
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", " ", "a\ud800", "{cot}", "NaN", "[1]", "\u0000"])
_scalar = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True, allow_infinity=True) | _text
_json = st.recursive(_scalar, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_text, kids, max_size=3),
                     max_leaves=6)
_role = st.sampled_from(["user", "assistant", "system", "developer", "robot"]) | _json
_message = st.fixed_dictionaries({"role": _role, "content": _text | _json},
                                 optional={"language": st.sampled_from(["en", "no", "../x"]) | _json,
                                           "input": _text | _json})
_word = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1,
                max_size=10)
_valid = st.one_of(  # well-formed records with awkward text: kept, and written back unchanged
    st.fixed_dictionaries({"messages": st.tuples(_word, _word).map(
        lambda t: [{"role": "user", "content": t[0]}, {"role": "assistant", "content": t[1]}])},
        optional={"id": st.integers(0, 5) | _word, "tags": st.lists(_word, max_size=2),
                  "meta": st.dictionaries(_word, st.integers() | _word | st.floats(allow_nan=False,
                                                                                   allow_infinity=False), max_size=2),
                  "language": st.sampled_from(["en", "no", "zh-Hans"])}),
    st.fixed_dictionaries({"instruction": _word, "output": _word},
                          optional={"input": _word, "system": _word, "id": st.integers(0, 5)}))
_record = st.one_of(
    _valid,
    st.fixed_dictionaries({"messages": st.lists(_message, max_size=4) | _json},
                          optional={"id": st.integers(0, 3) | _text | _json, "source": _text | _json,
                                    "license": _text | _json, "tags": st.lists(_text | _json, max_size=2) | _json,
                                    "meta": _json, "language": st.sampled_from(["en", "zh", "no"]) | _json}),
    st.fixed_dictionaries({"instruction": _text | _json, "output": _text | _json},
                          optional={"input": _text | _json, "system": _text | _json, "id": st.integers(0, 3) | _text,
                                    "history": _json}),
    _json)
TALLY: Counter = Counter()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(records=st.lists(_record, min_size=1, max_size=6), as_array=st.booleans(), fmt=st.sampled_from([None, "messages", "alpaca"]))
def test_random_records_are_kept_or_rejected_with_a_location(records, as_array, fmt, tmp_path):
    path = tmp_path / ("r.json" if as_array else "r.jsonl")
    dump = lambda r: json.dumps(r, ensure_ascii=True, allow_nan=True)  # noqa: E731 - NaN and \ud800 on purpose
    path.write_text(("[" + ",\n".join(dump(r) for r in records) + "]") if as_array
                    else "\n".join(dump(r) for r in records) + "\n", encoding="utf-8")
    stream = read_records(path, fmt, on_error="skip")
    out = [c.to_dict() for c in stream]
    TALLY["cases"] += len(records)
    TALLY["kept"] += len(out)
    TALLY["rejected"] += stream.sink.total
    assert stream.rows == len(records) == len(out) + stream.sink.total  # nothing lost, nothing duplicated
    assert len({(r["id"], r.get("language")) for r in out}) == len(out)
    for msg in stream.sink.messages:
        m = LOCATED.match(msg)
        assert m and m["path"] == str(path) and 1 <= int(m["line"]) <= len(records) + 1, msg
    # what was kept survives writing and reading back unchanged (nothing altered on the way)
    if out:
        from polyinstruct.data.formats import write_records

        write_records(out, tmp_path / "o.jsonl")
        assert [c.to_dict() for c in read_records(tmp_path / "o.jsonl")] == out


_cell = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=15) | st.sampled_from(
    ["", "[1, 2]", '{"a": 1}', "a,b", 'say "hi"', "line\nbreak", "\r\n", "{cot}"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_cell, _cell, _cell), min_size=1, max_size=6))
def test_random_csv_cells_are_kept_as_text_or_rejected_with_a_location(rows, tmp_path):
    import csv

    path = tmp_path / "r.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["instruction", "input", "output"])
        w.writerows(rows)
    stream = read_records(path, "alpaca", on_error="skip")
    out = list(stream)
    assert stream.rows == len(rows) == len(out) + stream.sink.total
    for msg in stream.sink.messages:
        assert LOCATED.match(msg) and msg.startswith(f"{path}:"), msg
    kept = {(r.messages[0].content, r.messages[0].input or "", r.messages[1].content) for r in out}
    assert kept <= set(rows)  # every kept row holds exactly the cells written: nothing parsed or trimmed
