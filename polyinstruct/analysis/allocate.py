"""Split a data budget across languages using fitted scaling laws.

The problem: choose integer amounts ``x_l`` (on the grid ``floor_l + k * step``,
``floor_l <= x_l <= cap_l``) with ``sum x_l <= budget`` that maximise either the
total predicted score ``sum f_l(x_l)`` or the minimum ``min f_l(x_l)``.

- Laws that are increasing and concave (every fitted law with a positive slope
  here) are solved exactly by greedy marginal gains: for ``sum`` each unit goes
  to the language whose next step adds most (optimal for separable concave
  objectives); for ``min`` each unit goes to the language currently lowest
  (optimal for increasing functions; the budget left once the minimum cannot rise,
  because the lowest language sits at its cap, is then spent for the total).
- Anything else falls back to an exact dynamic programme over the grid.
``brute_force`` enumerates every split and exists for checking both (tests).
See docs/analysis.md.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from polyinstruct.errors import ConfigError

Curve = Callable[[float], float]
OBJECTIVES = ("sum", "min")
DP_LIMIT = 4000  # grid points per language the exact fallback accepts


@dataclass
class Allocation:
    amounts: dict[str, int]
    predicted: dict[str, float]
    objective: str
    value: float
    method: str
    unspent: int = 0
    baseline: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "value": self.value, "method": self.method, "amounts": self.amounts,
                "predicted": self.predicted, "unspent": self.unspent, "uniform": self.baseline,
                "gain_over_uniform": (self.value - self.baseline["value"]) if self.baseline.get("value") is not None
                else None}


def _bounds(langs: Sequence[str], budget: int, floors: Mapping[str, int] | None, caps: Mapping[str, int] | None,
            step: int) -> tuple[dict[str, int], dict[str, int]]:
    if budget < 0:
        raise ConfigError("the budget cannot be negative", field="budget")
    if step < 1:
        raise ConfigError("step must be a positive integer", field="step")
    floors, caps = dict(floors or {}), dict(caps or {})
    for name, d in (("floors", floors), ("caps", caps)):
        unknown = set(d) - set(langs)
        if unknown:
            raise ConfigError(f"{name} name languages without a fitted law: {', '.join(sorted(unknown))}", field=name)
    lo = {lang: int(floors.get(lang, 0)) for lang in langs}
    hi = {lang: int(caps.get(lang, budget)) for lang in langs}
    for lang in langs:
        if lo[lang] < 0:
            raise ConfigError(f"floor of {lang} is negative", field=f"floors.{lang}")
        if hi[lang] < lo[lang]:
            raise ConfigError(f"cap of {lang} ({hi[lang]}) is below its floor ({lo[lang]})", field=f"caps.{lang}")
        hi[lang] = lo[lang] + (hi[lang] - lo[lang]) // step * step  # caps snap down onto the grid
    if sum(lo.values()) > budget:
        raise ConfigError(f"the floors add up to {sum(lo.values())}, more than the budget {budget}", field="floors")
    return lo, hi


def allocate(curves: Mapping[str, Curve], budget: int, *, objective: str = "sum", floors: Mapping[str, int] | None = None,
             caps: Mapping[str, int] | None = None, step: int = 1, concave: bool = True) -> Allocation:
    """The best split of ``budget`` (see module doc). ``concave=False`` forces the exact DP."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}", field="objective")
    langs = list(curves)
    if not langs:
        raise ConfigError("no languages to allocate over", field="laws")
    lo, hi = _bounds(langs, budget, floors, caps, step)
    if concave:
        x = _greedy(curves, budget, objective, lo, hi, step)
        method = "greedy marginal gains (exact for increasing concave laws)"
    else:
        x = _dp(curves, budget, objective, lo, hi, step)
        method = "dynamic programme over the grid (exact)"
    pred = {lang: float(curves[lang](x[lang])) for lang in langs}
    value = _value(pred, objective)
    return Allocation(x, pred, objective, value, method, unspent=budget - sum(x.values()),
                      baseline=uniform_baseline(curves, budget, objective, lo, hi))


def _value(pred: Mapping[str, float], objective: str) -> float:
    return float(sum(pred.values()) if objective == "sum" else min(pred.values()))


def uniform_baseline(curves: Mapping[str, Curve], budget: int, objective: str, lo: Mapping[str, int],
                     hi: Mapping[str, int]) -> dict[str, Any]:
    """An equal split (rounded down), clipped into each language's floor and cap."""
    share = budget // len(curves)
    amounts = {lang: int(min(max(share, lo[lang]), hi[lang])) for lang in curves}
    feasible = sum(amounts.values()) <= budget
    pred = {lang: float(curves[lang](amounts[lang])) for lang in curves}
    return {"amounts": amounts, "predicted": pred, "value": _value(pred, objective) if feasible else None,
            "feasible": feasible}


def _greedy(curves: Mapping[str, Curve], budget: int, objective: str, lo: dict[str, int], hi: dict[str, int],
            step: int) -> dict[str, int]:
    x = dict(lo)
    left = budget - sum(x.values())
    order = {lang: i for i, lang in enumerate(curves)}  # ties go to the earlier language: deterministic

    def gain(lang: str) -> float:
        return curves[lang](x[lang] + step) - curves[lang](x[lang])

    if objective == "min":
        while left >= step:
            open_ = [lang for lang in curves if x[lang] + step <= hi[lang]]
            if not open_:
                break
            lowest = min(curves, key=lambda lang: (curves[lang](x[lang]), order[lang]))
            if x[lowest] + step > hi[lowest]:
                break  # the minimum cannot rise any more: spend the rest for the total
            x[lowest] += step
            left -= step
    heap = [(-gain(lang), order[lang], lang) for lang in curves if x[lang] + step <= hi[lang]]
    heapq.heapify(heap)
    while left >= step and heap:
        _, _, lang = heapq.heappop(heap)
        x[lang] += step
        left -= step
        if x[lang] + step <= hi[lang]:
            heapq.heappush(heap, (-gain(lang), order[lang], lang))
    return x


def _dp(curves: Mapping[str, Curve], budget: int, objective: str, lo: dict[str, int], hi: dict[str, int],
        step: int) -> dict[str, int]:
    """Exact optimum over the grid for any curves; budgets in grid units above the floors."""
    langs = list(curves)
    units = (budget - sum(lo.values())) // step
    if units > DP_LIMIT:
        raise ConfigError(f"the exact search needs at most {DP_LIMIT} steps per language; the budget has {units}: "
                          "pass a larger step", field="step")
    neg = -math.inf
    best = np.full(units + 1, neg)
    best[0] = 0.0 if objective == "sum" else math.inf
    choice: list[np.ndarray] = []
    for lang in langs:
        kmax = min((hi[lang] - lo[lang]) // step, units)
        vals = np.array([curves[lang](lo[lang] + k * step) for k in range(kmax + 1)])
        new = np.full(units + 1, neg)
        pick = np.zeros(units + 1, dtype=int)
        for u in range(units + 1):
            for k in range(min(kmax, u) + 1):
                prev = best[u - k]
                if prev == neg:
                    continue
                v = prev + vals[k] if objective == "sum" else min(prev, vals[k])
                if v > new[u]:
                    new[u], pick[u] = v, k
        best = new
        choice.append(pick)
    u = int(np.argmax(best))  # the best over all spends (spending less can win for decreasing laws)
    x: dict[str, int] = {}
    for lang, pick in zip(reversed(langs), reversed(choice)):
        k = int(pick[u])
        x[lang] = lo[lang] + k * step
        u -= k
    return {lang: x[lang] for lang in langs}


def brute_force(curves: Mapping[str, Curve], budget: int, *, objective: str = "sum",
                floors: Mapping[str, int] | None = None, caps: Mapping[str, int] | None = None,
                step: int = 1) -> tuple[float, dict[str, int]]:
    """Every split on the grid (spending at most the budget); for checking on small grids."""
    langs = list(curves)
    lo, hi = _bounds(langs, budget, floors, caps, step)
    best_v, best_x = -math.inf, {}
    ranges = [range(lo[lang], hi[lang] + 1, step) for lang in langs]
    for combo in itertools.product(*ranges):
        if sum(combo) > budget:
            continue
        pred = {lang: curves[lang](v) for lang, v in zip(langs, combo)}
        v = _value(pred, objective)
        if v > best_v + 1e-12:
            best_v, best_x = v, dict(zip(langs, combo))
    return best_v, best_x


def mixture_config(alloc: Allocation, *, dataset_pattern: str = "polyinstruct-instruct-{lang}",
                   unit: str = "examples", tokenizer: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The allocation as a ``polyinstruct data mix`` config: one component per language whose
    weight is its amount, ``total`` the sum, so the mixture takes exactly those amounts."""
    if unit not in ("examples", "tokens"):
        raise ConfigError(f"unit must be 'examples' or 'tokens', got {unit!r}", field="unit")
    if "{lang}" not in dataset_pattern:
        raise ConfigError("the dataset pattern must contain {lang}", field="dataset_pattern")
    cfg: dict[str, Any] = {
        "strategy": unit, "total": int(sum(alloc.amounts.values())), "seed": seed,
        "datasets": [{"name": dataset_pattern.format(lang=lang), "weight": int(n)}
                     for lang, n in alloc.amounts.items()]}
    if unit == "tokens" and tokenizer:
        cfg["tokenizer"] = tokenizer
    return cfg
