"""Answer extraction and scores the studies define (docs/evaluation.md), and the suite averages.

- ``last_number``: GSM8K's answer is the last number in the output (thousands separators
  removed first), compared with the gold number by ``exact_match``.
- ``bbh_answer``: BBH's CoT answer is the text after "So the answer is " up to the next
  ".", or the whole output when the phrase is absent.
- ``exact_match``: string equality ignoring case and punctuation (Tulu's settings for both).
- ``squad_f1`` / ``squad_em``: SQuAD's token F1 after SQuAD's normalisation (lower case,
  punctuation and English articles removed); as MLQA's official script does, CJK text is
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


def normalize_answer(s: str, lang: str = "en") -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles (English), single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    if lang == "en":
        s = re.sub(r"\b(a|an|the)\b", " ", s)
    elif lang == "ar":
        s = re.sub(r"(?:^|\s)ال", " ", s)
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
    """{benchmark: {score, stderr, settings: {setting: score}, higher_is_better, in_average}}.

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
    return out


def suite_average(benchmarks: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Equal-weight mean over the benchmarks counted in the average (None when there are none)."""
    rows = [(b["score"], b.get("stderr")) for b in benchmarks.values() if b.get("in_average", True)]
    if not rows:
        return None
    score, se = mean_stderr(rows)
    return {"score": score, "stderr": se,
            "benchmarks": sorted(k for k, b in benchmarks.items() if b.get("in_average", True))}
