"""Benchmark sections of the experiment report: arm x benchmark, the suite average, stderr.

Reads ``cells/CELL/benchmarks/summary.json`` written by ``polyinstruct eval`` for each cell
(an experiment's ``eval.benchmarks``, docs/evaluation.md). Scores are percentages; a
benchmark is the mean over its settings, the average the equal-weight mean over the
benchmarks the suite averages (ToxiGen and TruthfulQA are shown beside it). Per-language
scores (TyDiQA and any task whose subtasks end in a language code) get a table and a chart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def load_benchmarks(root: Path, cells: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for cell in cells:
        p = Path(root) / "cells" / cell / "benchmarks" / "summary.json"
        if p.is_file():
            try:
                out[cell] = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
    return out


def _cell(score: float | None, se: float | None) -> str:
    if score is None:
        return "-"
    return f"{score:.1f}" + (f" ± {se:.1f}" if se is not None else "")


def benchmark_table(summaries: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    benches: list[str] = []
    for s in summaries.values():
        for b in s.get("benchmarks", {}):
            if b not in benches:
                benches.append(b)
    lower = {b for s in summaries.values() for b, v in s.get("benchmarks", {}).items() if not v["higher_is_better"]}
    outside = {b for s in summaries.values() for b, v in s.get("benchmarks", {}).items() if not v["in_average"]}
    header = ["arm"] + [b + (" (lower is better)" if b in lower else "") + (" †" if b in outside else "")
                        for b in benches] + ["average"]
    rows = []
    for cell, s in summaries.items():
        b = s.get("benchmarks", {})
        avg = s.get("average") or {}
        rows.append([cell] + [_cell(b[k]["score"], b[k].get("stderr")) if k in b else "-" for k in benches]
                    + [_cell(avg.get("score"), avg.get("stderr"))])
    return header, rows


def also_table(summaries: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]] | None:
    """arm x "benchmark (metric)": the study's score / the metric reported beside it (None when no
    benchmark reports one)."""
    cols: list[tuple[str, str]] = []
    for s in summaries.values():
        for b, v in s.get("benchmarks", {}).items():
            for m in v.get("also") or {}:
                if (b, m) not in cols:
                    cols.append((b, m))
    if not cols:
        return None
    rows = []
    for cell, s in summaries.items():
        b = s.get("benchmarks", {})
        row = [cell]
        for bench, m in cols:
            v = b.get(bench) or {}
            a = (v.get("also") or {}).get(m)
            row.append("-" if a is None or v.get("score") is None or a.get("score") is None
                       else f"{v['score']:.1f} / {a['score']:.1f}")
        rows.append(row)
    return ["arm"] + [f"{bench} ({m})" for bench, m in cols], rows


_LANG = re.compile(r"_([a-z]{2,3})$")


def per_language(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {cell: {language: score}}} for tasks whose subtasks are languages."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for cell, s in summaries.items():
        for t in s.get("tasks", []):
            subs = t.get("subtasks") or {}
            langs = {m.group(1): v["score"] for k, v in subs.items()
                     if (m := _LANG.search(k)) and v.get("score") is not None}
            if len(langs) >= 2 and len(langs) == len(subs):
                out.setdefault(t["task"], {})[cell] = langs
    return out


def _chart(task: str, data: dict[str, dict[str, float]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    langs = sorted({lang for per in data.values() for lang in per})
    width = 0.8 / max(1, len(data))
    fig, ax = plt.subplots(figsize=(max(4, len(langs) * 0.7 + 2), 3))
    for i, (cell, per) in enumerate(data.items()):
        ax.bar([j + i * width for j in range(len(langs))], [per.get(lang, 0) for lang in langs], width, label=cell)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(langs))], langs)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (%)")
    ax.set_title(task)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def benchmark_sections(data: Any, out_dir: Path) -> list[tuple[str, str, list, list | None, Path | None]]:
    summaries = load_benchmarks(data.root, list(data.cells))
    if not summaries:
        return []
    header, rows = benchmark_table(summaries)
    note = ("polyinstruct eval per arm (docs/evaluation.md): score ± stderr in %, a benchmark = mean over its "
            "settings, average = equal-weight mean over the averaged benchmarks; † = reported beside the "
            "average, as the study does.")
    limits = {s.get("limit") for s in summaries.values()}
    if limits != {None}:
        note += f" Run with --limit {', '.join(str(x) for x in sorted(limits, key=str))}: not the benchmarks' scores."
    out: list = [("Benchmarks", note, header, rows, None)]
    also = also_table(summaries)
    if also is not None:
        out.append(("Benchmarks: strict metrics beside the study's", (
            "The studies' exact match ignores punctuation (\"-5\" counts for 5, \"3.50\" for 350, an answer of only "
            "brackets for any BBH dyck_languages target); exact_match_strict compares numbers as numbers and keeps "
            "brackets (docs/evaluation.md). Study metric / strict, in %."), also[0], also[1], None))
    for task, per in sorted(per_language(summaries).items()):
        langs = sorted({lang for p in per.values() for lang in p})
        rows = [[cell] + [f"{p[lang]:.1f}" if lang in p else "-" for lang in langs] for cell, p in per.items()]
        img = _chart(task, per, Path(out_dir) / f"bench_{task}.png")
        out.append((f"{task}: per language", "Score per language (%).", ["arm"] + langs, rows, img))
    return out
