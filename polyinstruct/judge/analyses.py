"""Tulu appendix H: do judges reward answers with more unique tokens?

``mean_unique_tokens`` per model, its Pearson correlation with win rate, and the
"fake judge" that simply prefers the answer with more unique tokens. If the fake
judge's win rates track the real judge's (high R^2), the judge is mostly
counting vocabulary. Tokens default to words for spaced scripts and single
characters for CJK; pass ``tokenize=`` (e.g. a HF tokenizer's ``tokenize``) to
count model tokens as Tulu did.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

from polyinstruct.lang.scripts import CJK, char_class
from polyinstruct.stats import pearson  # noqa: F401  (re-exported: the maths lives in polyinstruct.stats)

_TOKEN = re.compile(f"[{char_class(*CJK)}]|[^\\W_]+", re.UNICODE)

Tokenizer = Callable[[str], Sequence[str]]


def default_tokenize(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text or "")]


def unique_tokens(text: str, tokenize: Tokenizer | None = None) -> int:
    return len(set((tokenize or default_tokenize)(text or "")))


def mean_unique_tokens(predictions: Iterable[dict[str, Any]], tokenize: Tokenizer | None = None) -> dict[str, float]:
    """Mean unique-token count of ``response`` per model."""
    acc: dict[str, list[int]] = defaultdict(list)
    for p in predictions:
        acc[str(p.get("model"))].append(unique_tokens(p.get("response") or "", tokenize))
    return {m: sum(v) / len(v) for m, v in sorted(acc.items())}


def fake_judge(candidate: str, baseline: str, tokenize: Tokenizer | None = None) -> str:
    """'win' / 'loss' / 'tie' for the candidate: more unique tokens wins."""
    a, b = unique_tokens(candidate, tokenize), unique_tokens(baseline, tokenize)
    return "win" if a > b else "loss" if a < b else "tie"


def fake_judge_win_rates(predictions: Iterable[dict[str, Any]], baseline_field: str = "reference",
                         tokenize: Tokenizer | None = None) -> dict[str, float]:
    """Win rate per model against the baseline answers under the fake judge (ties half)."""
    acc: dict[str, list[float]] = defaultdict(list)
    for p in predictions:
        if p.get(baseline_field) is None:
            continue
        v = fake_judge(p.get("response") or "", p[baseline_field], tokenize)
        acc[str(p.get("model"))].append({"win": 1.0, "tie": 0.5, "loss": 0.0}[v])
    return {m: sum(v) / len(v) for m, v in sorted(acc.items())}


def unique_token_analysis(predictions: list[dict[str, Any]], win_rates: dict[str, float] | None = None,
                          baseline_field: str = "reference", tokenize: Tokenizer | None = None) -> dict[str, Any]:
    """Per-model mean unique tokens, fake-judge win rates, and their correlations with real win rates."""
    mut = mean_unique_tokens(predictions, tokenize)
    fake = fake_judge_win_rates(predictions, baseline_field, tokenize)
    out: dict[str, Any] = {"mean_unique_tokens": mut, "fake_judge_win_rate": fake}
    if win_rates:
        models = [m for m in sorted(win_rates) if m in mut and win_rates[m] is not None]
        real = [win_rates[m] for m in models]
        r_unique = pearson([mut[m] for m in models], real)
        models_f = [m for m in models if m in fake]
        r_fake = pearson([fake[m] for m in models_f], [win_rates[m] for m in models_f])
        out.update(models=models, pearson_unique_tokens_vs_win_rate=r_unique,
                   pearson_fake_vs_real_win_rate=r_fake,
                   r2_fake_vs_real_win_rate=None if r_fake is None else r_fake ** 2)
    return out
