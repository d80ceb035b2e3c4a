"""predict: same text as one-by-one generation, resumable by id, never half a line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from polyinstruct.errors import DataError, PolyinstructError
from polyinstruct.fileio import iter_jsonl
from polyinstruct.infer.decoding import resolve_decoding
from polyinstruct.infer.predict import predict
from tests.infer.conftest import PROMPTS


def write_dataset(path: Path, n: int) -> Path:
    langs = ["en", "en", "ru", "zh", "en", "en", "bn"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            k = i % len(PROMPTS)
            rec = {"id": f"r{i}", "language": langs[k],
                   "messages": [{"role": "user", "content": f"{PROMPTS[k]} ({i})"},
                                {"role": "assistant", "content": f"gold {i}"}]}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def test_predict_rows_match_batch1_generation(hf_backend, tmp_path):
    data = write_dataset(tmp_path / "data.jsonl", 7)
    out = predict(data, hf_backend, tmp_path / "pred.jsonl", decoding="greedy", max_new_tokens=12, batch_size=4)
    rows = list(iter_jsonl(out))
    assert sorted(r["id"] for r in rows) == [f"r{i}" for i in range(7)]
    by_id = {r["id"]: r for r in rows}
    params = resolve_decoding("greedy", max_new_tokens=12)
    for i in range(7):
        r = by_id[f"r{i}"]
        one = hf_backend.generate([r["messages"]], params)[0]  # batch of one: no padding
        assert r["response"] == one.text
        assert r["reference"] == f"gold {i}"
        assert r["messages"][-1]["role"] == "user" and len(r["messages"]) == 1
        assert r["decoding"]["max_new_tokens"] == 12 and r["decoding"]["do_sample"] is False
        assert r["finish_reason"] in ("stop", "length") and r["completion_tokens"] <= 12
        assert r["prompt"].startswith("<|user|>\n")
    assert by_id["r2"]["language"] == "ru"


def test_interrupted_run_resumes_every_id_once(hf_backend, tmp_path):
    data = write_dataset(tmp_path / "data.jsonl", 10)
    out = tmp_path / "pred.jsonl"

    def boom(stats):
        raise KeyboardInterrupt  # as if Ctrl-C arrived right after the first chunk was written

    with pytest.raises(KeyboardInterrupt):
        predict(data, hf_backend, out, max_new_tokens=6, batch_size=2, chunk_size=3, on_chunk=boom)
    first = list(iter_jsonl(out))
    assert len(first) == 3
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"id": "r9", "respo')  # a torn line, as a crash mid-write would leave
    seen = []
    predict(data, hf_backend, out, max_new_tokens=6, batch_size=2, chunk_size=3, on_chunk=lambda s: seen.append(s.done))
    ids = [r["id"] for r in iter_jsonl(out)]
    assert sorted(ids) == sorted(f"r{i}" for i in range(10))
    assert len(ids) == len(set(ids))
    assert seen[-1] == 7  # only the missing ids were generated
    assert out.read_text(encoding="utf-8").endswith("\n")
    predict(data, hf_backend, out, max_new_tokens=6)  # nothing left: no model call, file unchanged
    assert [r["id"] for r in iter_jsonl(out)] == ids
    with pytest.raises(PolyinstructError, match="new output file"):
        predict(data, hf_backend, out, max_new_tokens=7)  # other settings would mix in one file


# The child kills itself at a known point: after two whole chunks and half a line of the third
# (a crash mid-append), so the test never races the kill against the generation.
_KILL_MID_WRITE = """
import os, signal, sys
import polyinstruct.infer.predict as P
orig, n = P.append_jsonl, [0]
def append(path, rows):
    n[0] += 1
    if n[0] == 3:
        with open(path, "a", encoding="utf-8") as f:
            f.write('{"id": "torn", "respo')
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(path, rows)
P.append_jsonl = append
from polyinstruct.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_process_rerun_yields_every_id_exactly_once(varied_model_dir, tmp_path):
    data = write_dataset(tmp_path / "data.jsonl", 8)
    out = tmp_path / "pred.jsonl"
    args = ["predict", str(varied_model_dir), "--data", str(data), "--out", str(out), "--max-new-tokens", "16",
            "--batch-size", "2", "--chunk-size", "2", "--template", "tulu", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_WRITE, *args], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not out.read_text(encoding="utf-8").endswith("\n")  # the torn line is there
    partial = list(iter_jsonl(out))
    assert len(partial) == 4
    rerun = subprocess.run([sys.executable, "-m", "polyinstruct", *args], env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    ids = [r["id"] for r in iter_jsonl(out)]
    assert sorted(ids) == sorted(f"r{i}" for i in range(8)) and len(ids) == 8
    assert ids[:4] == [r["id"] for r in partial]  # the finished rows were kept, not regenerated


def test_corrupt_or_idless_existing_output_is_a_located_error(hf_backend, tmp_path):
    data = write_dataset(tmp_path / "data.jsonl", 3)
    out = tmp_path / "pred.jsonl"
    row = {"id": "r0", "response": "x", "model": "m", "decoding": {}}
    out.write_text(json.dumps(row) + "\n{not json\n" + json.dumps(dict(row, id="r1")) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pred.jsonl:2: invalid JSON"):
        predict(data, hf_backend, out, max_new_tokens=4)
    out.write_text(json.dumps(row) + "\n" + json.dumps({"response": "no id"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pred.jsonl:2: id: missing or invalid 'id'"):
        predict(data, hf_backend, out, max_new_tokens=4)
    out.write_text(json.dumps(row) + "\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pred.jsonl:2: expected a JSON object"):
        predict(data, hf_backend, out, max_new_tokens=4)


def test_duplicate_ids_are_rejected(hf_backend, tmp_path):
    data = tmp_path / "dup.jsonl"
    row = {"id": "same", "messages": [{"role": "user", "content": "Hi"}]}
    data.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"duplicate id 'same'|dup.jsonl:2: id: id 'same' was already used"):
        predict(data, hf_backend, tmp_path / "p.jsonl", max_new_tokens=4)


def test_limit_and_in_memory_records(hf_backend, tmp_path):
    recs = [{"id": str(i), "messages": [{"role": "user", "content": p}]} for i, p in enumerate(PROMPTS)]
    out = predict(recs, hf_backend, tmp_path / "p.jsonl", max_new_tokens=4, limit=3)
    rows = list(iter_jsonl(out))
    assert sorted(r["id"] for r in rows) == ["0", "1", "2"]
    assert all(r["reference"] is None for r in rows)
