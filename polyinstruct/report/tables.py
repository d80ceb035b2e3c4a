"""Tables as lists of rows, rendered to Markdown or HTML by the same code path."""

from __future__ import annotations

import html
from typing import Any

from polyinstruct.report.load import ExperimentData

# Metrics shown in the per-language table, in order: (key in results.jsonl, title, format).
METRICS = [
    ("lang_match_rate", "answers in the prompt's language (%)", lambda v: f"{100 * v:.1f}"),
    ("prompt_echo_rate", "answers that repeat the prompt (%)", lambda v: f"{100 * v:.1f}"),
    ("chrf", "chrF vs reference", lambda v: f"{v:.1f}"),
    ("judge_total", "judge total (before LID penalty)", lambda v: f"{v:.0f}"),
    ("judge_total_penalized", "judge total (after LID penalty)", lambda v: f"{v:.0f}"),
]


def _cell_value(data: ExperimentData, cell: str, lang: str, key: str) -> Any:
    for r in data.results:
        if r["cell"] == cell and r["language"] == lang:
            return r.get(key)
    return None


def metric_table(data: ExperimentData, key: str, fmt) -> tuple[list[str], list[list[str]]]:
    """Rows = arms, columns = languages (+ mean over seen and unseen), seed-1 style."""
    langs = data.languages
    seen = {r["language"]: r.get("seen", True) for r in data.results}
    header = ["arm"] + [f"{lang}{'' if seen.get(lang, True) else '*'}" for lang in langs] + ["mean seen", "mean unseen"]
    rows = []
    for cell in data.cells:
        vals = [_cell_value(data, cell, lang, key) for lang in langs]
        if all(v is None for v in vals):
            continue
        seen_vals = [v for lang, v in zip(langs, vals) if v is not None and seen.get(lang, True)]
        unseen_vals = [v for lang, v in zip(langs, vals) if v is not None and not seen.get(lang, True)]
        row = [cell] + ["-" if v is None else fmt(v) for v in vals]
        row.append(fmt(sum(seen_vals) / len(seen_vals)) if seen_vals else "-")
        row.append(fmt(sum(unseen_vals) / len(unseen_vals)) if unseen_vals else "-")
        rows.append(row)
    return header, rows


def robustness_table(data: ExperimentData) -> tuple[list[str], list[list[str]]]:
    """Language robustness: judge total before minus after the LID penalty, mean over seen languages."""
    header = ["arm", "mean drop (seen languages)", "max possible per language"]
    rows = []
    for cell in data.cells:
        drops, maxes = [], []
        for r in data.results:
            if r["cell"] == cell and r.get("seen", True) and r.get("judge_total") is not None:
                drops.append(r["judge_total"] - r["judge_total_penalized"])
                maxes.append(r.get("judge_max") or 0)
        if drops:
            rows.append([cell, f"{sum(drops) / len(drops):.2f}", f"{max(maxes):.0f}"])
    return header, rows


def budget_table(data: ExperimentData) -> tuple[list[str], list[list[str]]]:
    header = ["arm", "tokens seen", "loss tokens", "optimizer steps", "global batch", "wall time (s)", "FLOPs (est.)"]
    rows = []
    for cell in data.cells:
        b = data.budgets.get(cell)
        if not b:
            rows.append([cell, "0", "0", "0", "-", "0", "0 (not trained)"])
            continue
        rows.append([cell, f"{b.get('tokens_seen', 0):,}", f"{b.get('loss_tokens', 0):,}", str(b.get("steps", "-")),
                     str(b.get("global_batch", "-")), f"{b.get('wall_time_s', 0):.0f}",
                     f"{b.get('flops_estimate', 0):.2e}"])
    return header, rows


def data_budget_table(data: ExperimentData) -> tuple[list[str], list[list[str]]]:
    """Examples and tokens of each arm's training data, as the recipe measured them."""
    totals = data.data_budget.get("totals") or {}
    unit = data.data_budget.get("unit", "tokens")
    header = ["arm", "examples", f"{unit} (prompt + response)"]
    # "length" since budget.json names its unit; "tokens" in files written before that
    return header, [[arm, f"{t['examples']:,}", f"{t.get('length', t.get('tokens', 0)):,}"] for arm, t in totals.items()]


def samples(data: ExperimentData, per_language: int = 1, max_chars: int = 400) -> list[dict[str, Any]]:
    """A few prompts per language with every arm's answer side by side."""
    out = []
    cells = data.cells
    if not cells:
        return out
    first = data.predictions.get(cells[0], {})
    by_lang: dict[str, list[str]] = {}
    for key, row in first.items():
        by_lang.setdefault(str(row.get("language")), []).append(key)
    for lang in data.languages:
        for key in sorted(by_lang.get(lang, []))[:per_language]:
            row = first[key]
            prompt = row["messages"][-1]["content"] if row.get("messages") else ""
            answers = {c: (data.predictions.get(c, {}).get(key, {}).get("response") or "")[:max_chars] for c in cells}
            out.append({"language": lang, "id": row["id"], "prompt": prompt, "answers": answers,
                        "reference": (row.get("reference") or "")[:max_chars]})
    return out


def to_markdown(header: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_html(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"
