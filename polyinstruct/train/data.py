"""Training data: conversations in, tokenized examples out, plus their content hashes.

Tokenization and label masking belong to ``polyinstruct.templates``: training
tokenizes through ``templates.tokenize_dataset`` (the same rule, Arrow cache and
``num_proc`` as ``polyinstruct template tokenize``); this module only loads the
configured datasets, splits off a validation set and records what it used (for
``manifest.json``).
"""

from __future__ import annotations

import logging
import os
from typing import Iterable

from polyinstruct.data.records import Conversation
from polyinstruct.errors import ConfigError, DataError
from polyinstruct.train.batching import loss_tokens
from polyinstruct.train.config import TrainConfig
from polyinstruct.train.sources import (  # noqa: F401
    content_hash, iter_conversations, split_validation, tokenized_cache_dir)

log = logging.getLogger(__name__)


def load_template(cfg: TrainConfig, tokenizer):
    from polyinstruct.templates import load_template as _load

    return _load(cfg.template, tokenizer)


def tokenize(convs: Iterable[Conversation], tokenizer, template, cfg: TrainConfig, *,
             cache_dir: str | os.PathLike | None = None, num_proc: int = 1) -> list[dict]:
    """Tokenize with ``templates.tokenize_dataset`` (the one tokenization path: its masking rule,
    Arrow cache and ``num_proc``); drops examples with no loss-bearing token.

    Each conversation is tokenized under its position as id, so the rows map back to their
    conversation exactly (ids in a mixture need not be unique): the row's ``language`` is the
    final assistant turn's (the language the loss is on) and ``id``/``source`` are the record's.
    """
    from polyinstruct.templates.dataset import tokenize_dataset

    convs = list(convs)
    if not convs:
        return []
    keyed = []
    for k, c in enumerate(convs):
        d = c.to_dict()
        d["id"] = str(k)
        keyed.append(d)
    ds, report = tokenize_dataset(keyed, tokenizer, template, max_length=cfg.max_length, train_on=cfg.train_on,
                                  truncation=cfg.truncation, train_on_inputs=cfg.train_on_inputs,
                                  cache_dir=cache_dir, num_proc=num_proc)
    cols = ds.data  # Arrow columns: far faster than iterating rows
    ids = cols.column("input_ids").to_pylist()
    labels = cols.column("labels").to_pylist()
    keys = cols.column("id").to_pylist()
    out, no_loss = [], 0
    for row_ids, row_labels, key in zip(ids, labels, keys):
        n_loss = loss_tokens(row_labels)
        if n_loss == 0:
            no_loss += 1
            continue
        c = convs[int(key)]
        out.append({"input_ids": row_ids, "labels": row_labels, "length": len(row_ids), "num_loss_tokens": n_loss,
                    "language": c.response_language or c.language, "source": c.source, "id": c.id})
    dropped = len(convs) - len(out)
    if dropped:
        log.info("dropped %d of %d conversations (%d too long for max_length, %d with nothing to train on)",
                 dropped, len(convs), report.dropped_too_long + report.dropped_no_complete_turn, no_loss)
    return out


def load_examples(cfg: TrainConfig, tokenizer, template) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, validation, manifest rows). Validation comes from a file or a seeded split.
    Preference objectives read preference records (``train.preference.data``)."""
    if cfg.objective != "sft":
        from polyinstruct.train.preference.data import load_preference_examples

        return load_preference_examples(cfg, tokenizer, template)
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
        train_convs, val_convs = split_validation(train_convs, cfg.validation_split, cfg.seed)
    cache = tokenized_cache_dir() if cfg.tokenize_cache else None
    nproc = cfg.tokenize_num_proc
    try:
        train = tokenize(train_convs, tokenizer, template, cfg, cache_dir=cache, num_proc=nproc)
    except DataError as e:  # every conversation dropped by truncation
        raise ConfigError(f"no trainable examples after tokenization: {e.reason}",
                          field="max_length") from None
    if not train:
        raise ConfigError("no trainable examples after tokenization (check the data and max_length)", field="data")
    val = tokenize(val_convs, tokenizer, template, cfg, cache_dir=cache, num_proc=nproc) if val_convs else []
    return train, val, manifest
