"""The project's one statistics module: bootstrap intervals, paired differences,
correlation and agreement.

Every rate or score polyinstruct reports carries ``n`` and a percentile bootstrap
interval computed here, with a fixed seed so that a report is reproducible to the
last digit (the seed and the number of resamples are part of the result). A
difference between two arms evaluated on the *same* prompts uses the paired
bootstrap: prompts are resampled once per replicate and both arms are read on the
same draw, so prompt difficulty cancels out. See docs/studies.md ("How
polyinstruct states uncertainty").

Conventions
- ``bootstrap_mean``: resample the n values with replacement ``resamples`` times
  (``numpy.random.default_rng(seed).integers(0, n, (resamples, n))``), take each
  replicate's mean, and report the ``(1-level)/2`` and ``(1+level)/2`` quantiles
  of those means (numpy's default linear interpolation). A rate is the mean of
  0/1 values.
- ``paired_bootstrap(a, b)``: the same on the per-prompt differences ``a - b``;
  ``excludes_zero`` is true when the whole interval lies on one side of 0.
- ``None`` values are not allowed in the inputs: callers decide what a missing
  score means (see experiment/scoring.py) and say so, so nothing is silently dropped.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np

from polyinstruct.errors import PolyinstructError

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95


class StatsError(PolyinstructError, ValueError):
    """Input the statistics cannot be computed on (mismatched lengths, bad level, NaN...)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval.

    ``low``/``high`` are None when n == 0 (and ``estimate`` too). With n == 1 the
    interval collapses onto the single value: report it, but read it as "no
    information about spread", which the ``n`` next to it makes visible.
    """

    estimate: float | None
    low: float | None
    high: float | None
    n: int
    level: float = DEFAULT_LEVEL
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED

    def excludes(self, value: float = 0.0) -> bool:
        """True when the whole interval lies strictly on one side of ``value``."""
        if self.low is None or self.high is None:
            return False
        return self.low > value or self.high < value

    @property
    def excludes_zero(self) -> bool:
        return self.excludes(0.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["excludes_zero"] = self.excludes_zero
        return d

    def format(self, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
        """``0.62 [0.48, 0.75] n=50`` (``scale=100, suffix='%'`` for percentages)."""
        if self.estimate is None:
            return f"n/a (n={self.n})"
        f = lambda v: f"{v * scale:.{digits}f}{suffix}"  # noqa: E731
        return f"{f(self.estimate)} [{f(self.low)}, {f(self.high)}] n={self.n}"


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in values], dtype=float)
    except (TypeError, ValueError) as e:
        raise StatsError(f"{name}: every value must be a number (got {e})") from None
    if arr.size and not np.all(np.isfinite(arr)):
        raise StatsError(f"{name}: values must be finite (found NaN or inf)")
    return arr


def _check(level: float, resamples: int) -> None:
    if not 0 < level < 1:
        raise StatsError(f"level must be between 0 and 1, got {level}")
    if int(resamples) < 1:
        raise StatsError(f"resamples must be at least 1, got {resamples}")


def _percentile_interval(values: np.ndarray, resamples: int, seed: int, level: float) -> Interval:
    n = int(values.size)
    if n == 0:
        return Interval(None, None, None, 0, level, resamples, seed)
    estimate = float(values.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    means = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    # Float summation can put a quantile a hair outside [min, max] of the data; clamp.
    low, high = float(max(low, values.min())), float(min(high, values.max()))
    return Interval(estimate, low, high, n, level, resamples, seed)


def bootstrap_mean(values: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                   level: float = DEFAULT_LEVEL) -> Interval:
    """Mean of ``values`` with its percentile bootstrap interval (see module doc)."""
    _check(level, resamples)
    return _percentile_interval(_as_array(values, "values"), int(resamples), int(seed), level)


def bootstrap_rate(outcomes: Sequence[bool | int | float], *, resamples: int = DEFAULT_RESAMPLES,
                   seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> Interval:
    """A rate (mean of 0/1 outcomes) with its interval; values other than 0/1/True/False are refused."""
    arr = _as_array(outcomes, "outcomes")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        raise StatsError("outcomes: a rate needs 0/1 (or True/False) values; use bootstrap_mean for scores")
    _check(level, resamples)
    return _percentile_interval(arr, int(resamples), int(seed), level)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES,
                     seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> Interval:
    """Mean difference ``a - b`` over the same items, with its paired bootstrap interval.

    ``a[i]`` and ``b[i]`` must be the two arms' values on the same prompt i (use
    ``align`` to pair keyed results). ``excludes_zero`` on the result is the
    report's "the arms differ" mark.
    """
    xa, xb = _as_array(a, "a"), _as_array(b, "b")
    if xa.size != xb.size:
        raise StatsError(f"paired bootstrap needs the same items in both arms: {xa.size} vs {xb.size} values")
    _check(level, resamples)
    return _percentile_interval(xa - xb, int(resamples), int(seed), level)


def bootstrap_statistic(n: int, statistic: Callable[[np.ndarray], float], *, resamples: int = DEFAULT_RESAMPLES,
                        seed: int = DEFAULT_SEED, level: float = DEFAULT_LEVEL) -> Interval:
    """Percentile interval of any statistic of n items (e.g. corpus chrF from per-sentence sums).

    ``statistic(indices)`` gets an int array of item indices (all items once for the
    estimate, then each replicate's draw, the same draws as ``bootstrap_mean``) and
    returns a float. For a paired difference, let it compute both arms on the same indices.
    """
    _check(level, resamples)
    if n <= 0:
        return Interval(None, None, None, 0, level, int(resamples), int(seed))
    estimate = float(statistic(np.arange(n)))
    idx = np.random.default_rng(int(seed)).integers(0, n, size=(int(resamples), n))
    reps = np.array([statistic(row) for row in idx], dtype=float)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return Interval(estimate, float(low), float(high), int(n), level, int(resamples), int(seed))


def align(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> tuple[list[Hashable], list[float], list[float], dict[str, list]]:
    """Pair two keyed results (e.g. ``{prompt_id: score}``) on their common keys.

    Returns ``(keys, a_values, b_values, unpaired)`` where ``unpaired`` lists the
    keys only one side has (``{"only_a": [...], "only_b": [...]}``), so a caller
    can report what the paired difference left out instead of hiding it.
    """
    keys = sorted((k for k in a if k in b), key=str)
    unpaired = {"only_a": sorted((k for k in a if k not in b), key=str),
                "only_b": sorted((k for k in b if k not in a), key=str)}
    return keys, [a[k] for k in keys], [b[k] for k in keys], unpaired


# --- correlation -------------------------------------------------------------------------------

def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson r; None when fewer than 2 points, lengths differ, or a series is constant."""
    n = len(x)
    if n != len(y) or n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)


def _average_ranks(x: Sequence[float]) -> list[float]:
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rho (Pearson on average ranks, ties share their mean rank); None as ``pearson``."""
    if len(x) != len(y) or len(x) < 2:
        return None
    return pearson(_average_ranks(x), _average_ranks(y))


# --- agreement ---------------------------------------------------------------------------------

def exact_agreement(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Share of items on which two annotators give the same label."""
    if len(a) != len(b) or not a:
        return None
    return sum(x == y for x, y in zip(a, b)) / len(a)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa for two annotators' labels on the same items (1.0 when chance agreement is 1)."""
    if len(a) != len(b) or not a:
        return None
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def pairwise_agreement(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Tulu's pairwise-preference agreement: 1 when preferences match, 0.5 when exactly one says tie, else 0."""
    if len(a) != len(b) or not a:
        return None
    total = 0.0
    for x, y in zip(a, b):
        total += 1.0 if x == y else 0.5 if "tie" in (x, y) else 0.0
    return total / len(a)


def fleiss_kappa(ratings: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa: one list of labels per item (any number of raters, 2 or more per item).

    P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)); P_bar is their mean; p_j is label j's
    share of all ratings; kappa = (P_bar - P_e) / (1 - P_e) with P_e = sum_j p_j^2. With
    the same number of raters per item this is Fleiss (1971). None without an item rated
    twice; 1.0 when every rating is the same label (P_e = 1).
    """
    items = [list(r) for r in ratings if len(r) >= 2]
    if not items:
        return None
    totals: Counter = Counter()
    p_items = []
    for labels in items:
        counts = Counter(labels)
        totals.update(counts)
        n = len(labels)
        p_items.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
    n_all = sum(totals.values())
    p_e = sum((c / n_all) ** 2 for c in totals.values())
    p_bar = sum(p_items) / len(p_items)
    return 1.0 if p_e == 1 else (p_bar - p_e) / (1 - p_e)


# --- intervals of any statistic ------------------------------------------------------------------

def interval_from_replicates(estimate: float, replicates: Sequence[float], *, level: float = DEFAULT_LEVEL,
                             seed: int = DEFAULT_SEED) -> Interval:
    """Percentile interval of any statistic from its bootstrap replicates (e.g. refitted
    parameters), computed by the caller; ``n`` is the number of replicates."""
    _check(level, max(len(replicates), 1))
    arr = _as_array(replicates, "replicates")
    if arr.size == 0:
        return Interval(float(estimate), None, None, 0, level, 0, seed)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(arr, [alpha, 1.0 - alpha])
    return Interval(float(estimate), float(low), float(high), int(arr.size), level, int(arr.size), seed)


# --- chrF from per-sentence statistics -----------------------------------------------------------

@lru_cache(maxsize=1)
def _chrf_metric():
    from sacrebleu.metrics import CHRF

    return CHRF()  # sacrebleu's defaults: chrF2, character 6-grams


def chrf_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per-sentence chrF statistics, one row per sentence pair. Summed over any subset of the rows
    they give that subset's corpus chrF (:func:`chrf_from_statistics`), which is how sacrebleu's
    own bootstrap resamples it. The one place polyinstruct uses sacrebleu's statistics API."""
    stats = _chrf_metric()._extract_corpus_statistics(list(hypotheses), [list(references)])
    return np.asarray(stats, dtype=float)


def chrf_from_statistics(summed: np.ndarray) -> float:
    """Corpus chrF (0-100) from summed :func:`chrf_statistics` rows."""
    return float(_chrf_metric()._compute_score_from_stats(np.asarray(summed).tolist()).score)
