"""The template/tokenize commands call plain functions and report errors with file and line."""

from __future__ import annotations

import json

import pytest

from polyinstruct.cli import main
from polyinstruct.errors import DataError
from polyinstruct.templates.workflows import read_conversations


def test_tokenize_command_writes_dataset_template_and_report(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "convs.jsonl"
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"Вопрос {i}"},
                                         {"role": "assistant", "content": "答案 " * (i + 1)}]} for i in range(5)]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "tok"
    assert main(["tokenize", str(data), "--tokenizer", str(tiny_model_dir), "--template", "chatml",
                 "--output-dir", str(out), "--max-length", "40"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["total"] == 5 and report["kept"] + report["dropped_no_complete_turn"] == 5
    import datasets

    ds = datasets.load_from_disk(str(out / "data"))
    assert len(ds) == report["kept"] and (out / "template.yaml").is_file()
    assert main(["template", "show", str(out / "template.yaml")]) == 0
    assert "<|im_start|>assistant" in capsys.readouterr().out


def test_bad_jsonl_names_file_and_line(tmp_path, tiny_model_dir):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": 1, "messages": []}\n{"id": 2, "messages": [\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        read_conversations(p)
    assert main(["template", "show", "nope"]) == 1
    p.write_text('{"id": 1, "messages": [{"role": "user", "content": "long " * 50}, {"role": "assistant", '
                 '"content": "x"}]}\n', encoding="utf-8")
    assert main(["tokenize", str(p), "--tokenizer", str(tiny_model_dir), "--max-length", "8"]) == 1
