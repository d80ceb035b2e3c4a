"""Bad input is never lost silently: errors name file:line, field and reason; skip writes rejects."""

from __future__ import annotations

import json

import pytest

from polyinstruct.cli import main
from polyinstruct.data.formats import read_records
from polyinstruct.data.validate import RecordError


def write_lines(path, lines, newline="\n", bom=False):
    data = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


@pytest.fixture
def broken_1000(tmp_path):
    lines = [json.dumps({"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."}) for i in range(1000)]
    lines[636] = '{"instruction": "Question 636?", "output": "unterminated'
    return write_lines(tmp_path / "train.jsonl", lines), lines[636]


def test_validate_cli_fails_with_path_and_line(broken_1000, capsys):
    path, _ = broken_1000
    rc = main(["data", "validate", str(path)])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"{path}:637: malformed JSON" in err
    assert not (path.parent / "train.clean.jsonl").exists()


def test_validate_cli_skip_writes_999_and_rejects_the_line(broken_1000, capsys):
    path, bad = broken_1000
    rc = main(["data", "validate", str(path), "--on-error", "skip"])
    out = capsys.readouterr().out
    assert rc == 0
    clean = (path.parent / "train.clean.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(clean) == 999
    rejects = [json.loads(x) for x in (path.parent / "train.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rejects) == 1
    assert rejects[0]["raw"] == bad and rejects[0]["where"] == f"{path}:637"
    assert "1  malformed-json" in out  # count per reason


def test_convert_cli_skip_counts_per_reason(tmp_path, capsys):
    lines = [json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
             json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}),
             json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}),
             json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]})]
    src = write_lines(tmp_path / "in.jsonl", lines)
    rc = main(["data", "convert", str(src), str(tmp_path / "out.jsonl"), "--on-error", "skip"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2  unknown-role" in out and "1  empty-assistant-turn" in out
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
    assert len((tmp_path / "out.rejects.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("row,fmt,field,reason", [
    ({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}, None,
     "messages[1].role", "unknown role 'bot'"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]}, "sharegpt",
     "conversations[1].from", "unknown role 'robot'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}, None,
     "messages[1].content", "empty assistant turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": "more?"}]}, None,
     "messages[2].role", "does not end with an assistant turn"),
    ({"instruction": "q", "input": ""}, "alpaca", "output", "missing field 'output'"),
    ({"instruction": "q", "response": None, "context": ""}, "dolly", "response", "missing field 'response'"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, None, "messages[0].role", "first non-system turn"),
])
def test_each_problem_names_file_line_field_reason(tmp_path, row, fmt, field, reason):
    good = json.dumps({
        None: {"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "ok"}]},
        "sharegpt": {"conversations": [{"from": "human", "value": "ok"}, {"from": "gpt", "value": "ok"}]},
        "alpaca": {"instruction": "ok", "output": "ok"},
        "dolly": {"instruction": "ok", "context": "", "response": "ok"}}[fmt])
    p = write_lines(tmp_path / "d.jsonl", [good, good, json.dumps(row)])
    with pytest.raises(RecordError) as ei:
        list(read_records(p, fmt))
    e = ei.value
    assert (e.path, e.line, e.field) == (str(p), 3, field)
    assert reason in e.reason
    assert str(e).startswith(f"{p}:3: {field}: ")


def test_bom_and_crlf_are_read_transparently(tmp_path):
    lines = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(3)]
    p = write_lines(tmp_path / "crlf.jsonl", lines, newline="\r\n", bom=True)
    recs = list(read_records(p))
    assert [r.messages[1].content for r in recs] == ["a0", "a1", "a2"]
    c = tmp_path / "bom.csv"
    c.write_bytes(b"\xef\xbb\xbfprompt,completion\r\nhello,world\r\n")
    assert [r.messages[1].content for r in read_records(c)] == ["world"]


def test_invalid_utf8_is_a_clear_error_and_skippable(tmp_path):
    good = json.dumps({"instruction": "q", "output": "a"}).encode()
    bad = b'{"instruction": "caf\xe9", "output": "a"}'
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(good + b"\n" + bad + b"\n" + good + b"\n")
    with pytest.raises(RecordError, match=r"latin1.jsonl:2: invalid UTF-8.*iconv"):
        list(read_records(p))
    stream = read_records(p, on_error="skip", rejects_path=tmp_path / "rej.jsonl")
    assert len(list(stream)) == 2
    assert dict(stream.rejected) == {"invalid-utf8": 1}


def test_on_error_must_be_known(tmp_path):
    p = write_lines(tmp_path / "x.jsonl", [json.dumps({"instruction": "q", "output": "a"})])
    with pytest.raises(Exception, match="on_error"):
        list(read_records(p, on_error="ignore"))


def test_prompt_only_records_when_no_answer_is_required(tmp_path):
    rows = [{"id": "p1", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}]
    p = write_lines(tmp_path / "prompts.jsonl", [json.dumps(r) for r in rows])
    with pytest.raises(RecordError, match="does not end with an assistant turn"):
        list(read_records(p))
    assert [c.id for c in read_records(p, require_answer=False)] == ["p1"]
