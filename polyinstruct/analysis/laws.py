"""Data-scaling laws: score as a function of data size, fitted by least squares.

Every law here is *linear in all but at most one parameter*: for a fixed value of
its one nonlinear parameter the best remaining parameters are an ordinary least
squares solve, so a fit profiles that parameter with scipy's bounded scalar
minimiser over a log-spaced bracket found by a grid. This gives the global least
squares optimum of a one-dimensional problem instead of a local one from a
guessed start. Laws are registered in ``LAWS`` (docs/extending.md, "Scaling laws");
the study's law and its alternatives are described in docs/analysis.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from polyinstruct.errors import PolyinstructError
from polyinstruct.registry import Registry


class FitError(PolyinstructError, ValueError):
    """Data a law cannot be fitted to (too few sizes, non-finite values...)."""


@dataclass(frozen=True)
class Law:
    """``score = theta_lin . basis(x, q)`` with one optional nonlinear parameter ``q``.

    ``params`` names the reported parameters in order; ``to_params(lin, q)`` maps the
    linear coefficients and ``q`` onto them and ``from_params`` back.
    """

    name: str
    formula: str
    params: tuple[str, ...]
    basis: Callable[[np.ndarray, float | None], np.ndarray]
    to_params: Callable[[np.ndarray, float | None], tuple[float, ...]]
    from_params: Callable[[Sequence[float]], tuple[np.ndarray, float | None]]
    q_range: Callable[[np.ndarray], tuple[float, float]] | None = None
    description: str = ""
    concave_when: Callable[[Sequence[float]], bool] | None = None  # None: never assumed concave

    def predict(self, x: Sequence[float] | np.ndarray | float, params: Sequence[float]) -> np.ndarray:
        lin, q = self.from_params(params)
        return self.basis(np.asarray(x, dtype=float).reshape(-1), q) @ lin

    def increasing_concave(self, params: Sequence[float]) -> bool:
        """True when the fitted curve rises with diminishing returns on x >= 0 (allocation's condition)."""
        return bool(self.concave_when(params)) if self.concave_when else False


LAWS: Registry[Law] = Registry("scaling law")


def _log_basis(x: np.ndarray, c: float | None) -> np.ndarray:
    return np.column_stack([np.ones_like(x), np.log(x + c)])


# The study's law (docs/analysis.md): S(x) = alpha * log(gamma * x + beta). It is fitted as
# a + b * ln(x + c) (the same family: alpha = b, gamma = exp(a / b), beta = c * gamma), which
# keeps the linear part separable; both parametrisations are reported.
LAWS.register("log", Law(
    name="log",
    formula="score = a + b * ln(x + c)   (= alpha * ln(gamma * x + beta))",
    params=("a", "b", "c"),
    basis=_log_basis,
    to_params=lambda lin, c: (float(lin[0]), float(lin[1]), float(c)),
    from_params=lambda p: (np.array([p[0], p[1]], dtype=float), float(p[2])),
    q_range=lambda x: (1e-3, 1e3 * max(float(x.max()), 1.0)),
    description="the cross-lingual study's logarithmic law in data size (x = 0 allowed through c > 0)",
    concave_when=lambda p: p[1] > 0,
))

LAWS.register("log1p", Law(
    name="log1p",
    formula="score = a + b * ln(1 + x)",
    params=("a", "b"),
    basis=lambda x, _: np.column_stack([np.ones_like(x), np.log1p(x)]),
    to_params=lambda lin, _: (float(lin[0]), float(lin[1])),
    from_params=lambda p: (np.array([p[0], p[1]], dtype=float), None),
    description="the logarithmic law with its offset fixed at 1 (two parameters: for grids with few sizes)",
    concave_when=lambda p: p[1] > 0,
))

LAWS.register("power", Law(
    name="power",
    formula="score = e - k * (1 + x) ** (-p)",
    params=("e", "k", "p"),
    basis=lambda x, p: np.column_stack([np.ones_like(x), -np.power(1.0 + x, -p)]),
    to_params=lambda lin, p: (float(lin[0]), float(lin[1]), float(p)),
    from_params=lambda prm: (np.array([prm[0], prm[1]], dtype=float), float(prm[2])),
    q_range=lambda x: (1e-3, 5.0),
    description="saturating power law: approaches the ceiling e as data grows",
    concave_when=lambda p: p[1] > 0 and p[2] > 0,
))


def alpha_gamma_beta(params: Sequence[float]) -> dict[str, float] | None:
    """The log law's fitted ``(a, b, c)`` in the study's ``alpha * ln(gamma * x + beta)`` form."""
    a, b, c = params
    if b == 0 or abs(a / b) > 700:
        return None
    gamma = math.exp(a / b)
    return {"alpha": b, "gamma": gamma, "beta": c * gamma}


# ---- fitting -----------------------------------------------------------------------------------

@dataclass
class Fit:
    law: str
    params: tuple[float, ...]
    sse: float
    r2: float | None
    rmse: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.law, "params": dict(zip(LAWS.get(self.law).params, self.params)),
                "sse": self.sse, "r2": self.r2, "rmse": self.rmse, "n": self.n}


def _check_xy(x: Sequence[float], y: Sequence[float], law: Law) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise FitError(f"sizes and scores must be two lists of the same length (got {xa.shape} and {ya.shape})")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise FitError("sizes and scores must be finite numbers")
    if np.any(xa < 0):
        raise FitError("data sizes cannot be negative")
    if len(np.unique(xa)) < len(law.params):
        raise FitError(f"law {law.name!r} has {len(law.params)} parameters but the data has only "
                       f"{len(np.unique(xa))} distinct sizes; add sizes or use a law with fewer parameters")
    return xa, ya


def _solve(law: Law, x: np.ndarray, y: np.ndarray, q: float | None) -> tuple[np.ndarray, float]:
    A = law.basis(x, q)
    lin, *_ = np.linalg.lstsq(A, y, rcond=None)
    r = y - A @ lin
    return lin, float(r @ r)


def _grid_sse(law: Law, x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Least-squares SSE at every grid value of ``q``; closed form for ``[1, z]`` bases (all built-in
    laws: simple regression on centred values), one solve per value otherwise."""
    first = law.basis(x, float(grid[0]))
    if first.shape[1] != 2 or not np.all(first[:, 0] == 1.0):
        return np.array([_solve(law, x, y, g)[1] for g in grid])
    z = np.stack([law.basis(x, float(g))[:, 1] for g in grid])  # (G, n)
    zc = z - z.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    szz = (zc * zc).sum(axis=1)
    szy = zc @ yc
    syy = float(yc @ yc)
    with np.errstate(divide="ignore", invalid="ignore"):
        sse = np.where(szz > 1e-300, syy - szy * szy / szz, syy)
    return np.maximum(sse, 0.0)


def fit_law(law_name: str, x: Sequence[float], y: Sequence[float]) -> Fit:
    """Least-squares fit of one law; the nonlinear parameter (if any) is profiled globally."""
    law = LAWS.get(law_name)
    xa, ya = _check_xy(x, y, law)
    if law.q_range is None:
        lin, sse = _solve(law, xa, ya, None)
        q = None
    else:
        from scipy.optimize import minimize_scalar

        lo, hi = law.q_range(xa)
        grid = np.geomspace(lo, hi, 61)
        sses = _grid_sse(law, xa, ya, grid)
        i = int(np.argmin(sses))
        a, b = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
        best_q, best = float(grid[i]), float(sses[i])
        if b > a:
            res = minimize_scalar(lambda t: _solve(law, xa, ya, math.exp(t))[1], bounds=(a, b), method="bounded",
                                  options={"xatol": 1e-9})
            if res.fun < best:
                best_q, best = float(math.exp(res.x)), float(res.fun)
        q = best_q
        lin, sse = _solve(law, xa, ya, q)
    params = law.to_params(lin, q)
    sst = float(((ya - ya.mean()) ** 2).sum())
    return Fit(law_name, params, sse, (1.0 - sse / sst) if sst > 0 else None, math.sqrt(sse / len(ya)), len(ya))


@dataclass
class FitReport:
    """A fit with bootstrap intervals and leave-one-size-out extrapolation error."""

    fit: Fit
    intervals: dict[str, dict[str, float | None]] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)
    loo: dict[str, Any] = field(default_factory=dict)
    band: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = self.fit.to_dict()
        if self.fit.law == "log":
            d["study_form"] = alpha_gamma_beta(self.fit.params)
        return {**d, "intervals": self.intervals, "bootstrap": self.bootstrap, "leave_one_size_out": self.loo,
                "band": self.band}


def bootstrap_fit(law_name: str, x: Sequence[float], y: Sequence[float], *, method: str = "residuals",
                  resamples: int = 500, seed: int = 0, level: float = 0.95,
                  band_x: Sequence[float] | None = None) -> FitReport:
    """Fit, then refit on bootstrap replicates for parameter intervals and a prediction band.

    ``method="residuals"`` adds resampled residuals to the fitted curve (the sizes stay
    fixed: right for a grid with few sizes); ``"cells"`` resamples the (size, score) cells
    themselves, discarding replicates with fewer distinct sizes than parameters (the
    count of discarded replicates is reported).
    """
    from polyinstruct.stats import interval_from_replicates

    law = LAWS.get(law_name)
    xa, ya = _check_xy(x, y, law)
    fit = fit_law(law_name, xa, ya)
    if method not in ("residuals", "cells"):
        raise FitError(f"bootstrap method must be 'residuals' or 'cells', got {method!r}")
    rng = np.random.default_rng(seed)
    yhat = law.predict(xa, fit.params)
    resid = ya - yhat
    # Residuals shrink by the parameters used up; rescale so replicates carry the data's noise.
    scale = math.sqrt(len(ya) / (len(ya) - len(law.params))) if len(ya) > len(law.params) else 1.0
    bx = np.asarray(band_x if band_x is not None else np.linspace(0, xa.max(), 50), dtype=float)
    reps, curves, skipped = [], [], 0
    for _ in range(int(resamples)):
        if method == "residuals":
            xs, ys = xa, yhat + scale * rng.choice(resid, size=len(resid), replace=True)
        else:
            idx = rng.integers(0, len(xa), size=len(xa))
            xs, ys = xa[idx], ya[idx]
            if len(np.unique(xs)) < len(law.params):
                skipped += 1
                continue
        f = fit_law(law_name, xs, ys)
        reps.append(f.params)
        curves.append(law.predict(bx, f.params))
    rep = FitReport(fit)
    rep.bootstrap = {"method": method, "resamples": int(resamples), "used": len(reps), "skipped": skipped,
                     "seed": seed, "level": level}
    if reps:
        arr = np.array(reps)
        for j, name in enumerate(law.params):
            iv = interval_from_replicates(fit.params[j], arr[:, j], level=level, seed=seed)
            rep.intervals[name] = {"estimate": iv.estimate, "low": iv.low, "high": iv.high}
        cv = np.array(curves)
        alpha = (1 - level) / 2
        rep.band = {"x": bx.tolist(), "fit": law.predict(bx, fit.params).tolist(),
                    "low": np.quantile(cv, alpha, axis=0).tolist(), "high": np.quantile(cv, 1 - alpha, axis=0).tolist()}
    rep.loo = leave_one_size_out(law_name, xa, ya)
    return rep


def leave_one_size_out(law_name: str, x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Refit without each size in turn and predict it: does the law extrapolate/interpolate?

    Reports per held-out size the prediction and its error, the mean absolute error,
    and the error on the largest size alone (pure extrapolation, the use that matters
    for a budget). Sizes whose removal leaves too few distinct sizes are not evaluated.
    """
    law = LAWS.get(law_name)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    sizes = sorted(set(xa.tolist()))
    per = []
    for s in sizes:
        keep = xa != s
        if len(np.unique(xa[keep])) < len(law.params):
            continue
        f = fit_law(law_name, xa[keep], ya[keep])
        pred = float(law.predict([s], f.params)[0])
        actual = float(ya[~keep].mean())
        per.append({"size": s, "predicted": pred, "actual": actual, "error": pred - actual})
    out: dict[str, Any] = {"per_size": per, "mae": None, "largest_size_error": None}
    if per:
        out["mae"] = float(np.mean([abs(p["error"]) for p in per]))
        if per[-1]["size"] == sizes[-1]:
            out["largest_size_error"] = per[-1]["error"]
    return out
