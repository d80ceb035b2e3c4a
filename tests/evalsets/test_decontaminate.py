"""``polyinstruct data decontaminate``: kept + removed (+ rejected) = records in, each removal names its
match and score; benchmark layouts (GSM8K JSONL, MGSM TSV, BBH JSON) and the embedded set are read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyinstruct.cli import main
from polyinstruct.evalsets.decontaminate import decontaminate, load_eval_texts
from polyinstruct.fileio import iter_jsonl, write_jsonl

GSM = [{"question": "A baker makes 24 rolls and sells them in bags of 6. How many bags does she fill?",
        "answer": "She fills 24 / 6 = <<24/6=4>>4 bags.\n#### 4"},
       {"question": "Tom reads 15 pages a day. How many pages does he read in a week?",
        "answer": "He reads 15 * 7 = <<15*7=105>>105 pages.\n#### 105"}]


def _conv(rid: str, user: str, answer: str, lang: str = "en") -> dict:
    return {"id": rid, "language": lang, "messages": [{"role": "user", "content": user},
                                                      {"role": "assistant", "content": answer}]}


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    bench = tmp_path / "gsm" / "test.jsonl"
    bench.parent.mkdir()
    write_jsonl(bench, GSM)
    mgsm = tmp_path / "mgsm_fr.tsv"
    mgsm.write_text("Un boulanger fait 24 petits pains et les vend par sachets de 6. Combien de sachets remplit-il ?\t4\n",
                    encoding="utf-8")
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [
        _conv("copy", GSM[0]["question"], "4 bags."),  # the benchmark question itself
        _conv("answer", "Solve this for me please.", GSM[1]["answer"]),  # the benchmark's solution as an answer
        _conv("clean", "What is the capital of Portugal?", "Lisbon."),
        _conv("eval", "What should I think about before adopting a dog?", "Time, space, money."),  # embedded eval-10
    ])
    with open(train, "a", encoding="utf-8") as f:
        f.write('{"id": "bad", "messages": [{"role": "user"}]}\n')
    return {"bench": bench, "mgsm": mgsm, "train": train}


def test_benchmark_layouts_are_read(files, tmp_path):
    gsm = load_eval_texts(str(files["bench"]))
    assert [(t.id, t.part, t.language) for t in gsm][:2] == [("test-1", "prompt", "en"), ("test-1", "reference", "en")]
    mgsm = load_eval_texts(str(files["mgsm"]))
    assert [(t.part, t.language, t.text) for t in mgsm][1] == ("reference", "fr", "4")
    bbh = tmp_path / "navigate.json"
    bbh.write_text(json.dumps({"examples": [{"input": "Take 3 steps. Do you return?", "target": "No"}]}))
    assert [t.part for t in load_eval_texts(str(bbh))] == ["prompt", "reference"]
    assert len(load_eval_texts("embedded")) == 8 * 50 * 2
    with pytest.raises(Exception, match="no such file"):
        load_eval_texts(str(tmp_path / "missing.jsonl"))


def test_decontaminate_splits_records_and_names_each_match(files, tmp_path):
    out = tmp_path / "out"
    s = decontaminate(files["train"], [str(files["bench"]), "embedded"], out, on_error="skip")
    assert (s["records_in"], s["kept"], s["removed"], s["rejected"]) == (5, 1, 3, 1)
    assert [r["id"] for r in iter_jsonl(out / "kept.jsonl")] == ["clean"]
    removed = {r["id"]: r["decontamination"] for r in iter_jsonl(out / "removed.jsonl")}
    assert removed["copy"][0]["eval_id"] == "test-1" and removed["copy"][0]["reason"] == "exact"
    assert removed["copy"][0]["train_part"] == "user[0]" and removed["copy"][0]["score"] == 1.0
    assert removed["answer"][0]["eval_part"] == "reference" and removed["answer"][0]["train_part"] == "assistant[1]"
    assert removed["eval"][0]["eval_set"] == "eval_prompts/en.jsonl" and removed["eval"][0]["eval_id"] == "eval-10"
    assert json.loads((out / "summary.json").read_text())["removed_by_eval_set"] == {"test.jsonl": 2,
                                                                                    "eval_prompts/en.jsonl": 1}
    assert s["crosslingual"] is None


def test_cli_prints_the_summary_and_bad_rows_stop_with_file_and_line(files, tmp_path, capsys):
    rc = main(["data", "decontaminate", str(files["train"]), "--against", str(files["bench"]), "--out",
               str(tmp_path / "o"), "--on-error", "skip"])
    out = capsys.readouterr().out
    assert rc == 0 and "5 records in = 2 kept + 2 removed + 1 rejected" in out and "cross-lingual step: off" in out
    rc = main(["data", "decontaminate", str(files["train"]), "--against", str(files["bench"]), "--out",
               str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 1 and f"{files['train']}:5" in err


def test_unknown_crosslingual_model_needs_layer_and_threshold():
    from polyinstruct.errors import PolyinstructError
    from polyinstruct.evalsets.crosslingual import CrosslingualScorer

    with pytest.raises(PolyinstructError, match="no calibrated layer and threshold"):
        CrosslingualScorer("some/other-model")
