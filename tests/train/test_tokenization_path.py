"""Training tokenizes through templates.tokenize_dataset (one path, its Arrow cache) and loads the
tokenizer and template once."""

from __future__ import annotations

from polyinstruct.data.records import Conversation
from polyinstruct.templates import load_template
from polyinstruct.templates.tokenize import tokenize_conversation
from polyinstruct.train.config import TrainConfig


def _convs():
    from tests.train.conftest import QA

    out = []
    for i, (lang, q, a) in enumerate(QA):
        out.append(Conversation.from_dict({"id": "same-id", "language": lang, "source": f"s{i % 2}", "messages": [
            {"role": "user", "content": q}, {"role": "assistant", "content": a}]}))
    return out


def test_training_examples_are_the_template_tokenizers_rows_and_are_cached(tiny_tokenizer, tmp_path):
    from polyinstruct.train.data import tokenize

    cfg = TrainConfig.model_validate({"model": "tiny", "data": ["x.jsonl"], "output_dir": str(tmp_path / "r"),
                                      "max_length": 64})
    template = load_template("tulu", tiny_tokenizer)
    convs = _convs()
    first = tokenize(convs, tiny_tokenizer, template, cfg, cache_dir=tmp_path / "cache")
    entries = [p for p in (tmp_path / "cache").iterdir() if (p / "report.json").is_file()]
    assert len(entries) == 1  # an Arrow dataset under its content hash
    again = tokenize(convs, tiny_tokenizer, template, cfg, cache_dir=tmp_path / "cache")
    assert again == first  # served from the cache, identical
    assert len(first) == len(convs)  # ids repeat across the mixture, yet every row maps back to its record
    for c, row in zip(convs, first):
        ref = tokenize_conversation(c, tiny_tokenizer, template, max_length=64)
        assert row["input_ids"] == ref["input_ids"] and row["labels"] == ref["labels"]
        assert (row["id"], row["source"], row["language"]) == (c.id, c.source, c.response_language)


def test_train_loads_the_tokenizer_once(base_config, monkeypatch):
    import polyinstruct.train.run as run_mod

    calls = []
    real = run_mod.load_tokenizer

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(run_mod, "load_tokenizer", counting)
    run_mod.train(base_config(method="lora", max_steps=1))
    assert len(calls) == 1
