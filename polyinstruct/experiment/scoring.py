"""Score one cell's predictions per language: language-ID consistency, chrF, and
(when configured) the LLM judge with the language penalty."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
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


# Echo detection lives in lang/echo.py (data prefs uses it too); re-exported here for callers.
from polyinstruct.lang.echo import ECHO_COVERAGE, echo_coverage, echoes_prompt  # noqa: E402,F401


def item_outcomes(items: list[dict[str, Any]], identifier) -> list[dict[str, Any]]:
    """One dict per answer, in order: prompt id, detected language, and 0/1 outcomes named after
    the row's rates (``lang_match`` for ``lang_match_rate``, ...), so rates and per-answer
    outcomes (the report's bootstrap intervals) come from one computation.

    - ``lang_match``: in the prompt's language and not an echo (the headline);
    - ``lang_match_raw``: in the prompt's language by language ID alone (echoes included);
    - ``lang_mismatch``: a definite other language; ``lang_undetermined``: no language found
      (short, code only, low confidence; counts as not in language, as in study 1's strict rule);
    - ``prompt_echo``: the answer is (mostly) the prompt again.
    """
    from polyinstruct.lang.codes import same_language

    ids = identifier.identify([r.get("response") or "" for r in items])
    out = []
    for r, (code, _conf) in zip(items, ids):
        match = same_language(code, r.get("language"))
        echo = echoes_prompt(r.get("response") or "", _last_user(r))
        out.append({"id": str(r.get("id")), "lid_language": code,
                    "lang_match": int(match is True and not echo), "lang_match_raw": int(match is True),
                    "lang_mismatch": int(match is False), "lang_undetermined": int(match is None),
                    "prompt_echo": int(echo)})
    return out


def score_predictions(pred_path: Path, *, identifier, seen_languages: list[str],
                      judge_summary: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per language: n, the language rates (see ``item_outcomes``), chrF, per-answer
    ``items`` (+ judge totals when given)."""
    rows = list(iter_jsonl(pred_path))
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_lang[r["language"]].append(r)
    out = []
    for lang, items in by_lang.items():
        responses = [r["response"] for r in items]
        outcomes = item_outcomes(items, identifier)
        n = len(items)

        def rate(key: str) -> float:
            return sum(o[key] for o in outcomes) / n

        row: dict[str, Any] = {
            "language": lang,
            "seen": lang in seen_languages,
            "n": n,
            # Headline: in the prompt's language and not an echo of the prompt. Undetermined
            # answers count as not in language: an empty or code-only answer is not a success.
            "lang_match_rate": rate("lang_match"),
            "lang_match_raw_rate": rate("lang_match_raw"),
            "lang_mismatch_rate": rate("lang_mismatch"),
            "lang_undetermined_rate": rate("lang_undetermined"),
            "prompt_echo_rate": rate("prompt_echo"),
            "detected_languages": dict(Counter(o["lid_language"] for o in outcomes).most_common()),
            "chrf": chrf(responses, [r.get("reference") or "" for r in items])
            if all(r.get("reference") for r in items) else None,
            "mean_completion_tokens": sum(r.get("completion_tokens", 0) for r in items) / n,
            # Per-prompt outcomes: the report's bootstrap intervals and paired differences between arms.
            "items": [{k: v for k, v in o.items() if k != "lid_language"} for o in outcomes],
        }
        if judge_summary:
            per = _judge_row(judge_summary, lang)
            if per:
                row.update(per)
        out.append(row)
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
                    "judge_max": c["max_total"], "judge_language_policy": c.get("language_policy"),
                    "judge_mean": c.get("mean_before"), "judge_mean_penalized": c.get("mean_after"),
                    "judge_total_penalized_scaled": c.get("total_after_scaled"),
                    "judge_unparsed_fraction": c.get("unparsed_rate"),
                    "judge_n_undetermined": c.get("n_undetermined"), "judge_n_wrong_language": c.get("n_wrong_language")}
    return None
