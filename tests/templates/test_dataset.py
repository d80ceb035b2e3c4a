"""Cached tokenized datasets: content-hash keys, reuse, truncation report, parallel map."""

from __future__ import annotations

import pytest

from polyinstruct.data.records import Conversation, Message
from polyinstruct.templates import load_template
from polyinstruct.templates.dataset import COLUMNS, tokenize_dataset
from polyinstruct.templates.tokenize import tokenize_conversation


def make(n):
    return [Conversation(f"c{i}", [Message("user", "Frage " * (i % 7) + "中文"), Message("assistant", "ответ " * (i % 11))],
                         language="de", source="unit") for i in range(n)]


def test_cache_reuse_and_keys(tmp_path, tiny_tokenizer):
    convs = make(40)
    t = load_template("tulu", tiny_tokenizer)
    ds, rep = tokenize_dataset(convs, tiny_tokenizer, t, max_length=64, cache_dir=tmp_path)
    assert ds.column_names == COLUMNS and not rep.cache_hit
    assert rep.total == 40 and rep.kept == len(ds) == 40 - rep.dropped_no_complete_turn
    ds2, rep2 = tokenize_dataset([c.to_dict() for c in convs], tiny_tokenizer, t, max_length=64, cache_dir=tmp_path)
    assert rep2.cache_hit and rep2.cache_key == rep.cache_key and ds2["input_ids"] == ds["input_ids"]
    # any change of data, template, settings or tokenizer gives a new key
    keys = {rep.cache_key}
    for kwargs in ({"max_length": 65}, {"max_length": 64, "train_on": "last"}):
        keys.add(tokenize_dataset(convs, tiny_tokenizer, t, cache_dir=tmp_path, **kwargs)[1].cache_key)
    keys.add(tokenize_dataset(convs, tiny_tokenizer, load_template("chatml"), max_length=64, cache_dir=tmp_path)[1].cache_key)
    keys.add(tokenize_dataset(convs[:-1], tiny_tokenizer, t, max_length=64, cache_dir=tmp_path)[1].cache_key)
    assert len(keys) == 5
    # rows equal the one-by-one function
    row = tokenize_conversation(convs[3], tiny_tokenizer, t, max_length=64)
    got = ds[[r for r in range(len(ds)) if ds[r]["id"] == "c3"][0]]
    assert {k: got[k] for k in row} == row and got["language"] == "de" and got["source"] == "unit"


def test_truncation_report_and_parallel(tiny_tokenizer):
    convs = make(30) + [Conversation("long", [Message("user", "q"), Message("assistant", "a"),
                                              Message("user", "q2"), Message("assistant", "word " * 200)])]
    t = load_template("chatml", tiny_tokenizer)
    ds1, rep = tokenize_dataset(convs, tiny_tokenizer, t, max_length=48, truncation="turn")
    ds2, rep2 = tokenize_dataset(convs, tiny_tokenizer, t, max_length=48, truncation="turn", num_proc=2,
                                 batch_size=7)
    assert ds1["input_ids"] == ds2["input_ids"] and rep.to_dict() == rep2.to_dict()
    assert rep.truncated >= 1 and "long" in ds1["id"]
    assert all(n > 0 for n in ds1["num_loss_tokens"]) and max(ds1["length"]) <= 48
    assert rep.affected == rep.truncated + rep.dropped_no_complete_turn
    _, drop = tokenize_dataset(convs, tiny_tokenizer, t, max_length=48, truncation="drop")
    assert drop.dropped_too_long == rep.truncated + rep.dropped_no_complete_turn and drop.truncated == 0
