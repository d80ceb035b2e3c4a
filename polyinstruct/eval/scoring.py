"""Answer extraction and scores the studies define (docs/evaluation.md), and the suite averages.

- ``last_number``: GSM8K's answer is the last number in the output (thousands separators
  removed first), compared with the gold number by ``exact_match``.
- ``bbh_answer``: BBH's CoT answer is the text after "So the answer is " up to the next
  ".", or the whole output when the phrase is absent.
- ``exact_match``: string equality ignoring case and punctuation (Tulu's settings for both;
  the studies' metric, reported under that name).
- ``number_match`` / ``strict_match``: the strict metric reported beside it
  (``exact_match_strict``): numbers compared as numbers (sign, decimal point, thousands
  separators, any script's digits; 18.00 = 18), BBH's bracket answers with their brackets.
- ``squad_f1`` / ``squad_em``: SQuAD's token F1 after SQuAD's normalisation (lower case,
  punctuation and articles removed: English, and Spanish, German, Vietnamese and Arabic as
  MLQA's official script does); as MLQA's official script does, CJK text is
  split into single characters (a Chinese answer has no spaces to split on).
- ``benchmark_scores`` / ``suite_average``: a benchmark's score is the mean over its
  settings, the suite's the equal-weight mean over benchmarks (Tulu's averaging).
"""

from __future__ import annotations

import math
import re
import string
import sys
import unicodedata
from collections import Counter
from decimal import Decimal
from typing import Any, Iterable

from polyinstruct.lang.scripts import script_regex

_NUM = re.compile(r"[-+]?\d*\.\d+|\d+")  # Tulu's GSM8K number pattern


def _strip_thousands(text: str) -> str:
    prev = None
    while prev != text:  # "1,234,567" needs two passes of the pairwise rule
        prev, text = text, re.sub(r"(\d),(\d)", r"\1\2", text)
    return text


def last_number(text: str) -> str | None:
    """The last number in ``text`` ("1,234" -> "1234"), or None when it has none."""
    found = _NUM.findall(_strip_thousands(text or ""))
    return found[-1] if found else None


def exact_match(pred: str | None, gold: str) -> bool:
    """Exact match ignoring case and ASCII punctuation (the studies' exact_match settings)."""
    if pred is None:
        return False
    table = str.maketrans("", "", string.punctuation)
    return pred.strip().lower().translate(table).strip() == gold.strip().lower().translate(table).strip()


# -- the strict metric (exact_match_strict) --------------------------------------------------------
# The studies' exact_match drops every punctuation mark, so "-5" matches 5, "3.50" matches 350 and an
# answer made only of brackets (or nothing) matches any dyck_languages target. The strict metric is
# reported beside it: numbers compared as numbers, other answers with their inner punctuation kept.

_MINUS = "-\u2212\u2012\u2013\ufe63\uff0d"  # hyphen-minus, minus sign, figure/en dash, small and full-width
# A sign counts only where it cannot be a hyphen or an operator ("5-3", "x-2"); digits may touch
# letters ("5km", "5个"); a comma joins only groups of three digits (a thousands separator), so
# "3,50" is 3 then 50 (a decimal comma is not read as one: it cannot be told from a list "5,6").
_STRICT_NUM = re.compile(r"(?:(?<![\w.,])([" + _MINUS + r"]))?(?<![\d.])"
                         r"(\d{1,3}(?:,\d{3})+(?![\d])|\d+)?(?:\.(\d+))?")


def ascii_digits(text: str) -> str:
    """Every Unicode decimal digit (full-width ７, Bengali ৭, Thai ๗, Telugu ౭, ...) as its ASCII
    digit, and NFKC's fold of full-width signs and separators (－ ． ，)."""
    text = unicodedata.normalize("NFKC", text or "")
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() and not ch.isascii() else ch for ch in text)


def _strict_numbers(text: str) -> list[Decimal]:
    out = []
    for m in _STRICT_NUM.finditer(ascii_digits(text)):
        sign, whole, frac = m.group(1), m.group(2), m.group(3)
        if whole is None and frac is None:
            continue
        value = Decimal((whole or "0").replace(",", "") + ("." + frac if frac else ""))
        out.append(-value if sign else value)
    return out


def strict_number(text: str | None) -> Decimal | None:
    """The last number in ``text`` as a number: its sign and decimal point kept, commas only as
    thousands separators (1,234,567), any script's digits; None when it has none."""
    found = _strict_numbers(text or "")
    return found[-1] if found else None


def number_match(pred: str | None, gold: str | float | int) -> bool:
    """``pred``'s last number equals the gold number as a number (18.00 = 18; -5 != 5; 3.50 != 350)."""
    value = strict_number(pred)
    ref = strict_number(str(gold))
    return value is not None and ref is not None and value == ref


def _bare(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").casefold().split())


def strict_match(pred: str | None, gold: str) -> bool:
    """Exact match that keeps what carries meaning:

    - a gold that is a number: ``pred`` (all of it, a trailing period allowed) is the same number;
    - a gold without letters or digits (BBH dyck_languages' brackets): the same characters in the
      same order, spaces ignored (an empty answer never matches);
    - otherwise: case, spacing and punctuation at either end ignored, inner punctuation kept
      ("(A)" = "A", "valid" = "Valid.", but "10/12/2001" != "10122001").
    """
    if pred is None:
        return False
    g, p = _bare(gold), _bare(pred)
    if not g:
        return not p
    if re.fullmatch(r"[" + _MINUS + r"]?[\d,]*\.?\d+", ascii_digits(g)):
        nums = _strict_numbers(p.rstrip("."))
        return len(nums) == 1 and _STRICT_NUM.fullmatch(ascii_digits(p.rstrip("."))) is not None \
            and nums[0] == strict_number(g)
    if not any(ch.isalnum() for ch in g):
        return bool(p) and p.replace(" ", "") == g.replace(" ", "")
    edge = "".join(sorted(_PUNCT))
    return bool(p.strip(edge).strip()) and p.strip(edge).strip() == g.strip(edge).strip()


def gsm8k_gold(answer: str) -> str:
    """The number after '####' in a GSM8K answer."""
    return _strip_thousands(answer.split("####")[-1].strip())


_SO = re.compile(r"So the answer is (.*?)\.")


def bbh_answer(text: str) -> str:
    """The text between the first "So the answer is " and the next ".", else the whole output."""
    m = _SO.search(text or "")
    return m.group(1).strip() if m else (text or "").strip()


# -- SQuAD F1 ----------------------------------------------------------------------------------

_PUNCT = {chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")} \
    | set(string.punctuation)


_HAN_KANA = script_regex("Han", "Hira", "Kana")


def _is_cjk(ch: str) -> bool:
    return _HAN_KANA.match(ch) is not None


# Articles removed per language, as MLQA's official script (mlqa_evaluation_v1.py, and lm-eval's
# mlqa/utils.py) does; other languages keep every word.
ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "ar": re.compile(r"(?:^|\s)ال"),
}


def normalize_answer(s: str, lang: str = "en") -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles (``ARTICLES``: en, es, de, vi,
    ar, as MLQA's official script), single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    if lang in ARTICLES:
        s = ARTICLES[lang].sub(" ", s)
    return " ".join(s.split())


def answer_tokens(s: str, lang: str = "en") -> list[str]:
    """Tokens for F1: whitespace tokens, each CJK character a token of its own (MLQA)."""
    out: list[str] = []
    for tok in normalize_answer(s, lang).split():
        buf = ""
        for ch in tok:
            if _is_cjk(ch):
                if buf:
                    out.append(buf)
                    buf = ""
                out.append(ch)
            else:
                buf += ch
        if buf:
            out.append(buf)
    return out


def squad_f1(prediction: str, gold: str | Iterable[str], lang: str = "en") -> float:
    """Token F1 of ``prediction`` against the best of the gold answers (0..1)."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    best = 0.0
    pred = answer_tokens(prediction, lang)
    for g in golds:
        ref = answer_tokens(g, lang)
        common = Counter(pred) & Counter(ref)
        same = sum(common.values())
        if not pred and not ref:
            best = max(best, 1.0)
            continue
        if same == 0:
            continue
        p, r = same / len(pred), same / len(ref)
        best = max(best, 2 * p * r / (p + r))
    return best


def squad_em(prediction: str, gold: str | Iterable[str], lang: str = "en") -> float:
    golds = [gold] if isinstance(gold, str) else list(gold)
    return float(any(normalize_answer(prediction, lang) == normalize_answer(g, lang) for g in golds))


# -- averages ----------------------------------------------------------------------------------

def mean_stderr(items: list[tuple[float, float | None]]) -> tuple[float, float | None]:
    """Mean of k scores and its standard error, treating the k estimates as independent."""
    scores = [s for s, _ in items]
    mean = sum(scores) / len(scores)
    ses = [se for _, se in items]
    if any(se is None for se in ses):
        return mean, None
    return mean, math.sqrt(sum(se * se for se in ses)) / len(ses)  # type: ignore[operator]


def benchmark_scores(task_rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{benchmark: {score, stderr, settings: {setting: score}, higher_is_better, in_average[, also]}}.

    ``task_rows`` are task summaries (``benchmark``, ``setting``, ``score``, ``stderr``,
    ``higher_is_better``, ``in_average``); a benchmark's score is the mean over its settings.
    """
    by: dict[str, list[dict[str, Any]]] = {}
    for r in task_rows:
        if r.get("score") is not None:
            by.setdefault(r["benchmark"], []).append(r)
    out = {}
    for bench, rows in by.items():
        score, se = mean_stderr([(r["score"], r.get("stderr")) for r in rows])
        out[bench] = {"score": score, "stderr": se, "settings": {r["setting"]: r["score"] for r in rows},
                      "higher_is_better": rows[0].get("higher_is_better", True),
                      "in_average": rows[0].get("in_average", True)}
        # Metrics reported beside the score (exact_match_strict): the same mean over settings,
        # when every setting has it; never in the suite average (the studies' metric is).
        also = {}
        for m in {k for r in rows for k in (r.get("also") or {})}:
            got = [(r["also"][m]["score"], r["also"][m].get("stderr")) for r in rows
                   if m in (r.get("also") or {}) and r["also"][m].get("score") is not None]
            if len(got) == len(rows):
                ms, mse = mean_stderr(got)
                also[m] = {"score": ms, "stderr": mse}
        if also:
            out[bench]["also"] = dict(sorted(also.items()))
    return out


def suite_average(benchmarks: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Equal-weight mean over the benchmarks counted in the average (None when there are none)."""
    rows = [(b["score"], b.get("stderr")) for b in benchmarks.values() if b.get("in_average", True)]
    if not rows:
        return None
    score, se = mean_stderr(rows)
    return {"score": score, "stderr": se,
            "benchmarks": sorted(k for k, b in benchmarks.items() if b.get("in_average", True))}
