"""Fit scaling laws to an experiment's size axis: one fit per language, metric and law.

Input is an experiment directory (its ``results.jsonl``) or any JSON-lines file
whose rows carry ``language``, ``size`` and the metric; rows of the base cell
(``size`` 0) belong to every arm. Output: ``scaling.json`` (fits, intervals,
goodness of fit, leave-one-size-out errors, bands), ``scaling.md`` and
``scaling.png`` in the output folder. See docs/analysis.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polyinstruct.analysis.laws import LAWS, FitError, bootstrap_fit
from polyinstruct.errors import DataError
from polyinstruct.fileio import atomic_open, iter_jsonl_numbered, write_json

DEFAULT_LAWS = ("log", "power")


def results_path(source: str | os.PathLike) -> Path:
    p = Path(source)
    if p.is_dir():
        p = p / "results.jsonl"
    if not p.is_file():
        raise DataError("no results here: run the experiment first (or give a results.jsonl)", path=str(p))
    return p


def read_points(source: str | os.PathLike, metric: str, *, arm: str | None = None,
                languages: Sequence[str] | None = None) -> tuple[dict[str, list[tuple[float, float]]], str | None]:
    """``{language: [(size, score), ...]}`` from results rows; returns the arm used too."""
    path = results_path(source)
    rows = list(iter_jsonl_numbered(path, complete_only=False))
    sized = [(n, r) for n, r in rows if r.get("size") is not None]
    if not sized:
        raise DataError("the results have no size axis (no 'size' field): give the experiment `sizes:` "
                        "(docs/analysis.md)", path=str(path))
    arms = sorted({r.get("arm") for _, r in sized if r.get("size") and r.get("arm") is not None})
    if arm is None:
        if len(arms) > 1:
            raise DataError(f"the results hold several trained arms on the size axis ({', '.join(arms)}): "
                            "choose one with --arm", path=str(path))
        arm = arms[0] if arms else None
    elif arm not in arms:
        raise DataError(f"no sized rows for arm {arm!r}; arms with sizes: {', '.join(arms) or 'none'}",
                        path=str(path), field="arm")
    points: dict[str, list[tuple[float, float]]] = {}
    for n, r in sized:
        if r["size"] and arm is not None and r.get("arm") != arm:
            continue
        lang = r.get("language")
        if languages and lang not in languages:
            continue
        if metric not in r:
            known = sorted(k for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            raise DataError(f"no metric {metric!r}; numeric fields here: {', '.join(known)}", path=str(path),
                            line=n, field=metric)
        if r[metric] is None:
            raise DataError(f"metric {metric!r} is empty for {lang} at size {r['size']} (not computed for this "
                            "cell); choose another metric", path=str(path), line=n, field=metric)
        points.setdefault(lang, []).append((float(r["size"]), float(r[metric])))
    if not points:
        raise DataError("no rows left after choosing the arm and languages", path=str(path))
    return points, arm


def scaling_study(source: str | os.PathLike, *, metric: str = "chrf", laws: Sequence[str] = DEFAULT_LAWS,
                  arm: str | None = None, languages: Sequence[str] | None = None, bootstrap: str = "residuals",
                  resamples: int = 500, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Fit every law to every language's points; a law that cannot be fitted is reported, not dropped."""
    for name in laws:
        LAWS.get(name)  # unknown names fail here with a did-you-mean
    points, arm = read_points(source, metric, arm=arm, languages=languages)
    out: dict[str, Any] = {"source": str(results_path(source)), "metric": metric, "arm": arm,
                           "size_unit": "examples per language", "laws": list(laws),
                           "points": {lang: sorted(p) for lang, p in points.items()}, "fits": {}, "best_law": {}}
    for lang, pts in out["points"].items():
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        band_x = np.unique(np.concatenate([np.geomspace(1, max(x.max(), 1) * 4, 40), [0.0]]))
        fits: dict[str, Any] = {}
        for name in laws:
            try:
                fits[name] = bootstrap_fit(name, x, y, method=bootstrap, resamples=resamples, seed=seed,
                                           level=level, band_x=band_x).to_dict()
            except FitError as e:
                fits[name] = {"law": name, "error": str(e)}
        out["fits"][lang] = fits
        scored = [(f["leave_one_size_out"]["mae"], name) for name, f in fits.items()
                  if "error" not in f and f["leave_one_size_out"]["mae"] is not None]
        out["best_law"][lang] = min(scored)[1] if scored else None
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def scaling_table(study: dict[str, Any]) -> str:
    """Markdown: one row per language and law with parameters [interval], R^2 and held-out error."""
    lines = [f"Metric `{study['metric']}`" + (f", arm `{study['arm']}`" if study.get("arm") else "") +
             f"; size = {study['size_unit']}; intervals: {next(iter(next(iter(study['fits'].values())).values())).get('bootstrap', {}).get('method', 'n/a')} bootstrap.",
             "", "| language | law | parameters [95% interval] | R^2 | RMSE | leave-one-size-out MAE | largest-size error |",
             "|---|---|---|---|---|---|---|"]
    for lang, fits in study["fits"].items():
        for name, f in fits.items():
            if "error" in f:
                lines.append(f"| {lang} | {name} | {f['error']} | | | | |")
                continue
            params = ", ".join(
                f"{k}={_fmt(v)} [{_fmt(f['intervals'].get(k, {}).get('low'))}, {_fmt(f['intervals'].get(k, {}).get('high'))}]"
                for k, v in f["params"].items())
            best = " (best)" if study["best_law"].get(lang) == name else ""
            loo = f["leave_one_size_out"]
            lines.append(f"| {lang} | {name}{best} | {params} | {_fmt(f['r2'])} | {_fmt(f['rmse'])} | "
                         f"{_fmt(loo['mae'])} | {_fmt(loo['largest_size_error'])} |")
    return "\n".join(lines) + "\n"


def plot_scaling(study: dict[str, Any], out: str | os.PathLike) -> Path:
    """Points, fitted curves and bootstrap bands, one panel per language (symlog x: size 0 shows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(study["fits"])
    cols = min(3, len(langs))
    rows = (len(langs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, lang in zip(axes.flat, langs):
        pts = np.array(study["points"][lang])
        ax.scatter(pts[:, 0], pts[:, 1], color="black", zorder=3, s=18, label="cells")
        for i, (name, f) in enumerate(study["fits"][lang].items()):
            if "error" in f or not f.get("band"):
                continue
            b = f["band"]
            c = colors[i % len(colors)]
            ax.plot(b["x"], b["fit"], color=c, label=f"{name} (R²={_fmt(f['r2'], 2)})")
            ax.fill_between(b["x"], b["low"], b["high"], color=c, alpha=0.15)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_title(lang)
        ax.set_xlabel(study["size_unit"])
        ax.set_ylabel(study["metric"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(langs):]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return out


def write_scaling(study: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "scaling.json", study)
    with atomic_open(out / "scaling.md") as f:
        f.write("# Scaling laws\n\n" + scaling_table(study))
    return {"json": out / "scaling.json", "table": out / "scaling.md", "plot": plot_scaling(study, out / "scaling.png")}


def curves_from_study(study: dict[str, Any], law: str = "log", languages: Sequence[str] | None = None):
    """``{language: f(x)}`` from a saved study's fitted law, plus whether all are increasing-concave."""
    law_obj = LAWS.get(law)
    curves, concave = {}, True
    for lang, fits in study["fits"].items():
        if languages and lang not in languages:
            continue
        f = fits.get(law)
        if f is None:
            raise DataError(f"the study has no {law!r} fit (laws fitted: {', '.join(study.get('laws', []))})",
                            field="law")
        if "error" in f:
            raise DataError(f"the {law!r} fit for {lang} failed: {f['error']}", field=f"fits.{lang}")
        params = tuple(f["params"][k] for k in law_obj.params)
        concave &= law_obj.increasing_concave(params)
        curves[lang] = (lambda p: (lambda x: float(law_obj.predict([x], p)[0])))(params)
    if languages:
        missing = set(languages) - set(curves)
        if missing:
            raise DataError(f"no fitted law for {', '.join(sorted(missing))}", field="languages")
    return curves, concave
