"""End-to-end judging against a real HTTP server on loopback (scripted verdicts and failures)."""

from __future__ import annotations

import re
import threading
from collections import Counter

import pytest

from polyinstruct.infer.backend import DecodingParams
from polyinstruct.infer.openai_http import HTTPBackendError, OpenAIHTTPBackend
from polyinstruct.judge.cache import JudgmentCache
from polyinstruct.judge.judges import SingleJudge
from polyinstruct.judge.prompts import load_template
from tests.judge.fake_server import ScriptedServer

MARK = re.compile(r"answer-(\d+) score=(\w+)")


def verdict_for(body: dict) -> str:
    """The reply a well-behaved judge gives: the score written in the answer."""
    m = MARK.search(body["messages"][-1]["content"])
    return f"The answer is fine. Rating: [[{m.group(2)}]]"


def items(n: int, scores=None) -> list[dict]:
    scores = scores or [1 + i % 3 for i in range(n)]
    return [{"id": f"q{i}", "model": "m", "language": "en",
             "messages": [{"role": "user", "content": f"Question {i}?"}],
             "response": f"answer-{i} score={s}"} for i, s in enumerate(scores)]


def backend(server, **kw) -> OpenAIHTTPBackend:
    # A generous timeout: on a loaded CI machine a prompt reply can take a while, and a timeout
    # there would be an extra retry the counts below do not expect (a test racing a timer).
    opts = dict(timeout=10, max_retries=5, backoff_base=0.01, backoff_max=0.05, concurrency=4, seed=0,
                prices={"judge-x": {"prompt": 1.0, "completion": 2.0}})
    opts.update(kw)
    return OpenAIHTTPBackend("judge-x", base_url=server.base_url, api_key="k", **opts)


def judge(be, cache, **kw) -> SingleJudge:
    return SingleJudge(be, load_template("single-1to3"), cache, judge_name="judge-x",
                       params=DecodingParams(max_new_tokens=64), **kw)


def test_scores_parsed_and_usage_counted(tmp_path):
    with ScriptedServer(lambda body, n: ("ok", verdict_for(body))) as srv:
        be = backend(srv)
        rows = judge(be, JudgmentCache(tmp_path / "c.jsonl")).score(items(9))
    assert [r["score"] for r in rows] == [1.0, 2.0, 3.0] * 3
    assert all(r["parsed"] and r["attempts"] == 1 and not r["cached"] for r in rows)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(9)]
    # The request follows the protocol: one pair, judge prompt with the language rule, greedy.
    body = srv.calls[0]
    assert body["model"] == "judge-x" and body["temperature"] == 0.0 and body["max_tokens"] == 64
    assert "same language as the question" in body["messages"][-1]["content"]
    assert be.usage.to_dict() == {"requests": 9, "retries": 0, "failures": 0, "prompt_tokens": 90,
                                  "completion_tokens": 45, "cost_usd": pytest.approx(9 * (10 + 10) / 1e6)}


def test_error_storm_retried_without_losing_or_duplicating(tmp_path):
    """Each question first meets 500, 429 (Retry-After) and a timeout, then succeeds."""
    seen: Counter = Counter()
    lock = threading.Lock()
    failures = [("status", 500), ("status", 429, {"Retry-After": "0"}), ("sleep", 6.0, "too late [[1]]"),
                ("status", 503), ("garbage",)]

    def script(body, n):
        key = MARK.search(body["messages"][-1]["content"]).group(1)
        with lock:
            k = seen[key]
            seen[key] += 1
        return failures[(k + int(key)) % len(failures)] if k < 3 else ("ok", verdict_for(body))

    n_items = 12
    with ScriptedServer(script) as srv:
        be = backend(srv, timeout=2.0)  # the scripted timeout answers after 6 s: 3x margin either way
        cache = JudgmentCache(tmp_path / "c.jsonl")
        rows = judge(be, cache).score(items(n_items))
    assert [r["score"] for r in rows] == [1.0 + i % 3 for i in range(n_items)]
    assert all(r["error"] is None for r in rows)
    assert len({r["id"] for r in rows}) == n_items
    assert all(v == 4 for v in seen.values()) and len(seen) == n_items  # 3 failures + 1 success each
    assert be.usage.retries == 3 * n_items
    # exactly one cache line per item: nothing duplicated
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert len(lines) == n_items


def test_unparsable_replies_retried_then_recorded(tmp_path):
    calls: Counter = Counter()

    def script(body, n):
        i = int(MARK.search(body["messages"][-1]["content"]).group(1))
        calls[i] += 1
        if i == 0:
            return ("ok", "I cannot decide, it is somewhere in between.")  # never parsable
        if i == 1 and calls[i] == 1:
            return ("ok", "Rating: [[7]]")  # out of the 1-3 scale: not a verdict
        if i == 2:
            return ("ok", "Rating: [[1]] ... on reflection Rating: [[3]]")  # conflicting
        return ("ok", verdict_for(body))

    with ScriptedServer(script) as srv:
        cache = JudgmentCache(tmp_path / "c.jsonl")
        rows = judge(backend(srv), cache, max_parse_retries=2).score(items(4, scores=[2, 3, 2, 3]))
    assert rows[0]["score"] is None and not rows[0]["parsed"] and rows[0]["attempts"] == 3
    assert rows[0]["error"] is None and rows[0]["raw"].startswith("I cannot decide")
    assert rows[1]["score"] == 3.0 and rows[1]["attempts"] == 2
    assert rows[2]["score"] is None and rows[2]["attempts"] == 3
    assert rows[3]["score"] == 3.0 and rows[3]["attempts"] == 1
    assert calls == Counter({0: 3, 1: 2, 2: 3, 3: 1})
    # unparsed judgments are cached as such: a rerun asks nothing ...
    with ScriptedServer(lambda b, n: ("ok", verdict_for(b))) as srv2:
        rows2 = judge(backend(srv2), JudgmentCache(tmp_path / "c.jsonl")).score(items(4, scores=[2, 3, 2, 3]))
        assert srv2.calls == [] and rows2[0]["score"] is None and rows2[0]["cached"]
        # ... unless asked to retry them
        rows3 = judge(backend(srv2), JudgmentCache(tmp_path / "c.jsonl"), retry_unparsed=True).score(
            items(4, scores=[2, 3, 2, 3]))
        assert len(srv2.calls) == 2 and rows3[0]["score"] == 2.0 and rows3[2]["score"] == 2.0


def test_failures_after_retries_are_errors_not_cached(tmp_path):
    with ScriptedServer(lambda b, n: ("status", 500)) as srv:
        be = backend(srv, max_retries=2, concurrency=1)
        rows = judge(be, JudgmentCache(tmp_path / "c.jsonl")).score(items(2))
        assert len(srv.calls) == 6 and be.usage.failures == 2
    assert all(r["score"] is None and "giving up after 3 attempts" in r["error"] for r in rows)
    assert not (tmp_path / "c.jsonl").exists()
    with ScriptedServer(lambda b, n: ("ok", verdict_for(b))) as srv:
        rows = judge(backend(srv), JudgmentCache(tmp_path / "c.jsonl")).score(items(2))
    assert [r["score"] for r in rows] == [1.0, 2.0]


def test_client_errors_fail_fast():
    with ScriptedServer(lambda b, n: ("status", 401)) as srv:
        be = backend(srv)
        with pytest.raises(HTTPBackendError, match="HTTP 401"):
            be.generate([[{"role": "user", "content": "hi"}]], DecodingParams())
        assert len(srv.calls) == 1


def test_rerun_costs_nothing_and_duplicates_are_asked_once(tmp_path):
    its = items(5) + [dict(items(5)[0], id="dup", model="other")]  # same question and answer
    with ScriptedServer(lambda b, n: ("ok", verdict_for(b))) as srv:
        rows = judge(backend(srv), JudgmentCache(tmp_path / "c.jsonl")).score(its)
        assert len(srv.calls) == 5 and rows[-1]["score"] == rows[0]["score"]
        rows2 = judge(backend(srv), JudgmentCache(tmp_path / "c.jsonl")).score(its)
        assert len(srv.calls) == 5
    assert [r["score"] for r in rows2] == [r["score"] for r in rows] and all(r["cached"] for r in rows2)


def test_stream_yields_text_pieces():
    import json as _json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece in ["Hel", "lo"]:
                chunk = {"choices": [{"delta": {"content": piece}}]}
                self.wfile.write(f"data: {_json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        be = OpenAIHTTPBackend("m", base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1", api_key="")
        assert list(be.stream([{"role": "user", "content": "hi"}], DecodingParams())) == ["Hel", "lo"]
    finally:
        httpd.shutdown()
        httpd.server_close()
