"""Echo detection: is an answer (mostly) the prompt again? (docs/experiments.md)

Language ID alone calls an echo "in the prompt's language"; the experiment scoring and ``data prefs``
count an answer as in language only when it is not an echo.
"""

from __future__ import annotations

import re

from polyinstruct.lang.scripts import CJK, char_class

_TOKEN = re.compile(f"[{char_class(*CJK)}]|[^\\W_]+", re.UNICODE)

# An answer more than this much made of the prompt's n-grams is an echo (docs/experiments.md).
ECHO_COVERAGE = 0.5


def _tokens(text: str) -> list[str]:
    """Words, with each CJK character a token of its own (Chinese/Japanese have no spaces)."""
    return _TOKEN.findall(text.casefold())


def echo_coverage(response: str, prompt: str, n: int = 3) -> float:
    """Share of the answer's tokens that lie inside an n-gram the prompt also contains.

    Tokens are words, or single characters for CJK text (so a short Chinese question is
    matched character by character); ``n`` shrinks to the prompt's length for very short
    prompts. 1.0 = the answer is the prompt (possibly repeated); 0.0 = nothing shared.
    """
    r, p = _tokens(response), _tokens(prompt)
    if not r or not p:
        return 0.0
    k = max(1, min(n, len(p)))
    grams = {tuple(p[i:i + k]) for i in range(len(p) - k + 1)}
    covered = [False] * len(r)
    for i in range(len(r) - k + 1):
        if tuple(r[i:i + k]) in grams:
            covered[i:i + k] = [True] * k
    return sum(covered) / len(r)


def echoes_prompt(response: str, prompt: str, threshold: float = ECHO_COVERAGE) -> bool:
    """True when the answer is mostly the question again: the whole question repeated (a
    base model's typical failure, often looping through chat markers) or a partial echo
    (more than ``threshold`` of the answer's tokens are runs of the question's n-grams).

    Language ID alone calls such an answer "in the prompt's language"; ``score_predictions``
    therefore counts an answer as in language only when it is not an echo.
    """
    return echo_coverage(response, prompt) > threshold
