"""Training data: conversations in, tokenized examples out, plus their content hashes.

Tokenization and label masking belong to ``polyinstruct.templates``; this module
only loads the configured datasets, calls the template tokenizer, splits off a
validation set and records what it used (for ``manifest.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Iterable, Iterator

from polyinstruct.data.records import Conversation
from polyinstruct.errors import ConfigError
from polyinstruct.train.batching import loss_tokens
from polyinstruct.train.config import TrainConfig

log = logging.getLogger(__name__)


def iter_conversations(spec: str, tokenizer=None) -> Iterator[Conversation]:
    """Conversations from a catalogue name or a file in any format ``polyinstruct.data`` reads.

    ``tokenizer`` is the training tokenizer: catalogue mixtures count their
    ``chunk_tokens`` (Tulu's 2,048-token ShareGPT chunks) in it.
    """
    from polyinstruct.data import load_dataset

    yield from load_dataset(spec, tokenizer=tokenizer)


def content_hash(spec: str, tokenizer=None) -> str:
    """sha256 of a dataset file, or of its records when it is a catalogue name."""
    h = hashlib.sha256()
    p = Path(spec)
    if p.is_file():
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for c in iter_conversations(spec, tokenizer):
            h.update(json.dumps(c.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def load_template(cfg: TrainConfig, tokenizer):
    from polyinstruct.templates import load_template as _load

    return _load(cfg.template, tokenizer)


def tokenize(convs: Iterable[Conversation], tokenizer, template, cfg: TrainConfig) -> list[dict]:
    """Tokenize with the template's masking rule; drops examples with no loss-bearing token."""
    from polyinstruct.templates.tokenize import tokenize_many

    convs = list(convs)
    out, dropped = [], 0
    for s in range(0, len(convs), 512):
        chunk = convs[s:s + 512]
        rows = tokenize_many(chunk, tokenizer, template, max_length=cfg.max_length, train_on=cfg.train_on,
                             truncation=cfg.truncation, train_on_inputs=cfg.train_on_inputs)
        for c, (ex, _status) in zip(chunk, rows):
            if ex is None:
                dropped += 1
                continue
            ids, labels = list(ex["input_ids"]), list(ex["labels"])
            n_loss = loss_tokens(labels)
            if n_loss == 0:
                dropped += 1
                continue
            out.append({"input_ids": ids, "labels": labels, "length": len(ids), "num_loss_tokens": n_loss,
                        "language": c.response_language or ex.get("language"), "source": c.source,
                        "id": c.id})
    if dropped:
        log.info("dropped %d of %d conversations (too long for max_length, or nothing to train on)",
                 dropped, len(convs))
    return out


def load_examples(cfg: TrainConfig, tokenizer, template) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, validation, manifest rows). Validation comes from a file or a seeded split."""
    manifest: list[dict] = []

    def read(which: str) -> list[Conversation]:
        convs: list[Conversation] = []
        for name, spec in cfg.named_data(which):
            got = list(iter_conversations(spec, tokenizer))
            for c in got:
                c.source = c.source or name
            manifest.append({"split": "train" if which == "data" else "validation", "name": name,
                             "spec": spec, "sha256": content_hash(spec, tokenizer), "conversations": len(got)})
            convs.extend(got)
        return convs

    train_convs = read("data")
    if cfg.max_examples:
        train_convs = train_convs[:cfg.max_examples]
    val_convs = read("validation_data") if cfg.validation_data else []
    if cfg.validation_split:
        order = list(range(len(train_convs)))
        random.Random(cfg.seed).shuffle(order)
        n_val = max(1, int(round(len(train_convs) * cfg.validation_split)))
        held = set(order[:n_val])
        val_convs = [c for i, c in enumerate(train_convs) if i in held]
        train_convs = [c for i, c in enumerate(train_convs) if i not in held]
    train = tokenize(train_convs, tokenizer, template, cfg)
    if not train:
        raise ConfigError("no trainable examples after tokenization (check the data and max_length)", field="data")
    val = tokenize(val_convs, tokenizer, template, cfg) if val_convs else []
    return train, val, manifest
