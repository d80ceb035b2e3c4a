"""Split long conversations at turn boundaries (ShareGPT handling in Vicuna/Tulu).

A conversation longer than ``max_tokens`` is cut into chunks of whole
user/assistant rounds; every chunk starts with a user turn (after the system
message, which is repeated in each chunk when ``keep_system``) and ends with an
assistant turn. A single round longer than ``max_tokens`` stays one chunk, as
in Vicuna's script: it cannot be cut at a turn boundary, and truncation is the
tokenizer stage's job. Chunk ids are ``{id}-c{k}``; unsplit records keep theirs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Iterator

from polyinstruct.data.records import Conversation, Message
from polyinstruct.data.tokens import make_counter


def _rounds(messages: list[Message]) -> list[list[Message]]:
    """Group into rounds: a user turn and everything up to the next user turn."""
    rounds: list[list[Message]] = []
    for m in messages:
        if m.role == "user" or not rounds:
            rounds.append([m])
        else:
            rounds[-1].append(m)
    return rounds


def chunk_conversation(conv: Conversation, max_tokens: int, tokenizer: Any = None, *,
                       keep_system: bool = True) -> list[Conversation]:
    """Chunks of ``conv`` of at most ``max_tokens`` (content tokens) each, cut between rounds."""
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    count = make_counter(tokenizer)
    system = [m for m in conv.messages[:1] if m.role == "system"]
    body = conv.messages[len(system):]
    sys_len = sum(count(m.text) for m in system) if keep_system else 0
    rounds = _rounds(body)
    lengths = [sum(count(m.text) for m in r) for r in rounds]
    if sys_len + sum(lengths) <= max_tokens:
        return [conv]
    chunks: list[list[Message]] = []
    cur: list[Message] = []
    cur_len = sys_len
    for r, n in zip(rounds, lengths):
        if cur and cur_len + n > max_tokens:
            chunks.append(cur)
            cur, cur_len = [], sys_len
        cur = cur + r
        cur_len += n
    if cur:
        chunks.append(cur)
    out = []
    for k, msgs in enumerate(chunks):
        while msgs and msgs[-1].role != "assistant":  # a chunk must end with an answer
            msgs = msgs[:-1]
        if not msgs:
            continue
        prefix = system if (keep_system or k == 0) else []
        out.append(replace(conv, id=f"{conv.id}-c{k}", messages=list(prefix) + msgs,
                           meta={**conv.meta, "chunk": k, "chunked_from": conv.id}))
    return out


def chunk_conversations(records: Iterable[Conversation], max_tokens: int, tokenizer: Any = None, *,
                        keep_system: bool = True) -> Iterator[Conversation]:
    """Stream version of ``chunk_conversation``."""
    count = make_counter(tokenizer)
    for conv in records:
        yield from chunk_conversation(conv, max_tokens, count, keep_system=keep_system)
