"""Where training data comes from and what it hashes to: datasets by name or file, their content
hashes (fingerprints, manifests) and the tokenized-dataset cache folder. Shared by SFT
(``train.data``) and preference data (``train.preference.data``)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Iterator, TypeVar

from polyinstruct.data.records import Conversation
from polyinstruct.fileio import sha256_file


def iter_conversations(spec: str, tokenizer=None) -> Iterator[Conversation]:
    """Conversations from a catalogue name or a file in any format ``polyinstruct.data`` reads.

    ``tokenizer`` is the training tokenizer: catalogue mixtures count their
    ``chunk_tokens`` (Tulu's 2,048-token ShareGPT chunks) in it.
    """
    from polyinstruct.data import load_dataset

    yield from load_dataset(spec, tokenizer=tokenizer)


def content_hash(spec: str, tokenizer=None) -> str:
    """sha256 of a dataset file, or of its records when it is a catalogue name."""
    p = Path(spec)
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()
    for c in iter_conversations(spec, tokenizer):
        h.update(json.dumps(c.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def tokenized_cache_dir() -> Path:
    """Where training keeps tokenized datasets: ``<polyinstruct cache>/tokenized`` (content-addressed,
    so any change of data, template, tokenizer or setting makes a new entry)."""
    from polyinstruct.config import cache_dir

    return cache_dir("tokenized")


T = TypeVar("T")


def split_validation(items: list[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """(train, validation): a seeded random ``fraction`` of ``items`` (at least one) held out, both
    in their original order; the one split rule of SFT and preference data."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[:max(1, int(round(len(items) * fraction)))])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]

