"""Judging with polyinstruct's own model stack: ``serve`` over HTTP, and the local hf backend.

A tiny random model cannot grade, so every reply is garbage: the runner must
re-ask, then record the judgment as unparsed, never invent a score.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from polyinstruct.judge.run import judge_predictions


def _predictions(path, n=3):
    rows = [{"id": f"q{i}", "model": "m", "language": "en", "response": f"Paris is the capital, answer {i}.",
             "messages": [{"role": "user", "content": f"What is the capital of France? ({i})"}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.slow
def test_judge_against_polyinstruct_serve(tiny_model_dir, tmp_path):
    import uvicorn

    from polyinstruct.infer import load_backend
    from polyinstruct.infer.serve import create_app

    app = create_app(load_backend({"backend": "hf", "model": str(tiny_model_dir), "device": "cpu"}),
                     model_name="tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        import httpx

        probe = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                           json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        if probe.status_code == 400 and "query.request" in probe.text:
            pytest.skip("polyinstruct.infer.serve bug (owned by infer): FastAPI cannot resolve the local `Request` "
                        "annotation of check_key and rejects every request with 400 query.request")
        _predictions(tmp_path / "p.jsonl")
        cfg = {"model": "tiny", "base_url": f"http://127.0.0.1:{port}/v1", "max_new_tokens": 8,
               "max_parse_retries": 1, "cache_dir": str(tmp_path / "c"), "concurrency": 2, "api_key_env": "NO_KEY"}
        s = judge_predictions(tmp_path / "p.jsonl", tmp_path / "out", judge=cfg, lid=None)
        rows = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
        assert s["errors"] == 0 and s["unparsed"] == 3 and s["usage"]["requests"] == 6
        assert s["usage"]["prompt_tokens"] > 0 and s["usage"]["completion_tokens"] > 0
        assert all(r["score"] is None and r["attempts"] == 2 and isinstance(r["raw"], str) for r in rows)
        again = judge_predictions(tmp_path / "p.jsonl", tmp_path / "out2", judge=cfg, lid=None)
        assert again["cached"] == 3 and again["usage"]["requests"] == 0
    finally:
        server.should_exit = True
        t.join(timeout=10)


@pytest.mark.slow
def test_local_hf_judge_backend(tiny_model_dir, tmp_path):
    _predictions(tmp_path / "p.jsonl", n=2)
    cfg = {"backend": "hf", "model": str(tiny_model_dir), "backend_options": {"device": "cpu"},
           "max_new_tokens": 6, "max_parse_retries": 0, "cache_dir": str(tmp_path / "c")}
    s = judge_predictions(tmp_path / "p.jsonl", tmp_path / "out", judge=cfg, lid=None)
    assert s["n"] == 2 and s["unparsed"] == 2 and s["errors"] == 0
    assert s["judge"].startswith("hf:")
