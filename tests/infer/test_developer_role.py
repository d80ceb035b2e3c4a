"""The server reads OpenAI's ``developer`` role as ``system``, as the data readers do (issue 10 item 11)."""

from __future__ import annotations

import json

import httpx

from polyinstruct.data.formats import read_records
from polyinstruct.infer.serve import create_app
from tests.infer.conftest import ServerThread


def test_developer_message_is_answered_as_a_system_message(hf_backend, tmp_path):
    # the data side: a developer turn is read as system
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": "d", "messages": [{"role": "developer", "content": "Answer briefly."},
                                                        {"role": "user", "content": "Hi"},
                                                        {"role": "assistant", "content": "Hello."}]}) + "\n")
    (conv,) = list(read_records(path, format="messages"))  # OpenAI-style chat rows
    assert conv.messages[0].role == "system"
    with ServerThread(create_app(hf_backend, model_name="tiny", max_tokens_limit=16)) as s:
        def ask(role: str) -> httpx.Response:
            return httpx.post(f"{s.url}/v1/chat/completions", timeout=60, json={
                "model": "tiny", "max_tokens": 4, "temperature": 0,
                "messages": [{"role": role, "content": "Answer briefly."}, {"role": "user", "content": "Hi"}]})

        dev, system = ask("developer"), ask("system")
    assert dev.status_code == 200, dev.text
    assert dev.json()["choices"][0]["message"]["content"] == system.json()["choices"][0]["message"]["content"]
    assert dev.json()["usage"]["prompt_tokens"] == system.json()["usage"]["prompt_tokens"]
