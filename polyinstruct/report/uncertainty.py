"""Every number the report prints, with n and a 95% percentile bootstrap interval
(polyinstruct.stats, fixed seed), and the paired differences between arms.

- Rates (``*_rate`` fields of results.jsonl): bootstrapped over answers. The
  per-answer 0/1 outcomes come from the row's ``items`` (written by
  experiment/scoring.py); a row without them (an older run) is bootstrapped from
  its rate and n, which gives the same interval for a 0/1 mean, but cannot be
  paired. Items whose mean disagrees with the row's rate (a rate with another
  definition) are not used for it.
- chrF is a corpus statistic: answers are resampled and chrF recomputed from the
  summed per-sentence character n-gram statistics (sacrebleu's own).
- Judge scores: mean score per answer over the judgments with a score.
- "seen"/"unseen" columns pool the answers of those languages.
- Differences ``A - B`` pair the two arms' answers to the same prompts; a mark
  (``*``) says the interval excludes 0.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from polyinstruct.report.load import ExperimentData
from polyinstruct.stats import (Interval, bootstrap_mean, bootstrap_rate, bootstrap_statistic, chrf_from_statistics,
                                chrf_statistics, paired_bootstrap)

SEEN, UNSEEN = "seen (pooled)", "unseen (pooled)"
MARK = "*"


def column_languages(data: ExperimentData) -> list[tuple[str, list[str]]]:
    """(column label, languages) for every language column, then the pooled seen/unseen columns."""
    seen = {r["language"]: r.get("seen", True) for r in data.results}
    cols = [(lang, [lang]) for lang in data.languages]
    s = [lg for lg in data.languages if seen.get(lg, True)]
    u = [lg for lg in data.languages if not seen.get(lg, True)]
    if s and len(data.languages) > 1:
        cols.append((SEEN, s))
    if u:
        cols.append((UNSEEN, u))
    return cols


# --- rates -------------------------------------------------------------------------------------

def rate_keys(data: ExperimentData, preferred: list[str]) -> list[str]:
    """The rate fields present in the results: ``preferred`` order first, then any other ``*_rate``
    (fields scoring adds later show up without a report change)."""
    present = [k for r in data.results for k in r if k.endswith("_rate") and r.get(k) is not None]
    out = [k for k in preferred if k in present]
    return out + sorted({k for k in present if k not in out})


def _item_field(key: str) -> str:
    return key[: -len("_rate")]


def item_outcomes(row: dict[str, Any], key: str) -> dict[str, float] | None:
    """``{item id: 0/1}`` for one row and rate, when its items reproduce the rate exactly."""
    items, f = row.get("items"), _item_field(key)
    if not items or row.get(key) is None or not all(f in it and it[f] is not None for it in items):
        return None
    vals = {str(it["id"]): float(it[f]) for it in items}
    if len(vals) != len(items) or abs(sum(vals.values()) / len(vals) - float(row[key])) > 1e-9:
        return None
    return vals


def _rate_values(row: dict[str, Any], key: str) -> list[float]:
    per = item_outcomes(row, key)
    if per is not None:
        return list(per.values())
    n = row.get(f"{_item_field(key)}_n", row.get("n")) or 0
    k = int(round(float(row[key]) * n))
    return [1.0] * k + [0.0] * (int(n) - k)


def rate_interval(data: ExperimentData, cell: str, langs: list[str], key: str) -> Interval | None:
    vals: list[float] = []
    found = False
    for lang in langs:
        row = data.row(cell, lang)
        if row is None or row.get(key) is None:
            continue
        found = True
        vals += _rate_values(row, key)
    return bootstrap_rate(vals) if found else None


def paired_rate(data: ExperimentData, a: str, b: str, langs: list[str], key: str) -> Interval | None:
    """Paired bootstrap of ``a - b`` on the prompts both arms answered, or None without per-answer items."""
    xa, xb = [], []
    for lang in langs:
        ra, rb = data.row(a, lang), data.row(b, lang)
        if ra is None or rb is None:
            continue
        pa, pb = item_outcomes(ra, key), item_outcomes(rb, key)
        if pa is None or pb is None:
            return None
        common = sorted(set(pa) & set(pb))
        xa += [pa[i] for i in common]
        xb += [pb[i] for i in common]
    return paired_bootstrap(xa, xb) if xa else None


# --- chrF --------------------------------------------------------------------------------------

def _chrf_stats(data: ExperimentData, cell: str, langs: list[str]) -> dict[str, np.ndarray]:
    """``{prediction key: per-sentence chrF statistics}`` of a cell's answers with a reference."""
    rows = [(k, r) for k, r in data.predictions.get(cell, {}).items()
            if r.get("language") in langs and r.get("reference")]
    if not rows:
        return {}
    stats = chrf_statistics([r.get("response") or "" for _, r in rows], [r["reference"] for _, r in rows])
    return {k: s for (k, _), s in zip(rows, stats)}


_chrf_score = chrf_from_statistics


def chrf_interval(data: ExperimentData, cell: str, langs: list[str], resamples: int = 1000) -> Interval | None:
    st = _chrf_stats(data, cell, langs)
    if not st or any(data.row(cell, lg) is not None and data.row(cell, lg).get("chrf") is None for lg in langs):
        return None
    arr = np.stack(list(st.values()))
    return bootstrap_statistic(len(arr), lambda idx: _chrf_score(arr[idx].sum(axis=0)), resamples=resamples)


def paired_chrf(data: ExperimentData, a: str, b: str, langs: list[str], resamples: int = 1000) -> Interval | None:
    sa, sb = _chrf_stats(data, a, langs), _chrf_stats(data, b, langs)
    common = sorted(set(sa) & set(sb))
    if not common:
        return None
    xa, xb = np.stack([sa[k] for k in common]), np.stack([sb[k] for k in common])
    return bootstrap_statistic(len(common), lambda idx: _chrf_score(xa[idx].sum(axis=0)) - _chrf_score(xb[idx].sum(axis=0)),
                               resamples=resamples)


# --- judge scores --------------------------------------------------------------------------------

def judge_values(data: ExperimentData, cell: str, langs: list[str], field: str) -> dict[str, float]:
    return {f"{r.get('id')}|{r.get('language')}": float(r[field]) for r in data.judgments.get(cell, [])
            if r.get("language") in langs and r.get(field) is not None}


def judge_interval(data: ExperimentData, cell: str, langs: list[str], field: str) -> Interval | None:
    vals = judge_values(data, cell, langs, field)
    return bootstrap_mean(list(vals.values())) if vals else None


def paired_judge(data: ExperimentData, a: str, b: str, langs: list[str], field: str) -> Interval | None:
    va, vb = judge_values(data, a, langs, field), judge_values(data, b, langs, field)
    common = sorted(set(va) & set(vb))
    return paired_bootstrap([va[k] for k in common], [vb[k] for k in common]) if common else None


# --- formatting --------------------------------------------------------------------------------

def fmt_interval(iv: Interval | None, scale: float = 1.0, digits: int = 1, show_n: bool = False) -> str:
    if iv is None or iv.estimate is None:
        return "-"
    f: Callable[[float], str] = lambda v: f"{v * scale:.{digits}f}"  # noqa: E731
    s = f"{f(iv.estimate)} [{f(iv.low)}, {f(iv.high)}]"
    return f"{s} n={iv.n}" if show_n else s


def fmt_difference(iv: Interval | None, scale: float = 1.0, digits: int = 1) -> str:
    if iv is None or iv.estimate is None:
        return "-"
    f: Callable[[float], str] = lambda v: f"{v * scale:+.{digits}f}"  # noqa: E731
    return f"{f(iv.estimate)} [{f(iv.low)}, {f(iv.high)}]" + (f" {MARK}" if iv.excludes_zero else "")
