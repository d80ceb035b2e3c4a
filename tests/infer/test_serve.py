"""The OpenAI-compatible server, driven by the official ``openai`` client."""

from __future__ import annotations

import threading

import httpx
import pytest

from polyinstruct.infer.decoding import resolve_decoding
from polyinstruct.infer.serve import create_app
from tests.infer.conftest import ServerThread

KEY = "sk-test-123"


@pytest.fixture(scope="module")
def server(hf_backend):
    app = create_app(hf_backend, model_name="tiny", api_key=KEY, max_tokens_limit=64, max_request_bytes=20_000,
                     max_batch_size=8)
    with ServerThread(app) as s:
        s.app = app
        yield s


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def test_chat_completion_non_streaming_matches_backend(client, hf_backend, conversations):
    conv = conversations[2]
    r = client.chat.completions.create(model="tiny", messages=conv, max_tokens=16, temperature=0)
    expected = hf_backend.generate([conv], resolve_decoding("greedy", max_new_tokens=16))[0]
    assert r.choices[0].message.content == expected.text
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 16 and r.usage.prompt_tokens == expected.prompt_tokens
    assert r.model == "tiny"


def test_chat_completion_streaming_matches_non_streaming(client, conversations):
    conv = conversations[0]
    full = client.chat.completions.create(model="tiny", messages=conv, max_tokens=16, temperature=0)
    stream = client.chat.completions.create(model="tiny", messages=conv, max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            finish = c.finish_reason or finish
    assert len(pieces) > 1
    assert "".join(pieces) == full.choices[0].message.content
    assert finish == "length" and usage.completion_tokens == 16


def test_stop_parameter(client, conversations):
    conv = conversations[0]
    text = client.chat.completions.create(model="tiny", messages=conv, max_tokens=16, temperature=0
                                          ).choices[0].message.content
    stop = text[6:9]
    r = client.chat.completions.create(model="tiny", messages=conv, max_tokens=16, temperature=0, stop=[stop])
    assert r.choices[0].message.content == text[:text.index(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_completions_and_models(client, hf_backend):
    r = client.completions.create(model="tiny", prompt=["Hello there", "The quick brown"], max_tokens=8,
                                  temperature=0)
    expected = hf_backend.generate_text(["Hello there", "The quick brown"], resolve_decoding("greedy", max_new_tokens=8))
    assert [c.text for c in r.choices] == [g.text for g in expected]
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Hello there", max_tokens=8, temperature=0, stream=True) if c.choices)
    assert streamed == expected[0].text
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_malformed_requests_get_4xx_that_say_what_is_wrong(server, client):
    import openai

    cases = [
        (dict(messages=[{"role": "wizard", "content": "hi"}]), 400, "messages.0"),
        (dict(messages=[]), 400, "messages"),
        (dict(messages=[{"role": "user", "content": "hi"}], max_tokens=100_000), 400, "limit of 64"),
        (dict(messages=[{"role": "user", "content": "hi"}], temperature=5), 400, "temperature"),
        (dict(messages=[{"role": "user", "content": "hi"}], n=3), 400, "n=1"),
    ]
    for kw, status, words in cases:
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="tiny", **kw)
        assert e.value.status_code == status, kw
        assert words in e.value.message, (kw, e.value.message)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    headers = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", headers=headers)
    assert r.status_code == 400 and "invalid request" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "tiny"}, headers=headers)
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    big = {"model": "tiny", "messages": [{"role": "user", "content": "x" * 50_000}]}
    r = httpx.post(server.url + "/v1/chat/completions", json=big, headers=headers)
    assert r.status_code == 413
    r = httpx.post(server.url + "/v1/chat/completions", json=big, headers={"Authorization": "Bearer wrong"})
    assert r.status_code in (401, 413)
    r = httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_concurrent_requests_are_batched_and_all_answered(server, client, hf_backend, conversations):
    worker = server.app.state.worker
    before = worker.batches_run
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            conv = conversations[i % len(conversations)]
            r = client.chat.completions.create(model="tiny", messages=conv, max_tokens=8, temperature=0)
            results[i] = r.choices[0].message.content
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 16
    expected = [g.text for g in hf_backend.generate(conversations, resolve_decoding("greedy", max_new_tokens=8))]
    assert all(results[i] == expected[i % len(conversations)] for i in range(16))
    assert worker.batches_run - before < 16, "waiting requests should have been batched"


class BlockingBackend:
    """Holds every generate call until released, to fill the server's queue."""

    name = "blocking"

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()

    def generate(self, conversations, params):
        from polyinstruct.infer.backend import Generation

        self.started.set()
        self.release.wait(30)
        return [Generation(text="ok", prompt_tokens=1, completion_tokens=1) for _ in conversations]

    def stream(self, conversation, params):
        yield "ok"


def test_full_queue_answers_503_and_server_recovers():
    backend = BlockingBackend()
    app = create_app(backend, model_name="b", max_queue=1, max_batch_size=1)
    body = {"model": "b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with ServerThread(app) as s:
        results = []

        def post():
            results.append(httpx.post(s.url + "/v1/chat/completions", json=body, timeout=30).status_code)

        first = threading.Thread(target=post)
        first.start()
        assert backend.started.wait(10)  # the worker holds request 1
        second = threading.Thread(target=post)
        second.start()
        deadline = threading.Event()
        while app.state.worker.queued < 1 and not deadline.wait(0.05):
            pass
        r = httpx.post(s.url + "/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "busy" in r.json()["error"]["message"]
        backend.release.set()
        first.join(30)
        second.join(30)
        assert results == [200, 200]
        assert httpx.post(s.url + "/v1/chat/completions", json=body, timeout=30).status_code == 200
        # /v1/completions needs a backend that can continue raw text
        r = httpx.post(s.url + "/v1/completions", json={"model": "b", "prompt": "x"}, timeout=30)
        assert r.status_code == 400 and "only supports chat" in r.json()["error"]["message"]


def test_client_that_drops_a_stream_does_not_block_the_server(server, client):
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64, "stream": True,
            "temperature": 0}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        first = next(r.iter_lines())
        assert first.startswith("data: ")
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")
