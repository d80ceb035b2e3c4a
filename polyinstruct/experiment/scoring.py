"""Score one cell's predictions per language: language-ID consistency, chrF, and
(when configured) the LLM judge with the language penalty."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from polyinstruct.fileio import iter_jsonl

log = logging.getLogger(__name__)


def chrf(hypotheses: list[str], references: list[str]) -> float:
    """Corpus chrF (sacrebleu, default chrF2, character n-grams: fine for zh/bn too)."""
    from sacrebleu.metrics import CHRF

    if not hypotheses:
        return 0.0
    return float(CHRF().corpus_score(hypotheses, [references]).score)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def echoes_prompt(response: str, prompt: str) -> bool:
    """True when the answer repeats the question verbatim (a base model's typical failure).

    Language ID alone calls such an answer "in the right language", so the report
    shows the echo rate beside the language-match rate.
    """
    p, r = _norm(prompt), _norm(response)
    return bool(p) and p[: min(len(p), 60)] in r


def score_predictions(pred_path: Path, *, identifier, seen_languages: list[str],
                      judge_summary: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per language: n, lang_match_rate, chrf (+ judge totals when given)."""
    from polyinstruct.judge.scores import language_consistency

    rows = list(iter_jsonl(pred_path))
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_lang[r["language"]].append(r)
    out = []
    for lang, items in by_lang.items():
        responses = [r["response"] for r in items]
        # one file = one model, so the consistency table has a single model with this language
        (lid,) = (m for model in language_consistency(items, identifier)["models"].values() for m in model.values())
        row: dict[str, Any] = {
            "language": lang,
            "seen": lang in seen_languages,
            "n": len(items),
            # "undetermined" (None) counts as not in the prompt's language here: an empty or
            # code-only answer to a natural-language prompt is not a success.
            "lang_match_rate": lid["match"] / len(items),
            "lang_undetermined_rate": lid["undetermined"] / len(items),
            "prompt_echo_rate": sum(echoes_prompt(r["response"], _last_user(r)) for r in items) / len(items),
            "chrf": chrf(responses, [r.get("reference") or "" for r in items])
            if all(r.get("reference") for r in items) else None,
            "mean_completion_tokens": sum(r.get("completion_tokens", 0) for r in items) / len(items),
            # Per-prompt outcomes: the report's bootstrap intervals and paired differences between arms.
            "items": _item_outcomes(items, identifier),
        }
        if judge_summary:
            per = _judge_row(judge_summary, lang)
            if per:
                row.update(per)
        out.append(row)
    return out


def _item_outcomes(items: list[dict[str, Any]], identifier) -> list[dict[str, Any]]:
    """One dict per answer: prompt id and 0/1 outcomes named after the row's rates (``lang_match``
    for ``lang_match_rate``...), computed by the same rules (``language_consistency`` is called
    with one pseudo-model per answer, so its per-answer verdict is exactly what the rate counts)."""
    from polyinstruct.judge.scores import language_consistency

    keyed = [{**r, "model": str(i)} for i, r in enumerate(items)]
    per = language_consistency(keyed, identifier)["models"]
    out = []
    for i, r in enumerate(items):
        (c,) = per[str(i)].values()
        out.append({"id": str(r.get("id")),
                    "lang_match": c["match"], "lang_undetermined": c["undetermined"],
                    "prompt_echo": int(echoes_prompt(r["response"], _last_user(r)))})
    return out


def _last_user(row: dict[str, Any]) -> str:
    users = [m["content"] for m in row.get("messages") or [] if m.get("role") == "user"]
    return users[-1] if users else ""


def _judge_row(summary: dict[str, Any], lang: str) -> dict[str, Any] | None:
    """Pull one language's totals out of ``judge_predictions``' single-answer summary."""
    for model in (summary.get("scores") or {}).get("models", {}).values():
        c = model.get("languages", {}).get(lang)
        if c:
            return {"judge_total": c["total_before"], "judge_total_penalized": c["total_after"],
                    "judge_max": c["max_total"]}
    return None
