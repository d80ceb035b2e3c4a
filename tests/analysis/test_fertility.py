"""Tokenizer fertility: word and character counting across scripts, per-language ratios for
any tokenizer, and the columns `data stats` shows when given a tokenizer."""

from __future__ import annotations

import pytest

from polyinstruct.analysis.fertility import count_chars, count_words, fertility, parallel_fertility


@pytest.mark.parametrize("text,words,chars", [
    ("The cat sat.", 3, 10),
    ("  Привет,  мир  ", 2, 10),
    ("我爱北京", 4, 4),
    ("我 爱 Python 3", 4, 9),
    ("", 0, 0),
])
def test_words_and_chars(text, words, chars):
    assert count_words(text) == words and count_chars(text) == chars


def test_ratios_for_a_function_tokenizer():
    rows = fertility(lambda t: len(t.encode("utf-8")), {"en": ["ab cd", "e"], "ru": ["ж"]})
    assert rows["en"] == {"texts": 2, "tokens": 6, "words": 3, "chars": 5, "tokens_per_word": 2.0,
                          "tokens_per_char": 1.2}
    assert rows["ru"]["tokens_per_char"] == 2.0  # two UTF-8 bytes per Cyrillic letter


def test_parallel_fertility_covers_english_and_every_pair(tiny_tokenizer):
    rows = parallel_fertility(tiny_tokenizer, ["fr", "zh"])
    assert set(rows) == {"en", "fr", "zh"} and rows["fr"]["texts"] == 200
    assert all(r["tokens_per_word"] > 0 and r["tokens_per_char"] > 0 for r in rows.values())


def test_data_stats_shows_fertility_only_with_a_tokenizer(tiny_model_dir, capsys):
    from polyinstruct.cli import main

    assert main(["data", "stats", "polyinstruct-instruct-fr", "--tokenizer", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "tokens/word" in out and "tokens/char" in out
    assert main(["data", "stats", "polyinstruct-instruct-fr"]) == 0
    assert "tokens/word" not in capsys.readouterr().out
