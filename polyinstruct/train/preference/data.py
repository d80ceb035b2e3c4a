"""Preference examples: records in, tokenized chosen/rejected (or unpaired) sequences out.

Each side is tokenized as the SFT conversation prefix + that answer through the one tokenization path
(``templates.tokenize_dataset``, via ``train.data.tokenize``), with ``train_on="last"``: only the final
assistant turn (the answer being compared) carries labels, exactly as SFT masks assistant turns. A
pair whose either side is dropped (too long for ``max_length``) is dropped whole and counted.

A paired example is ``{"chosen": {input_ids, labels}, "rejected": {...}, "length", "num_loss_tokens",
"language", "id"}``; an unpaired one (KTO) is ``{"completion": {...}, "desirable": bool, "prompt_len",
...}``. ``length``/``num_loss_tokens`` add both sides, so the token budget counts every token the model
reads (as SFT's does).
"""

from __future__ import annotations

import logging
from pathlib import Path

from polyinstruct.data.records import Preference
from polyinstruct.errors import ConfigError, DataError
from polyinstruct.train.batching import loss_tokens
from polyinstruct.train.config import TrainConfig

log = logging.getLogger(__name__)


def iter_preferences(spec: str):
    """Preference records from a file, folder or glob (``data.preference`` readers, format detected)."""
    from polyinstruct.data.preference import read_preferences

    if not Path(spec).exists() and not any(ch in spec for ch in "*?["):
        raise ConfigError(f"{spec!r}: preference data must be a file, folder or glob of preference records "
                          "(docs/preference.md)", field="data")
    yield from read_preferences(spec)


def _tokenize_sides(records: list[Preference], tokenizer, template, cfg: TrainConfig, cache_dir, num_proc):
    from polyinstruct.templates.dataset import tokenize_dataset

    convs, keys = [], []
    for k, p in enumerate(records):
        for side in ("chosen", "rejected"):
            if getattr(p, side) is not None:
                d = p.conversation(side).to_dict()
                d["id"] = f"{k}:{side}"
                convs.append(d)
                keys.append((k, side))
    if not convs:
        return {}
    ds, _ = tokenize_dataset(convs, tokenizer, template, max_length=cfg.max_length, train_on="last",
                             truncation="drop", train_on_inputs=False, cache_dir=cache_dir, num_proc=num_proc)
    cols = ds.data
    out: dict[tuple[int, str], dict] = {}
    for ids, labels, key in zip(cols.column("input_ids").to_pylist(), cols.column("labels").to_pylist(),
                                cols.column("id").to_pylist()):
        k, side = key.split(":")
        if loss_tokens(labels):
            out[(int(k), side)] = {"input_ids": ids, "labels": labels}
    return out


def tokenize_preferences(records: list[Preference], tokenizer, template, cfg: TrainConfig, *,
                         cache_dir=None, num_proc: int = 1) -> list[dict]:
    """Tokenized examples (module doc). Paired records give paired examples for dpo/orpo/simpo; for
    kto every side becomes its own unpaired example (a pair gives one desirable, one undesirable)."""
    sides = _tokenize_sides(records, tokenizer, template, cfg, cache_dir, num_proc)
    out: list[dict] = []
    dropped = 0
    for k, p in enumerate(records):
        lang = p.language
        if cfg.objective == "kto":
            for side in ("chosen", "rejected"):
                if getattr(p, side) is None:
                    continue
                s = sides.get((k, side))
                if s is None:
                    dropped += 1
                    continue
                start = next(i for i, x in enumerate(s["labels"]) if x != -100)
                out.append({"completion": s, "desirable": side == "chosen", "prompt_len": start,
                            "length": len(s["input_ids"]), "num_loss_tokens": loss_tokens(s["labels"]),
                            "language": lang, "id": p.id})
            continue
        if not p.paired:
            raise DataError(f"objective {cfg.objective} needs chosen and rejected answers; record {p.id!r} has only "
                            f"{'chosen' if p.chosen else 'rejected'} (unpaired records train with objective kto)",
                            field="chosen" if p.chosen is None else "rejected", record_id=p.id)
        c, r = sides.get((k, "chosen")), sides.get((k, "rejected"))
        if c is None or r is None:
            dropped += 1
            continue
        out.append({"chosen": c, "rejected": r, "length": len(c["input_ids"]) + len(r["input_ids"]),
                    "num_loss_tokens": loss_tokens(c["labels"]) + loss_tokens(r["labels"]),
                    "chosen_loss_tokens": loss_tokens(c["labels"]), "language": lang, "id": p.id,
                    "source": p.source})
    if dropped:
        log.info("dropped %d of %d preference records (longer than max_length=%d or nothing to train on)",
                 dropped, len(records), cfg.max_length)
    return out


def load_preference_examples(cfg: TrainConfig, tokenizer, template) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, validation, manifest rows), as ``train.data.load_examples`` for SFT."""
    from polyinstruct.train.sources import content_hash, split_validation, tokenized_cache_dir

    manifest: list[dict] = []

    def read(which: str) -> list[Preference]:
        recs: list[Preference] = []
        for name, spec in cfg.named_data(which):
            got = list(iter_preferences(spec))
            for p in got:
                p.source = p.source or name
            manifest.append({"split": "train" if which == "data" else "validation", "name": name, "spec": spec,
                             "sha256": content_hash(spec), "conversations": len(got), "kind": "preference"})
            recs.extend(got)
        return recs

    train = read("data")
    if cfg.max_examples:
        train = train[:cfg.max_examples]
    val = read("validation_data") if cfg.validation_data else []
    if cfg.validation_split:
        train, val = split_validation(train, cfg.validation_split, cfg.seed)
    cache = tokenized_cache_dir() if cfg.tokenize_cache else None
    tr = tokenize_preferences(train, tokenizer, template, cfg, cache_dir=cache, num_proc=cfg.tokenize_num_proc)
    if not tr:
        raise ConfigError("no trainable preference examples after tokenization (check the data and max_length)",
                          field="data")
    va = tokenize_preferences(val, tokenizer, template, cfg, cache_dir=cache, num_proc=cfg.tokenize_num_proc) \
        if val else []
    return tr, va, manifest
