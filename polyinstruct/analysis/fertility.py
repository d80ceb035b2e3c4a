"""Tokenizer fertility per language: tokens per word and per character (docs/analysis.md).

On parallel text the content is the same in every language, so fertility says how
many more tokens one language pays for the same meaning, which a token-matched
budget inherits. Words are whitespace-separated runs, except in scripts written
without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) where every
character counts as a word; characters exclude whitespace.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from polyinstruct.lang.scripts import count_chars, count_words  # noqa: F401 - the one counter, re-exported


class FertilityAccumulator:
    """Streams texts per language; ``rows()`` gives tokens/word and tokens/char."""

    def __init__(self, count_tokens):
        self.count = count_tokens
        self.totals: dict[str, list[int]] = {}

    def add(self, lang: str, text: str) -> None:
        t = self.totals.setdefault(lang, [0, 0, 0, 0])
        t[0] += 1
        t[1] += self.count(text)
        t[2] += count_words(text)
        t[3] += count_chars(text)

    def rows(self) -> dict[str, dict[str, Any]]:
        out = {}
        for lang, (n, tokens, words, chars) in self.totals.items():
            out[lang] = {"texts": n, "tokens": tokens, "words": words, "chars": chars,
                         "tokens_per_word": round(tokens / words, 3) if words else None,
                         "tokens_per_char": round(tokens / chars, 3) if chars else None}
        return out


def fertility(tokenizer: Any, texts: Mapping[str, Iterable[str]]) -> dict[str, dict[str, Any]]:
    """``{lang: {texts, tokens, words, chars, tokens_per_word, tokens_per_char}}`` for any tokenizer
    (a path, name, Hugging Face tokenizer or ``text -> int`` function; see data.tokens.make_counter)."""
    from polyinstruct.data.tokens import make_counter

    acc = FertilityAccumulator(make_counter(tokenizer))
    for lang, items in texts.items():
        for text in items:
            acc.add(lang, text)
    return acc.rows()


def parallel_fertility(tokenizer: Any, languages: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Fertility on the embedded parallel sentences (English once, then each language)."""
    from polyinstruct.analysis.alignment import load_pairs

    pairs = load_pairs(languages)
    english = sorted({en for rows in pairs.values() for en, _ in rows})
    return fertility(tokenizer, {"en": english, **{lang: [x for _, x in rows] for lang, rows in pairs.items()}})


def fertility_table(rows: Mapping[str, Mapping[str, Any]], name: str = "") -> str:
    lines = ([f"Tokenizer fertility ({name})", ""] if name else []) + [
        "| language | texts | tokens | tokens/word | tokens/char |", "|---|---|---|---|---|"]
    for lang, r in rows.items():
        lines.append(f"| {lang} | {r['texts']} | {r['tokens']} | {r['tokens_per_word']} | {r['tokens_per_char']} |")
    return "\n".join(lines) + "\n"
