"""The server bounds each request's work: capped prompts and queued tokens, cancelled when the
client leaves, unsupported options refused. Timing asserts compare against a baseline measured
in the same test, with a wide margin."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from polyinstruct.infer.backend import Generation
from polyinstruct.infer.serve import create_app
from tests.infer.conftest import ServerThread

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"


class TokenClockBackend:
    """Takes ``tick`` seconds per generated token (per batch, as a GPU would), stops when told."""

    name = "clock"

    def __init__(self, tick: float = 0.002):
        self.tick = tick
        self.steps = 0  # token steps actually run
        self.stopped_early = 0
        self.lock = threading.Lock()

    def _run(self, n: int, params, should_stop) -> list[Generation]:
        done = 0
        for _ in range(params.max_new_tokens):
            if should_stop is not None and should_stop():
                self.stopped_early += 1
                break
            time.sleep(self.tick)
            done += 1
            with self.lock:
                self.steps += 1
        return [Generation(text="x" * done, prompt_tokens=3, completion_tokens=done, finish_reason="length")
                for _ in range(n)]

    def generate(self, conversations, params, *, should_stop=None):
        return self._run(len(conversations), params, should_stop)

    def generate_text(self, prompts, params, *, should_stop=None):
        return self._run(len(prompts), params, should_stop)

    def stream(self, conversation, params):
        yield "x"


def _normal(url: str) -> float:
    t0 = time.perf_counter()
    r = httpx.post(url + CHAT, json={"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 10, "temperature": 0}, timeout=60)
    assert r.status_code == 200, r.text
    return time.perf_counter() - t0


def _baseline(url: str) -> float:
    _normal(url)  # warm-up
    return statistics.median(_normal(url) for _ in range(5))


def test_bulk_request_over_the_prompt_cap_is_refused_without_work(tmp_path):
    backend = TokenClockBackend()
    app = create_app(backend, model_name="m", max_tokens_limit=4096, max_prompts_per_request=32)
    with ServerThread(app) as s:
        base = _baseline(s.url)
        steps = backend.steps
        t0 = time.perf_counter()
        r = httpx.post(s.url + "/v1/completions", json={"model": "m", "prompt": ["p"] * 200, "max_tokens": 2000},
                       timeout=60)
        refused_in = time.perf_counter() - t0
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_prompts"
        assert "at most 32" in r.json()["error"]["message"] and r.json()["error"]["param"] == "prompt"
        assert backend.steps == steps and app.state.worker.pending_tokens == 0  # nothing ran, nothing queued
        after = _normal(s.url)
    assert refused_in < 5 * base + 1
    assert after < 5 * base + 1, (after, base)


def test_request_over_the_token_budget_is_400_and_a_busy_server_says_503(tmp_path):
    backend = TokenClockBackend(tick=0.002)
    app = create_app(backend, model_name="m", max_tokens_limit=4096, max_queued_tokens=3000)
    with ServerThread(app) as s:
        r = httpx.post(s.url + "/v1/completions", json={"model": "m", "prompt": ["p"] * 2, "max_tokens": 2000},
                       timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "request_too_large"
        assert "limit of 3000" in r.json()["error"]["message"]
        holder = threading.Thread(target=lambda: httpx.post(
            s.url + "/v1/completions", json={"model": "m", "prompt": "p", "max_tokens": 2000}, timeout=120))
        holder.start()
        deadline = time.time() + 30
        while app.state.worker.pending_tokens == 0 and time.time() < deadline:
            time.sleep(0.01)
        held = app.state.worker.pending_tokens
        assert held == 2001  # 2000 new tokens + a 1-token prompt estimate
        r = httpx.post(s.url + "/v1/completions", json={"model": "m", "prompt": ["a", "b"], "max_tokens": 600},
                       timeout=60)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "tokens of work" in r.text
        assert app.state.worker.pending_tokens == held  # refused as a whole: none of its prompts was admitted
        holder.join(120)
        assert app.state.worker.pending_tokens == 0


def test_client_that_leaves_cancels_its_generation_and_the_next_request_is_fast():
    backend = TokenClockBackend(tick=0.002)  # 2000 tokens = 4 s per batch; 32 prompts = 2 batches of 16
    app = create_app(backend, model_name="m", max_tokens_limit=4096, max_batch_size=16)
    with ServerThread(app) as s:
        base = _baseline(s.url)
        body = {"model": "m", "prompt": [f"p{i}" for i in range(32)], "max_tokens": 2000}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(s.url + "/v1/completions", json=body, timeout=httpx.Timeout(60, read=0.5))
        after = _normal(s.url)
        deadline = time.time() + 10
        # the left request's tokens are released at once; the job itself leaves the queue when the
        # worker reaches it (after the busy request), so wait for both
        while (app.state.worker.pending_tokens or app.state.worker.queued) and time.time() < deadline:
            time.sleep(0.01)
        assert app.state.worker.pending_tokens == 0  # the bulk request's work is gone, not queued
    assert backend.stopped_early >= 1  # the running batch was stopped mid-generation
    assert backend.steps < 2 * 2000  # without cancelling, both batches run to the end
    assert after < 5 * base + 1, (after, base)  # not behind 8 s of abandoned work


def test_streaming_client_that_leaves_before_its_turn_never_runs():
    backend = TokenClockBackend(tick=0.01)
    app = create_app(backend, model_name="m", max_tokens_limit=4096)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 300}
    with ServerThread(app) as s:
        busy = threading.Thread(target=lambda: httpx.post(s.url + CHAT, json=body, timeout=60))
        busy.start()
        while backend.steps == 0:
            time.sleep(0.01)
        with pytest.raises(httpx.ReadTimeout):
            with httpx.stream("POST", s.url + CHAT, json={**body, "stream": True},
                              timeout=httpx.Timeout(60, read=0.3)) as r:
                for _ in r.iter_lines():
                    pass
        busy.join(60)
        deadline = time.time() + 10
        # the left request's tokens are released at once; the job itself leaves the queue when the
        # worker reaches it (after the busy request), so wait for both
        while (app.state.worker.pending_tokens or app.state.worker.queued) and time.time() < deadline:
            time.sleep(0.01)
        assert app.state.worker.pending_tokens == 0 and app.state.worker.queued == 0
        assert backend.steps <= body["max_tokens"]  # only the busy request's tokens ran


HOSTILE = [  # (endpoint, body changes, param the 400 names or None, words in the message)
    (CHAT, {"logprobs": True}, "logprobs", "not supported"),
    (CHAT, {"top_logprobs": 5}, "top_logprobs", "not supported"),
    (CHAT, {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "not supported"),
    (CHAT, {"tool_choice": "auto"}, "tool_choice", "not supported"),
    (CHAT, {"functions": [{"name": "f"}]}, "functions", "not supported"),
    (CHAT, {"response_format": {"type": "json_object"}}, "response_format", "not supported"),
    (CHAT, {"logit_bias": {"50256": -100}}, "logit_bias", "not supported"),
    (CHAT, {"modalities": ["text", "audio"]}, "modalities", "not supported"),
    (CHAT, {"max_token": 5}, "max_token", "Did you mean: max_tokens"),
    (CHAT, {"temprature": 0.5}, "temprature", "Did you mean: temperature"),
    (CHAT, {"seed": 12345678901234567890123}, "seed", "less than or equal"),
    (CHAT, {"seed": -(10**20)}, "seed", "greater than or equal"),
    (CHAT, {"seed": "abc"}, "seed", "integer"),
    (CHAT, {"max_tokens": 10**20}, "max_tokens", "limit"),
    (CHAT, {"max_tokens": 0}, "max_tokens", "greater than"),
    (CHAT, {"temperature": float("nan")}, None, "temperature"),
    (CHAT, {"top_p": 0}, "top_p", "greater than"),
    (CHAT, {"n": 2}, None, "n=1"),
    (CHAT, {"stop": [""]}, "stop", "non-empty"),
    (CHAT, {"stop": ["s"] * 17}, "stop", "16"),
    (CHAT, {"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role", ""),
    (CHAT, {"messages": [{"role": "user", "content": 5}]}, "messages.0.content", ""),
    (CHAT, {"messages": "hi"}, "messages", ""),
    (CHAT, {"messages": [{"role": "assistant", "content": "x"}]}, None, "last message"),
    (CHAT, {"frequency_penalty": 1.0}, None, "frequency_penalty"),
    (CHAT, {"stream": "yes please"}, "stream", ""),
    (CHAT, {"model": ""}, "model", ""),
    ("/v1/completions", {"echo": True}, None, "echo"),
    ("/v1/completions", {"logprobs": 2}, None, "logprobs"),
    ("/v1/completions", {"suffix": "x"}, None, "suffix"),
    ("/v1/completions", {"best_of": 3}, "best_of", "not supported"),
    ("/v1/completions", {"prompt": []}, "prompt", ""),
    ("/v1/completions", {"prompt": [1, 2, 3]}, None, "prompt"),
    ("/v1/completions", {"prompt": ["a", "b"], "stream": True}, None, "single prompt"),
]
ACCEPTED = [{"logprobs": False}, {"tools": []}, {"tool_choice": "none"}, {"response_format": {"type": "text"}},
            {"user": "u1", "metadata": {"k": "v"}, "store": False}, {"seed": 2**64 - 1}, {"seed": -(2**63)},
            {"logit_bias": {}}]


def _body(endpoint: str, change: dict) -> dict:
    base = ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
            if endpoint == CHAT else {"model": "m", "prompt": "hi", "max_tokens": 3})
    return {**base, **change}


def test_unsupported_or_malformed_options_are_400_naming_the_field_never_500():
    app = create_app(TokenClockBackend(tick=0.0), model_name="m", max_tokens_limit=64)
    tried = clean = 0
    with ServerThread(app) as s:
        for endpoint, change, param, words in HOSTILE:
            tried += 1
            raw = json.dumps(_body(endpoint, change), allow_nan=True)
            r = httpx.post(s.url + endpoint, content=raw, headers={"Content-Type": "application/json"}, timeout=30)
            assert r.status_code == 400, (change, r.status_code, r.text)
            err = r.json()["error"]
            assert words in err["message"], (change, err)
            if param is not None:
                assert (err["param"] or "").startswith(param), (change, err)
            clean += 1
        for change in ACCEPTED:
            r = httpx.post(s.url + CHAT, json=_body(CHAT, change), timeout=30)
            assert r.status_code == 200, (change, r.text)
    assert tried == clean == len(HOSTILE)


def test_hf_generation_stops_when_asked(hf_backend):
    from polyinstruct.infer.decoding import resolve_decoding

    params = resolve_decoding("greedy", max_new_tokens=40)
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    gens = hf_backend.generate([[{"role": "user", "content": "Tell me a long story."}]] * 2, params,
                               should_stop=stop_after_three)
    assert all(g.completion_tokens <= 4 for g in gens) and calls["n"] >= 1


@pytest.mark.slow
def test_serve_cli_refuses_an_unset_api_key_env_and_bad_limits(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_KEY_VAR"}
    env["PYTHONPATH"] = str(ROOT)
    missing_model = str(tmp_path / "no-model")  # the checks come before any model is loaded
    for extra, words in [(["--api-key-env", "NO_SUCH_KEY_VAR"], "NO_SUCH_KEY_VAR is not set"),
                         (["--max-queued-tokens", "-5"], "max_queued_tokens: must be an integer >= 1")]:
        proc = subprocess.run([sys.executable, "-m", "polyinstruct", "serve", missing_model, *extra],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    env["SET_KEY_VAR"] = ""
    proc = subprocess.run([sys.executable, "-m", "polyinstruct", "serve", missing_model, "--api-key-env", "SET_KEY_VAR"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "SET_KEY_VAR is not set (or empty)" in proc.stderr
