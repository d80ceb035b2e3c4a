"""Tokenized datasets, built with ``datasets.map`` and cached by content hash.

The cache key covers the conversations, the exact (bound) template, the
tokenizer (its full serialized vocabulary/merges/specials) and every setting,
plus a version of the tokenization rule. Same key -> the saved Arrow dataset
is reused across runs; any change -> a new entry. Entries are written to a
temporary folder and renamed, so an interrupted build never poisons the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable

from polyinstruct.data.records import Conversation
from polyinstruct.errors import DataError
from polyinstruct.fileio import read_json, write_json
from polyinstruct.templates.render import ChatTemplate
from polyinstruct.templates.tokenize import TokenizerInfo, check_options, tokenize_many

log = logging.getLogger(__name__)
TOKENIZATION_VERSION = "1"  # bump when the masking/encoding rule changes
COLUMNS = ["input_ids", "labels", "length", "num_loss_tokens", "id", "language", "source"]


@dataclass
class TokenizeReport:
    total: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_too_long: int = 0  # truncation="drop"
    dropped_no_complete_turn: int = 0  # not even one whole assistant turn fits max_length
    tokens: int = 0
    loss_tokens: int = 0
    cache_key: str = ""
    cache_hit: bool = False

    @property
    def affected(self) -> int:
        return self.truncated + self.dropped_too_long + self.dropped_no_complete_turn

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "affected": self.affected}


def tokenizer_fingerprint(tok: Any) -> str:
    """Hash of everything that decides token ids: vocabulary, merges, normalizer, specials."""
    h = hashlib.sha256(type(tok).__name__.encode())
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tok.get_vocab().items()), ensure_ascii=False).encode())
    specials = {k: str(v) for k, v in sorted((getattr(tok, "special_tokens_map", None) or {}).items())}
    h.update(json.dumps(specials, sort_keys=True).encode())
    return h.hexdigest()


def _as_dict(c: Any) -> dict:
    if isinstance(c, Conversation):
        return c.to_dict()
    if isinstance(c, dict):
        return c
    raise TypeError(f"expected Conversation or dict, got {type(c).__name__}")


def _map_batch(batch: dict[str, list], *, tokenizer, template, info, max_length, train_on, truncation,
               verify, train_on_inputs=False) -> dict[str, list]:
    convs = [Conversation.from_dict(json.loads(s)) for s in batch["json"]]
    results = tokenize_many(convs, tokenizer, template, max_length=max_length, train_on=train_on,
                            truncation=truncation, verify=verify, info=info, train_on_inputs=train_on_inputs)
    out: dict[str, list] = {k: [] for k in COLUMNS + ["status"]}
    for conv, (row, status) in zip(convs, results):
        row = row or {"input_ids": [], "labels": [], "length": 0, "num_loss_tokens": 0, "id": conv.id,
                      "language": conv.language, "source": conv.source}
        for k in COLUMNS:
            out[k].append(row[k])
        out["status"].append(status)
    return out


def tokenize_dataset(conversations: Iterable[Conversation | dict], tokenizer: Any, template: ChatTemplate, *,
                     max_length: int | None = None, train_on: str = "all", truncation: str = "turn",
                     verify: bool = True, cache_dir: str | os.PathLike | None = None, num_proc: int = 1,
                     batch_size: int = 1000, progress: bool = False, train_on_inputs: bool = False):
    """Tokenize conversations into a ``datasets.Dataset`` with columns ``COLUMNS``; returns (dataset, report).

    Dropped examples are removed; the report says how many were truncated or
    dropped. With ``cache_dir`` the result is saved under its content hash and
    reused on the next call with the same inputs.
    """
    import datasets
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    if not progress:
        ds_logging.disable_progress_bar()
    try:
        return _tokenize_dataset(conversations, tokenizer, template, max_length=max_length, train_on=train_on,
                                 truncation=truncation, verify=verify, cache_dir=cache_dir, num_proc=num_proc,
                                 batch_size=batch_size, train_on_inputs=train_on_inputs)
    finally:
        if was_enabled and not progress:
            ds_logging.enable_progress_bar()


def _tokenize_dataset(conversations, tokenizer, template, *, max_length, train_on, truncation, verify, cache_dir,
                      num_proc, batch_size, train_on_inputs=False):
    import datasets

    check_options(train_on, truncation, max_length)
    template = template.bind(tokenizer)
    rows = [json.dumps(_as_dict(c), ensure_ascii=False, sort_keys=True) for c in conversations]
    h = hashlib.sha256()
    for r in rows:
        h.update(r.encode())
        h.update(b"\n")
    settings = {"max_length": max_length, "train_on": train_on, "truncation": truncation, "verify": verify,
                "version": TOKENIZATION_VERSION}
    if train_on_inputs:  # only when set, so existing caches keep their keys
        settings["train_on_inputs"] = True
    h.update(template.spec.to_yaml().encode())
    h.update(tokenizer_fingerprint(tokenizer).encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    key = h.hexdigest()[:24]
    target = Path(cache_dir) / key if cache_dir is not None else None
    if target is not None and (target / "report.json").is_file():
        report = TokenizeReport(**{k: v for k, v in read_json(target / "report.json").items() if k != "affected"})
        report.cache_hit = True
        log.info("tokenized dataset cache hit: %s", target)
        return datasets.load_from_disk(str(target / "data")), report

    info = TokenizerInfo.probe(tokenizer)
    fn = partial(_map_batch, tokenizer=tokenizer, template=template, info=info, max_length=max_length,
                 train_on=train_on, truncation=truncation, verify=verify, train_on_inputs=train_on_inputs)
    raw = datasets.Dataset.from_dict({"json": rows})
    mapped = raw.map(fn, batched=True, batch_size=batch_size, num_proc=num_proc if num_proc > 1 else None,
                     remove_columns=["json"], new_fingerprint=key, desc=None)
    table = mapped.data  # read columns through Arrow: iterating a Column goes row by row
    statuses = table.column("status").to_pylist()
    lengths = table.column("length").to_pylist()
    n_loss = table.column("num_loss_tokens").to_pylist()
    report = TokenizeReport(total=len(rows), cache_key=key)
    for s in statuses:
        if s == "truncated":
            report.truncated += 1
        elif s in ("dropped_too_long", "dropped_no_complete_turn"):
            setattr(report, s, getattr(report, s) + 1)
    keep = [i for i, s in enumerate(statuses) if not s.startswith("dropped")]
    ds = mapped.select(keep).remove_columns(["status"]) if len(keep) != len(statuses) else \
        mapped.remove_columns(["status"])
    report.kept = len(ds)
    if report.total and not report.kept:
        raise DataError(f"all {report.total} conversations were dropped by truncation={truncation!r} at "
                        f"max_length={max_length}; raise max_length", field="max_length")
    report.tokens = sum(lengths[i] for i in keep)
    report.loss_tokens = sum(n_loss[i] for i in keep)
    if report.affected:
        log.info("truncation (%s, max_length=%s): %d truncated, %d dropped of %d", truncation, max_length,
                 report.truncated, report.dropped_too_long + report.dropped_no_complete_turn, report.total)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
        try:
            ds.save_to_disk(str(tmp / "data"))
            write_json(tmp / "report.json", report.to_dict())
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (target / "report.json").is_file():
                raise
        ds = datasets.load_from_disk(str(target / "data"))
    return ds, report
