"""The interactive chat loop: history, /reset, /system, streaming to the output."""

from __future__ import annotations

import io

from polyinstruct.infer.backend import Generation
from polyinstruct.infer.chat import chat
from polyinstruct.infer.decoding import resolve_decoding


class EchoBackend:
    """Replies with how many messages it saw; records every conversation it was given."""

    name = "echo"

    def __init__(self):
        self.seen = []

    def generate(self, conversations, params):
        return [Generation(text=f"n={len(c)}") for c in conversations]

    def stream(self, conversation, params):
        self.seen.append([dict(m) for m in conversation])
        yield "n="
        yield str(len(conversation))


def test_chat_keeps_history_and_handles_commands():
    backend = EchoBackend()
    lines = iter(["hello", "again", "/reset", "fresh", "/system Be brief.", "hi", "/bogus", "/quit"])
    out = io.StringIO()
    session = chat(backend, resolve_decoding("greedy"), input_fn=lambda _p: next(lines), out=out)
    assert [len(c) for c in backend.seen] == [1, 3, 1, 2]
    assert backend.seen[1][1] == {"role": "assistant", "content": "n=1"}
    assert backend.seen[3][0] == {"role": "system", "content": "Be brief."}
    assert session.history == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "n=2"}]
    text = out.getvalue()
    assert "n=3" in text and "history cleared" in text and "unknown command '/bogus'" in text


def test_chat_streams_with_the_real_backend(hf_backend):
    lines = iter(["Hi"])

    def next_line(_prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    out = io.StringIO()
    params = resolve_decoding("greedy", max_new_tokens=8)
    session = chat(hf_backend, params, input_fn=next_line, out=out)
    reply = hf_backend.generate([[{"role": "user", "content": "Hi"}]], params)[0].text
    assert session.history[-1] == {"role": "assistant", "content": reply}
    assert reply in out.getvalue()
