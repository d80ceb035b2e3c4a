"""Writing systems: the one table of Unicode ranges per script, and the one word/character counter.

Every place that needs to know "is this Chinese/Japanese/Korean", "which font does this text
need" or "how many words is this" asks here, so the answers agree.

``SCRIPTS`` maps an ISO 15924 code to its Unicode blocks. ``Jpan`` is Han plus kana (Japanese
mixes them), ``Hans``/``Hant`` are Han. ``WITHOUT_SPACES`` lists the scripts written without
spaces between words (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar); Korean (Hangul)
*does* put spaces between words.

What :func:`count_words` counts (budgets, ``data stats``, chunking, length filters and tokenizer
fertility all count through it, via ``polyinstruct.data.tokens``):

- in scripts written with spaces (Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Bengali,
  Tamil, Telugu, Hangul, ...): whitespace-separated runs; ``"안녕하세요 세계"`` is 2 words;
- in scripts written without spaces: every character is one word, since there is no space to
  split on and a word segmenter per language would make counts depend on its version; ``"你好世界"``
  is 4, ``"こんにちは"`` 5, and Thai ``"สวัสดีชาวโลก"`` 12 (combining vowel and tone marks are
  characters too). In a run mixing both (``"GPU的"``) the spaced part counts as words: 2;
- punctuation attached to a word is part of the word; standalone punctuation is a word.

:func:`count_chars` counts every character except whitespace.
"""

from __future__ import annotations

import re
from functools import lru_cache

# ISO 15924 code -> Unicode ranges (inclusive).
SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "Han": ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF), (0x2F800, 0x2FA1F)),
    "Hira": ((0x3040, 0x309F),),
    "Kana": ((0x30A0, 0x30FF),),
    "Hang": ((0xAC00, 0xD7AF),),
    "Thai": ((0x0E00, 0x0E7F),),
    "Laoo": ((0x0E80, 0x0EFF),),
    "Khmr": ((0x1780, 0x17FF),),
    "Mymr": ((0x1000, 0x109F),),
    "Latn": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF)),
    "Cyrl": ((0x0400, 0x04FF),),
    "Grek": ((0x0370, 0x03FF),),
    "Armn": ((0x0530, 0x058F),),
    "Hebr": ((0x0590, 0x05FF),),
    "Arab": ((0x0600, 0x06FF), (0x0750, 0x077F)),
    "Deva": ((0x0900, 0x097F),),
    "Beng": ((0x0980, 0x09FF),),
    "Gujr": ((0x0A80, 0x0AFF),),
    "Taml": ((0x0B80, 0x0BFF),),
    "Telu": ((0x0C00, 0x0C7F),),
    "Mlym": ((0x0D00, 0x0D7F),),
    "Geor": ((0x10A0, 0x10FF),),
}
# Scripts that are unions of others (the codes FLORES-200 uses).
COMPOSITE: dict[str, tuple[str, ...]] = {"Hans": ("Han",), "Hant": ("Han",), "Jpan": ("Han", "Hira", "Kana")}

# Written without spaces between words: each character counts as a word (module doc).
WITHOUT_SPACES = ("Han", "Hira", "Kana", "Thai", "Laoo", "Khmr", "Mymr")
# Chinese, Japanese and Korean characters: one character carries about a word's meaning, so
# n-gram measures (echo, overlap, unique tokens) and letter counts treat each as a token.
CJK = ("Han", "Hira", "Kana", "Hang")


def _expand(scripts: tuple[str, ...]) -> list[tuple[int, int]]:
    out = []
    for s in scripts:
        if s in COMPOSITE:
            out += _expand(COMPOSITE[s])
        elif s in SCRIPTS:
            out += SCRIPTS[s]
        else:
            raise KeyError(f"unknown script {s!r}; known: {', '.join(sorted(SCRIPTS) + sorted(COMPOSITE))}")
    return out


@lru_cache(maxsize=None)
def char_class(*scripts: str) -> str:
    """The body of a regex character class matching the scripts' characters (``[...]`` without brackets)."""
    return "".join(f"{_esc(lo)}-{_esc(hi)}" for lo, hi in _expand(scripts))


def _esc(cp: int) -> str:
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


@lru_cache(maxsize=None)
def script_regex(*scripts: str) -> re.Pattern[str]:
    """A compiled pattern matching one character of any of ``scripts``."""
    return re.compile(f"[{char_class(*scripts)}]")


def has_script(text: str, *scripts: str) -> bool:
    """Whether ``text`` has at least one character of ``scripts``."""
    return script_regex(*scripts).search(text) is not None


_NO_SPACE = script_regex(*WITHOUT_SPACES)


def count_words(text: str) -> int:
    """Words as the module doc defines them: whitespace runs, each character of a script written
    without spaces counting as one."""
    n = 0
    for chunk in text.split():
        spaced = _NO_SPACE.sub(" ", chunk)
        n += len(_NO_SPACE.findall(chunk)) + len(spaced.split())
    return n


def count_chars(text: str) -> int:
    """Characters other than whitespace."""
    return sum(1 for ch in text if not ch.isspace())
