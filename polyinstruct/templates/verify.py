"""Span verification: the labelled tokens must decode to exactly the assistant texts.

This is read back from the finished ``labels`` (not from how they were built),
so it catches any masking bug: training on the prompt, on nothing, on a
shifted span, or on a boundary token merged with the prompt. A mismatch is a
``SpanMismatchError`` naming the example and showing both strings.

Equality is exact. The one allowance: a tokenizer with a normalizer (NFKC,
lower-casing, ...) cannot reproduce its input, so for those both sides are
compared after that tokenizer's own normalizer.
"""

from __future__ import annotations

from polyinstruct.templates.labels import IGNORE_INDEX

from typing import Any

from polyinstruct.errors import SpanMismatchError



def labelled_spans(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    """Contiguous runs of labelled positions, as token id lists (checks labels == ids there)."""
    spans: list[list[int]] = []
    start = -1
    for k, lab in enumerate(labels):
        if lab == IGNORE_INDEX:
            if start >= 0:
                spans.append(input_ids[start:k])
                start = -1
            continue
        if lab != input_ids[k]:
            raise SpanMismatchError(f"label {lab} at position {k} differs from input id {input_ids[k]}: "
                                    "labels must be the unshifted ids")
        if start < 0:
            start = k
    if start >= 0:
        spans.append(input_ids[start:])
    return spans


def _normalizer(tok: Any):
    backend = getattr(tok, "backend_tokenizer", None)
    return getattr(backend, "normalizer", None) if backend is not None else None


def verify_labels(items: list[tuple[dict, list[str]]], tokenizer: Any, info: Any) -> None:
    """Check each (row, expected_texts): decoded labelled spans == expected texts, in order."""
    if not items:
        return
    to_decode: list[list[int]] = []
    owners: list[int] = []
    prefix = [info.sentinel_id] if info.needs_sentinel else []
    for n, (row, _) in enumerate(items):
        if len(row["input_ids"]) != len(row["labels"]):
            raise SpanMismatchError(f"example {row['id']}: input_ids and labels differ in length")
        for span in labelled_spans(row["input_ids"], row["labels"]):
            to_decode.append(prefix + span)
            owners.append(n)
    decoded = info.decode(tokenizer, to_decode)
    if prefix:
        decoded = [d[len(info.sentinel_text):] for d in decoded]
    got: list[list[str]] = [[] for _ in items]
    for n, text in zip(owners, decoded):
        got[n].append(text)
    norm = _normalizer(tokenizer)
    for (row, expected), spans in zip(items, got):
        if spans == expected:
            continue
        first = next((k for k, lab in enumerate(row["labels"]) if lab != IGNORE_INDEX), None)
        if prefix and first is not None and (first == 0 or (first == 1 and row["input_ids"][0] == info.bos_id)):
            # train_on_inputs: a span that starts the sequence was encoded without the sentinel, so it
            # decodes without one (its SentencePiece dummy prefix is the sequence start, not a space)
            spans = [info.decode(tokenizer, [s])[0] for s in labelled_spans(row["input_ids"], row["labels"])[:1]] + \
                spans[1:]
            if spans == expected or "".join(spans) == "".join(expected):
                continue
        # adjacent assistant turns with no scaffolding between them form one span
        joined_got, joined_exp = "".join(spans), "".join(expected)
        if joined_got == joined_exp:
            continue
        if norm is not None and norm.normalize_str(joined_got) == norm.normalize_str(joined_exp):
            continue
        raise SpanMismatchError(
            f"example {row['id']}: labelled tokens do not decode to the assistant text(s).\n"
            f"  expected: {expected!r}\n  decoded:  {spans!r}\n"
            "The template or tokenizer splits the answer differently from the rendered text; "
            "this example would train on the wrong tokens.")
