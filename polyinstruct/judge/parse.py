"""Verdict parsing: read a score or preference from a judge reply, or return None.

Never guesses: a reply with no verdict, or with conflicting verdicts, or with a
score outside the scale (or between its points, on a scale of whole points), parses to
None so the runner can re-ask and finally record it as unparsed.
"""

from __future__ import annotations

import re

_DOUBLE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*(?:/\s*\d+)?\s*\]\]")
# MT-Bench's own backup pattern, used only when no [[x]] is present.
_SINGLE = re.compile(r"(?<!\[)\[\s*(\d+(?:\.\d+)?)\s*\](?!\])")
_LABELLED = re.compile(r"(?:rating|score|note|评分|оценка)\s*[:：=]\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*\d+)?",
                       re.IGNORECASE)
_PAIR = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)


def parse_score(reply: str, scale: tuple[float, float], integer: bool = False) -> float | None:
    """The single score in ``reply`` within ``scale`` (inclusive), else None.

    ``integer``: the scale has whole points only (seed 1's 1-3): ``[[2.5]]`` is no verdict.
    """
    lo, hi = scale
    for pattern in (_DOUBLE, _SINGLE, _LABELLED):
        values = {float(v) for v in pattern.findall(reply or "")}
        if not values:
            continue
        if len(values) > 1:
            return None  # conflicting verdicts: do not pick one
        v = values.pop()
        if integer and not v.is_integer():
            return None
        return v if lo <= v <= hi else None
    return None


def parse_preference(reply: str) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from ``[[A]]`` / ``[[B]]`` / ``[[C]]``; None if absent or conflicting."""
    found = {m.upper() for m in _PAIR.findall(reply or "")}
    found = {"tie" if v in ("C", "TIE") else v for v in found}
    return found.pop() if len(found) == 1 else None
