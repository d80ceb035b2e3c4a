"""Tokenization with assistant-only labels.

The rendered segments are merged into *runs* (maximal pieces with the same
label), and each run is encoded on its own; a run's tokens take its label.
So no token can straddle the prompt/answer boundary (the TRL#598 failure),
and the prompt part of a training example has exactly the ids that
``ChatTemplate.encode_prompt`` gives at inference time.

Runs after the first are encoded as continuations: for tokenizers that add a
SentencePiece dummy prefix ("▁") to every encoded string, the run is encoded
after a special-token sentinel and the sentinel is dropped (the trick
transformers' own Llama tokenizer uses), so no spurious space appears.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from polyinstruct.data.records import Conversation
from polyinstruct.errors import ConfigError, DataError
from polyinstruct.templates.encode import (  # noqa: F401 - re-exported
    Encoded, TokenizerInfo, encode_segments, tokenizer_adds_bos)
from polyinstruct.templates.labels import IGNORE_INDEX
from polyinstruct.templates.render import ChatTemplate, Segment
from polyinstruct.templates.verify import verify_labels

log = logging.getLogger(__name__)
TRAIN_ON = ("all", "last")
TRUNCATION = ("turn", "drop")


def _labels(enc: Encoded, keep_turns: set[int] | None) -> list[int]:
    labels = [IGNORE_INDEX] * len(enc.ids)
    for start, end, trained, turn, _ in enc.runs:
        if trained and (keep_turns is None or turn in keep_turns):
            labels[start:end] = enc.ids[start:end]
    return labels


def finish_example(enc: Encoded, conv_id: str, *, max_length: int | None, train_on: str,
                   truncation: str, train_on_inputs: bool = False) -> tuple[dict | None, str]:
    """Apply truncation and the train_on rule; returns (row or None, status).

    ``train_on_inputs=True`` trains on the whole rendered sequence (prompt and
    scaffolding too, everything after BOS), as alpaca-lora's ``train_on_inputs``
    and study 1's authors did; the default trains on assistant turns only.
    """
    ids, runs = enc.ids, enc.runs
    status = "ok"
    if max_length is not None and len(ids) > max_length:
        if truncation == "drop":
            return None, "dropped_too_long"
        # a turn is complete when its whole trained run fits; keep up to the last complete one
        ends = [end for (_, end, trained, _, _) in runs if trained and end <= max_length]
        if not ends:
            return None, "dropped_no_complete_turn"
        cut = max(ends)
        ids = ids[:cut]
        runs = [r for r in runs if r[1] <= cut]
        status = "truncated"
    turns = [turn for (_, _, trained, turn, _) in runs if trained]
    if not turns:
        return None, "dropped_no_complete_turn"
    keep = None if train_on == "all" else {max(turns)}
    if train_on_inputs:
        first = runs[0][0] if runs else len(ids)  # BOS (if any) is never a target
        labels = [IGNORE_INDEX] * first + ids[first:]
        expected = ["".join(text for (s, e, _, _, text) in runs if e > s)]
    else:
        labels = _labels(Encoded(ids, runs), keep)
        expected = [text for (s, e, trained, turn, text) in runs if trained and e > s and (keep is None or turn in keep)]
    n = len(labels) - labels.count(IGNORE_INDEX)
    if n == 0:
        return None, "dropped_no_complete_turn"
    return {"input_ids": ids, "labels": labels, "length": len(ids), "num_loss_tokens": n, "id": conv_id,
            "_expected": expected}, status


def check_options(train_on: str, truncation: str, max_length: int | None) -> None:
    if train_on not in TRAIN_ON:
        raise ConfigError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}", field="train_on")
    if truncation not in TRUNCATION:
        raise ConfigError(f"truncation must be one of {TRUNCATION}, got {truncation!r}", field="truncation")
    if max_length is not None and max_length < 2:
        raise ConfigError(f"max_length must be at least 2, got {max_length}", field="max_length")


def _segments_for(conv: Conversation, template: ChatTemplate) -> list[Segment]:
    if not any(m.role == "assistant" for m in conv.messages):
        raise DataError("conversation has no assistant message to train on", field="messages",
                        record_id=conv.id, path=f"<conversation {conv.id}>")
    last = max(i for i, m in enumerate(conv.messages) if m.role == "assistant")
    segs = [s for s in template.segments(conv, record_id=conv.id) if s.turn <= last]
    while segs and not segs[-1].trained:  # text after the last end-of-turn carries no loss: cut it
        segs.pop()
    return segs


def tokenize_many(conversations: Iterable[Conversation], tokenizer: Any, template: ChatTemplate, *,
                  max_length: int | None = None, train_on: str = "all", truncation: str = "turn",
                  verify: bool = True, info: TokenizerInfo | None = None,
                  train_on_inputs: bool = False) -> list[tuple[dict | None, str]]:
    """Batch form of ``tokenize_conversation``: (row or None, status) per conversation."""
    check_options(train_on, truncation, max_length)
    template = template.bind(tokenizer)
    info = info or TokenizerInfo.probe(tokenizer)
    convs = list(conversations)
    encs = encode_segments([_segments_for(c, template) for c in convs], tokenizer, info, template.spec.bos)
    results = []
    expected = []
    for conv, enc in zip(convs, encs):
        row, status = finish_example(enc, conv.id, max_length=max_length, train_on=train_on, truncation=truncation,
                                     train_on_inputs=train_on_inputs)
        if row is not None:
            row["language"] = conv.language
            row["source"] = conv.source
            # the texts the labelled spans must decode to: kept assistant contents + end of turn
            expected.append((row, row.pop("_expected")))
        results.append((row, status))
    if verify:
        verify_labels(expected, tokenizer, info)
    return results


def tokenize_conversation(conversation: Conversation, tokenizer: Any, template: ChatTemplate, *,
                          max_length: int | None = None, train_on: str = "all", truncation: str = "turn",
                          verify: bool = True, train_on_inputs: bool = False) -> dict | None:
    """``input_ids``/``labels`` for one conversation; None when truncation drops it.

    Labels equal the input ids on assistant tokens (content and end-of-turn text)
    and -100 elsewhere; they are not shifted (the model or loss shifts them).
    """
    if isinstance(conversation, dict):
        conversation = Conversation.from_dict(conversation)
    return tokenize_many([conversation], tokenizer, template, max_length=max_length, train_on=train_on,
                         truncation=truncation, verify=verify, train_on_inputs=train_on_inputs)[0][0]
