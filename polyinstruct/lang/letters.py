"""Counting letters the way a reader does: a letter together with its combining marks.

Python's ``[^\\W\\d_]`` skips combining marks (Unicode categories Mn, Mc, Me), so the vowel signs
of Bengali, Hindi, Telugu or Thai do not count and a three-word Bengali answer
("না, মাকড়সা পোকা নয়।") counts 8 letters. Here every code point of a letter (L*) or mark (M*)
category counts, so an abugida's vowel signs weigh as the vowel letters of an alphabet do.
"""

from __future__ import annotations

import unicodedata


def letters_and_marks(text: str) -> int:
    """Code points of ``text`` in the letter (L*) and mark (M*) categories."""
    return sum(1 for ch in text or "" if unicodedata.category(ch)[0] in "LM")


def has_letters(text: str) -> bool:
    """True when ``text`` holds at least one letter (code, numbers and emoji alone do not)."""
    return any(unicodedata.category(ch)[0] == "L" for ch in text or "")
