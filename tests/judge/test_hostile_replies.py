"""The judge survives any server reply: each hostile reply is retried or recorded, never a crash."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyinstruct.errors import ConfigError
from polyinstruct.infer.backend import DecodingParams
from polyinstruct.infer.openai_http import HTTPBackendError, OpenAIHTTPBackend, parse_retry_after
from polyinstruct.judge.run import NothingScoredError, judge_predictions
from tests.judge.fake_server import ScriptedServer

ROOT = Path(__file__).resolve().parents[2]
OK = ("ok", "Fine. Rating: [[2]]")
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>\n<body><h1>Bad\nGateway</h1></body></html>"

# Replies a server or proxy really sends; each is followed by a good reply, so a retry scores the item.
RETRIED = {
    "retry-after -1": ("status", 429, {"Retry-After": "-1"}),
    "retry-after nan": ("status", 503, {"Retry-After": "nan"}),
    "retry-after inf": ("status", 503, {"Retry-After": "inf"}),
    "retry-after garbage": ("status", 429, {"Retry-After": "soon, maybe"}),
    "retry-after huge": ("status", 429, {"Retry-After": "1e12"}),
    "retry-after http-date": ("status", 503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
    "200 gzip header, plain body": ("raw", 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"},
                                    json.dumps({"choices": [{"message": {"content": "[[2]]"}}]}).encode()),
    "200 br header, gzip body": ("raw", 200, {"Content-Encoding": "br"}, gzip.compress(b"{}")),
    "502 html page": ("raw", 502, {"Content-Type": "text/html"}, HTML),
    "200 html page": ("raw", 200, {"Content-Type": "text/html"}, HTML),
    "200 truncated json": ("truncated", "Rating: [[2]]"),
    "200 empty body": ("raw", 200, {"Content-Type": "application/json"}, b""),
    "200 json list": ("raw", 200, {}, b"[1, 2, 3]"),
    "200 no choices": ("raw", 200, {}, b'{"choices": []}'),
    "200 content null": ("raw", 200, {}, b'{"choices": [{"message": {"content": null}}]}'),
    "200 message not an object": ("raw", 200, {}, b'{"choices": [{"message": "hi"}]}'),
    "200 invalid utf-8": ("raw", 200, {"Content-Type": "application/json; charset=utf-8"}, b'{"x": "\xff\xfe"}'),
    "500 invalid utf-8": ("raw", 500, {}, b"\xff\xfe\x00oops"),
    "200 bogus charset": ("raw", 200, {"Content-Type": "application/json; charset=klingon"}, b"{}"),
    "200 wrong content-length": ("raw", 200, {"Content-Length": "9999"}, b'{"choices": []}'),
    "connection reset": ("reset",),
}
# Replies that are final for the item: recorded as its error, the run goes on.
RECORDED = {
    "400 html page": ("raw", 400, {"Content-Type": "text/html"}, HTML),
    "404 empty": ("raw", 404, {}, b""),
    "422 json error": ("status", 422),
}


def _backend(srv, **kw) -> OpenAIHTTPBackend:
    opts = dict(timeout=2, max_retries=3, backoff_base=0.01, backoff_max=0.05, concurrency=1, seed=0)
    opts.update(kw)
    return OpenAIHTTPBackend("judge-x", base_url=srv.base_url, api_key="k", **opts)


@pytest.mark.parametrize("case", sorted(RETRIED))
def test_hostile_reply_is_retried_and_the_item_scored(case):
    hostile = RETRIED[case]
    with ScriptedServer(lambda body, n: hostile if n == 0 else OK) as srv:
        be = _backend(srv)
        t0 = time.perf_counter()
        out = be.generate_each([[{"role": "user", "content": "q"}]], DecodingParams(max_new_tokens=8))
        took = time.perf_counter() - t0
    assert not isinstance(out[0], Exception), out[0]
    assert out[0].text == "Fine. Rating: [[2]]" and len(srv.calls) == 2
    assert be.usage.to_dict()["retries"] == 1 and took < 5  # a bad Retry-After never means a long wait


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_final_error_reply_is_a_clean_per_item_error(case):
    hostile = RECORDED[case]
    with ScriptedServer(lambda body, n: hostile if "bad" in body["messages"][-1]["content"] else OK) as srv:
        out = _backend(srv).generate_each([[{"role": "user", "content": "bad"}], [{"role": "user", "content": "ok"}]],
                                          DecodingParams(max_new_tokens=8))
    assert isinstance(out[0], HTTPBackendError) and f"HTTP {hostile[1]}" in str(out[0])
    assert "\n" not in str(out[0])  # an HTML page becomes one line of message
    assert out[1].text == OK[1]


def test_retry_after_parsing():
    assert parse_retry_after("2") == 2.0 and parse_retry_after(" 0.5 ") == 0.5
    for bad in (None, "", "-1", "nan", "NaN", "inf", "-inf", "soon", "1e400"):
        assert parse_retry_after(bad) is None, bad
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


@pytest.mark.parametrize("field,value", [("timeout", 0), ("timeout", -1), ("timeout", float("nan")),
                                         ("max_retries", -1), ("backoff_base", -0.1), ("backoff_max", float("inf")),
                                         ("concurrency", 0)])
def test_backend_and_judge_config_values_are_checked(field, value):
    with pytest.raises(ConfigError, match=rf"backend\.{field}: must be"):
        OpenAIHTTPBackend("m", base_url="http://127.0.0.1:9/v1", **{field: value})
    if field != "backoff_max" or value == -1:
        with pytest.raises(ConfigError, match=rf"^{field}: "):
            judge_predictions("unused.jsonl", "unused", judge={"model": "m", field: value})


def _preds(path: Path, n: int) -> Path:
    rows = [{"id": f"q{i}", "model": "m", "language": "en" if i % 2 else "fr", "response": f"answer {i}",
             "messages": [{"role": "user", "content": f"question {i}"}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(srv_url: str, tmp_path: Path, **kw) -> dict:
    cfg = {"model": "judge-x", "base_url": srv_url, "cache_dir": str(tmp_path / "cache"), "timeout": 2,
           "max_retries": 2, "backoff_base": 0.01, "backoff_max": 0.05, "concurrency": 2}
    cfg.update(kw)
    return cfg


def test_partial_failures_are_recorded_and_tables_say_scored_of_total(tmp_path):
    preds = _preds(tmp_path / "p.jsonl", 6)

    def script(body, n):  # question 0 and 1 always get an HTML error page; question 2 a reset, then fine
        q = body["messages"][-1]["content"]
        if "question 0" in q or "question 1" in q:
            return ("raw", 400, {"Content-Type": "text/html"}, HTML)
        if "question 2" in q and n < 3:
            return ("reset",)
        return OK

    with ScriptedServer(script) as srv:
        summary = judge_predictions(preds, tmp_path / "out", judge=_cfg(srv.base_url, tmp_path), lid=None)
    rows = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(6)]  # every record out, in order
    assert [bool(r.get("error")) for r in rows] == [True, True, False, False, False, False]
    assert summary["errors"] == 2 and summary["scored"] == 4
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| m | fr | 2 / 3 | 4 | 4 | 6 |" in md and "| m | en | 2 / 3 | 4 | 4 | 6 |" in md


def test_nothing_scored_writes_results_and_exits_nonzero_with_one_line(tmp_path):
    preds = _preds(tmp_path / "p.jsonl", 4)
    with ScriptedServer(lambda body, n: ("raw", 401, {"Content-Type": "text/html"}, HTML)) as srv:
        cfg = _cfg(srv.base_url, tmp_path)
        with pytest.raises(NothingScoredError, match=r"no prediction was scored: 4 of 4 judge calls failed"):
            judge_predictions(preds, tmp_path / "out", judge=cfg, lid=None)
        assert len(srv.calls) <= cfg["concurrency"]  # a refused key fails the rest at once: no 401 per item
    rows = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("HTTP 401" in r["error"] for r in rows)
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| m | fr | 0 / 2 | – | – | – |" in md and "| 0 |" not in md.split("\n")[4]


@pytest.mark.slow
def test_cli_offline_judge_fails_fast_with_one_clear_line(tmp_path):
    preds = _preds(tmp_path / "p.jsonl", 12)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "judge.yaml"
    cfg.write_text(json.dumps({"model": "judge-x", "base_url": f"http://127.0.0.1:{port}/v1",
                               "cache_dir": str(tmp_path / "cache"), "backoff_base": 0.2}))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "polyinstruct", "judge", str(preds), "--out", str(tmp_path / "out"),
                           "--judge", str(cfg), "--lid", "none", "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - t0
    assert proc.returncode == 1
    errs = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errs) == 1 and "no prediction was scored: 12 of 12" in errs[0] and "cannot connect" in errs[0]
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "judgments.jsonl").exists() and (tmp_path / "out" / "summary.json").exists()
    assert took < 60  # default retries (6) would take minutes; an unreachable server fails after 3 tries


def test_corrupt_cache_line_is_skipped_and_its_item_asked_again(tmp_path):
    preds = _preds(tmp_path / "p.jsonl", 3)
    with ScriptedServer(lambda body, n: OK) as srv:
        cfg = _cfg(srv.base_url, tmp_path)
        judge_predictions(preds, tmp_path / "o1", judge=cfg, lid=None)
        cache = tmp_path / "cache" / "judge-x.jsonl"
        lines = cache.read_text().splitlines()
        cache.write_text(lines[0] + "\n{corrupt\n" + "\n".join(lines[1:]) + "\n")
        before = len(srv.calls)
        s = judge_predictions(preds, tmp_path / "o2", judge=cfg, lid=None)
        assert s["cached"] == 3 and len(srv.calls) == before
        cache.write_text(lines[0] + "\n" + lines[1][:-5] + "\n" + lines[2] + "\n")  # one line cut short
        s = judge_predictions(preds, tmp_path / "o3", judge=cfg, lid=None)
        assert s["cached"] == 2 and len(srv.calls) == before + 1 and s["scored"] == 3
