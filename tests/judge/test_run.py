"""``judge_predictions`` / ``polyinstruct judge`` end to end against a loopback server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from polyinstruct.errors import ConfigError, DataError
from polyinstruct.judge.run import judge_predictions
from tests.judge.fake_server import ScriptedServer

ROOT = Path(__file__).resolve().parents[2]
MARK = re.compile(r"score=(\d)")

ANSWERS = {  # language of the prompt -> (answer in the right language, answer in a wrong language)
    "en": ("The capital of France is Paris, a city on the Seine river.", "La capitale de la France est Paris, une ville sur la Seine."),
    "fr": ("La capitale de la France est Paris, une ville sur la Seine.", "The capital of France is Paris, a city on the Seine river."),
    "ru": ("Столица Франции — Париж, город на реке Сена.", "The capital of France is Paris, a city on the Seine river."),
    "zh": ("法国的首都是巴黎，这座城市位于塞纳河畔，历史悠久。", "The capital of France is Paris, a city on the Seine river."),
}


def verdict(body, n):
    m = MARK.search(body["messages"][-1]["content"])
    return ("ok", f"Explanation. Rating: [[{m.group(1) if m else 2}]]")


def write_predictions(path: Path, n_per_lang: int = 3) -> list[dict]:
    rows = []
    for lang, (good, bad) in ANSWERS.items():
        for i in range(n_per_lang):
            wrong = i == 0  # the first answer of every language is in the wrong language
            resp = (bad if wrong else good) + f" score={1 + i % 3}"
            rows.append({"id": f"{lang}-{i}", "model": "m1", "language": lang, "decoding": "greedy",
                         "messages": [{"role": "user", "content": f"[{lang}] What is the capital of France? #{i}"}],
                         "response": resp})
    rows.append({"id": "en-short", "model": "m1", "language": "en", "decoding": "greedy",
                 "messages": [{"role": "user", "content": "Answer yes or no."}], "response": "Oui score=3"})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return rows


def judge_cfg(srv, tmp_path, **kw):
    cfg = {"model": "judge-x", "base_url": srv.base_url, "cache_dir": str(tmp_path / "cache"), "timeout": 2,
           "backoff_base": 0.01, "backoff_max": 0.05, "concurrency": 3}
    cfg.update(kw)
    return cfg


def test_language_penalty_zeroes_exactly_wrong_language_answers(tmp_path):
    preds = write_predictions(tmp_path / "p.jsonl")
    with ScriptedServer(verdict) as srv:
        summary = judge_predictions(tmp_path / "p.jsonl", tmp_path / "out", judge=judge_cfg(srv, tmp_path))
    rows = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [p["id"] for p in preds]
    for r in rows:
        assert r["score"] is not None
        if r["id"].endswith("-0"):
            assert r["language_match"] is False and r["final_score"] == 0.0, r
        elif r["id"] == "en-short":  # "Oui score=3": study 1's top label names a language, not English: zeroed
            assert r["lid_language"] not in ("und", "en") and r["language_match"] is False and r["final_score"] == 0.0
            assert r["language_policy"] == "strict"
        else:
            assert r["language_match"] is True and r["final_score"] == r["score"], r
    cells = summary["scores"]["models"]["m1"]["languages"]
    # per language: scores 1,2,3 -> before 6, after 6-1 (the wrong-language one scored 1)
    for lang in ("fr", "ru", "zh"):
        assert (cells[lang]["total_before"], cells[lang]["total_after"], cells[lang]["max_total"]) == (6, 5, 9)
        assert cells[lang]["n_wrong_language"] == 1
    assert cells["en"]["total_before"] == 9 and cells["en"]["total_after"] == 5 and cells["en"]["n_undetermined"] == 0
    assert cells["en"]["n_wrong_language"] == 2
    assert summary["scores"]["models"]["m1"]["robustness"] == 1.75  # (4 + 1 + 1 + 1) / 4
    assert summary["language_policy"] == "strict" and cells["en"]["language_policy"] == "strict"
    assert summary["scores"]["seen_languages"] == ["en", "fr", "ru", "zh"]
    assert "| m1 | fr | 3 / 3 | 6 | 5 | 9 | 2.00 | 1.67 | 5 / 9 | 0% | 1 | 0 | 0 |" in (tmp_path / "out" / "summary.md").read_text()
    assert summary["usage"]["requests"] == len(preds)
    # lenient: the undetermined answer keeps its score (all judgments come from the cache)
    with ScriptedServer(verdict) as srv:
        lenient = judge_predictions(tmp_path / "p.jsonl", tmp_path / "out-lenient", judge=judge_cfg(srv, tmp_path),
                                    language_policy="lenient")
        assert srv.calls == []
    en = lenient["scores"]["models"]["m1"]["languages"]["en"]
    assert (en["total_after"], en["language_policy"], lenient["language_policy"]) == (8, "lenient", "lenient")
    with pytest.raises(ConfigError, match="Did you mean: lenient"):
        judge_predictions(tmp_path / "p.jsonl", tmp_path / "x", judge=judge_cfg(srv, tmp_path), language_policy="lenent")


def test_killed_run_resumes_from_cache_with_zero_repeated_calls(tmp_path):
    """Deterministic: the server answers exactly ``answered`` calls and holds every later one, so the
    kill lands while nothing is being written (no race between the kill and an in-flight reply)."""
    from polyinstruct.fileio import iter_jsonl

    n, answered = 24, 6
    rows = [{"id": f"q{i}", "model": "m", "language": "en", "response": f"Answer number {i} score={1 + i % 3}",
             "messages": [{"role": "user", "content": f"Question number {i}?"}]} for i in range(n)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    release = threading.Event()

    def gated(body, k):
        if k >= answered:
            release.wait(60)  # held: the client is killed before this call gets an answer
        return verdict(body, k)

    with ScriptedServer(gated) as srv:
        cfg = judge_cfg(srv, tmp_path, concurrency=2)
        code = (f"from polyinstruct.judge.run import judge_predictions; "
                f"judge_predictions({str(tmp_path / 'p.jsonl')!r}, {str(tmp_path / 'out1')!r}, judge={cfg!r}, lid=None)")
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
        cache_file = tmp_path / "cache" / "judge-x.jsonl"
        try:
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None:
                done = len(list(iter_jsonl(cache_file))) if cache_file.exists() else 0
                with srv._lock:
                    held = len(srv.calls) - answered
                if done == answered and held == 2:  # every answer cached, both workers waiting on the server
                    break
                time.sleep(0.02)
            assert proc.poll() is None, "the judge run ended before the kill"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
            release.set()
        cached = list(iter_jsonl(cache_file))
        assert len(cached) == answered and cache_file.read_text().endswith("\n")
        first_run_calls = len(srv.calls)
        summary = judge_predictions(tmp_path / "p.jsonl", tmp_path / "out2", judge=cfg, lid=None)
        second = srv.user_texts()[first_run_calls:]
    # zero repeated calls: the second run asked exactly the items not in the cache
    assert len(second) == n - answered == summary["n"] - summary["cached"]
    asked = {re.search(r"Question number (\d+)", t).group(1) for t in second}
    assert len(asked) == len(second)
    out = [json.loads(x) for x in (tmp_path / "out2" / "judgments.jsonl").read_text().splitlines()]
    assert [r["score"] for r in out] == [1.0 + i % 3 for i in range(n)]
    assert len(cache_file.read_text().splitlines()) == n


def test_pairwise_seeded_order_both_orders_and_win_rate(tmp_path):
    rows = []
    for i in range(20):
        rows.append({"id": f"q{i}", "model": "m1", "language": "en",
                     "messages": [{"role": "user", "content": f"Question {i}?"}],
                     "response": ("GOOD answer" if i % 4 else "TIE answer") + f" {i}", "reference": f"plain reference {i}"})
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def fair(body, n):  # prefers the GOOD answer wherever it is; C for TIE answers
        text = body["messages"][-1]["content"]
        a = text.split("[The Start of Assistant A's Answer]")[1].split("[The End")[0]
        b = text.split("[The Start of Assistant B's Answer]")[1].split("[The End")[0]
        if "TIE" in a or "TIE" in b:
            return ("ok", "Equal. [[C]]")
        return ("ok", "[[A]]" if "GOOD" in a else "[[B]]" if "GOOD" in b else "[[C]]")

    def biased(body, n):
        return ("ok", "The first one. [[A]]")

    with ScriptedServer(fair) as srv:
        s1 = judge_predictions(tmp_path / "p.jsonl", tmp_path / "o1", lid=None,
                               judge=judge_cfg(srv, tmp_path, mode="pairwise", seed=7, cache_dir=str(tmp_path / "c1")))
        firsts = [json.loads(x)["candidate_first"][0] for x in (tmp_path / "o1" / "judgments.jsonl").read_text().splitlines()]
        s1b = judge_predictions(tmp_path / "p.jsonl", tmp_path / "o1b", lid=None,
                                judge=judge_cfg(srv, tmp_path, mode="pairwise", seed=7, cache_dir=str(tmp_path / "c1b")))
        firsts_b = [json.loads(x)["candidate_first"][0] for x in (tmp_path / "o1b" / "judgments.jsonl").read_text().splitlines()]
        judge_predictions(tmp_path / "p.jsonl", tmp_path / "o2", lid=None,
                          judge=judge_cfg(srv, tmp_path, mode="pairwise", seed=8, cache_dir=str(tmp_path / "c2")))
        firsts_8 = [json.loads(x)["candidate_first"][0] for x in (tmp_path / "o2" / "judgments.jsonl").read_text().splitlines()]
        fair_both = judge_predictions(tmp_path / "p.jsonl", tmp_path / "o3", lid=None,
                                      judge=judge_cfg(srv, tmp_path, mode="pairwise", both_orders=True,
                                                      cache_dir=str(tmp_path / "c3")))
    assert firsts == firsts_b and firsts != firsts_8  # seeded, and the seed matters
    assert 4 <= sum(firsts) <= 16  # both positions used
    m = s1["pairwise"]["models"]["m1"]
    assert (m["wins"], m["ties"], m["losses"]) == (15, 5, 0) and m["win_rate"] == pytest.approx(17.5 / 20)
    assert s1b["pairwise"] == s1["pairwise"]
    assert fair_both["pairwise"]["models"]["m1"]["inconsistent_fraction"] == 0.0
    with ScriptedServer(biased) as srv:
        s = judge_predictions(tmp_path / "p.jsonl", tmp_path / "o4", lid=None,
                              judge=judge_cfg(srv, tmp_path, mode="pairwise", both_orders=True,
                                              cache_dir=str(tmp_path / "c4")))
        assert len(srv.calls) == 40
    m = s["pairwise"]["models"]["m1"]
    assert m["inconsistent_fraction"] == 1.0 and m["first_position_rate"] == 1.0
    assert m["ties"] == 20 and m["win_rate"] == 0.5  # inconsistent verdicts count as ties
    assert "mean_unique_tokens" in s["unique_tokens"]


def test_bad_inputs_name_file_line_and_field(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"id": 1, "messages": [{"role": "user", "content": "q"}], "response": "a"}\n{"id": 2, "messages": []}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: response: missing"):
        judge_predictions(p, tmp_path / "o", judge={"model": "x", "base_url": "http://127.0.0.1:9/v1"})
    with pytest.raises(ConfigError, match="concurency.*Did you mean: concurrency"):
        judge_predictions(p, tmp_path / "o", judge={"model": "x", "concurency": 2})
    p.write_text('{"id": 1, "messages": [{"role": "user", "content": "q"}], "response": "a"}\n')
    with pytest.raises(DataError, match="p.jsonl:1: reference"):
        judge_predictions(p, tmp_path / "o", judge={"model": "x", "mode": "pairwise"})


def test_cli_judge_and_lid(tmp_path, capsys):
    from polyinstruct.cli import main

    write_predictions(tmp_path / "p.jsonl", n_per_lang=2)
    with ScriptedServer(verdict) as srv:
        cfg_path = tmp_path / "judge.yaml"
        cfg_path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in judge_cfg(srv, tmp_path).items()))
        rc = main(["judge", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "out"), "--judge", str(cfg_path),
                   "--set", "concurrency=1", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| m1 | ru | 2 / 2 |" in out and json.loads(out.strip().splitlines()[-1])["n"] == 9
    assert main(["lid", "Ceci est une phrase française assez longue.", "ok"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["language"] for x in lines] == ["fr", "und"]
    assert main(["lid", "--jsonl", str(tmp_path / "p.jsonl"), "--field", "response"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 9
    assert main(["lid", "--jsonl", str(tmp_path / "p.jsonl"), "--field", "nope"]) == 1
    assert "p.jsonl:1: nope" in capsys.readouterr().err
