"""Tables as lists of rows, rendered to Markdown or HTML by the same code path."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from polyinstruct.report import uncertainty as U
from polyinstruct.report.load import ExperimentData
from polyinstruct.stats import Interval

# Titles of the rates scoring writes (any other ``*_rate`` field gets a table under its own name).
RATE_TITLES = {
    "lang_match_rate": "answers in the prompt's language, echoes excluded (%)",
    "lang_mismatch_rate": "answers in another language (%)",
    "lang_undetermined_rate": "answers whose language is undetermined (%)",
    "prompt_echo_rate": "answers that repeat the prompt (%)",
    "lang_match_raw_rate": "answers in the prompt's language by language ID alone, echoes included (%)",
}
# Judge fields per answer (judge/judgments.jsonl): (field, title).
JUDGE_FIELDS = [("score", "judge score per answer (before LID penalty)"),
                ("final_score", "judge score per answer (after LID penalty)")]


@dataclass
class Metric:
    key: str            # results field (rates, chrf) or judgments field (judge)
    kind: str           # "rate" | "chrf" | "judge"
    title: str
    scale: float = 1.0  # 100 for rates shown as %

    def interval(self, data: ExperimentData, cell: str, langs: list[str]) -> Interval | None:
        if self.kind == "rate":
            return U.rate_interval(data, cell, langs, self.key)
        if self.kind == "chrf":
            return U.chrf_interval(data, cell, langs)
        return U.judge_interval(data, cell, langs, self.key)

    def difference(self, data: ExperimentData, a: str, b: str, langs: list[str]) -> Interval | None:
        if self.kind == "rate":
            return U.paired_rate(data, a, b, langs, self.key)
        if self.kind == "chrf":
            return U.paired_chrf(data, a, b, langs)
        return U.paired_judge(data, a, b, langs, self.key)


def metrics(data: ExperimentData) -> list[Metric]:
    """The metrics this experiment has, in report order."""
    out = [Metric(k, "rate", RATE_TITLES.get(k, k.replace("_", " ") + " (%)"), 100.0)
           for k in U.rate_keys(data, list(RATE_TITLES))]
    if any(r.get("chrf") is not None for r in data.results):
        out.append(Metric("chrf", "chrf", "chrF vs reference"))
    if any(data.judgments.values()):
        out += [Metric(f, "judge", t) for f, t in JUDGE_FIELDS]
    return out


def metric_intervals(data: ExperimentData, m: Metric) -> dict[str, dict[str, Interval | None]]:
    """cell -> column label -> interval (columns from ``uncertainty.column_languages``)."""
    cols = U.column_languages(data)
    return {cell: {label: m.interval(data, cell, langs) for label, langs in cols} for cell in data.cells}


def metric_table(data: ExperimentData, m: Metric,
                 intervals: dict[str, dict[str, Interval | None]] | None = None) -> tuple[list[str], list[list[str]]]:
    """Rows = arms, columns = languages then pooled seen/unseen; each cell ``estimate [95% CI]``.

    n goes into the column header when every arm has the same n there, else into each cell.
    """
    ivs = intervals or metric_intervals(data, m)
    cols = U.column_languages(data)
    seen = {r["language"]: r.get("seen", True) for r in data.results}
    header, per_cell_n = ["arm"], {}
    for label, _ in cols:
        ns = {iv.n for c in data.cells if (iv := ivs[c][label]) is not None}
        per_cell_n[label] = len(ns) > 1
        name = f"{label}{'' if seen.get(label, True) else '*'}"
        header.append(f"{name} (n={ns.pop()})" if len(ns) == 1 else name)
    rows = []
    digits = 1
    for cell in data.cells:
        if all(ivs[cell][label] is None for label, _ in cols):
            continue
        rows.append([cell] + [U.fmt_interval(ivs[cell][label], m.scale, digits, per_cell_n[label])
                              for label, _ in cols])
    return header, rows


def arm_pairs(cells: list[str]) -> list[tuple[str, str]]:
    """(a, b) for every later arm a and earlier arm b: differences read ``a - b``."""
    return [(cells[j], cells[i]) for i in range(len(cells)) for j in range(i + 1, len(cells))]


def difference_table(data: ExperimentData, m: Metric) -> tuple[list[str], list[list[str]]]:
    """Paired differences between arms on the same prompts, ``*`` where the 95% interval excludes 0."""
    cols = U.column_languages(data)
    header = ["difference"] + [label for label, _ in cols]
    rows = []
    for a, b in arm_pairs(data.cells):
        cells = [m.difference(data, a, b, langs) for _, langs in cols]
        if all(c is None for c in cells):
            continue
        rows.append([f"{a} - {b}"] + [U.fmt_difference(c, m.scale) for c in cells])
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
    """One row per arm; an arm with a preference stage (stages.json) shows its total, then each stage:
    the SFT run (maybe another arm's, shared), the answers sampled to build its pairs, the preference run."""
    header = ["arm", "tokens seen", "loss tokens", "optimizer steps", "global batch", "wall time (s)", "FLOPs (est.)"]
    rows = []
    for cell in data.cells:
        b = data.budgets.get(cell)
        if not b:
            rows.append([cell, "0", "0", "0", "-", "0", "0 (not trained)"])
            continue
        st = data.stages.get(cell)
        if not st:
            rows.append(_budget_row(cell, b))
            continue
        sft = st.get("sft", {}).get("budget") or {}
        parts = [sft, b]
        rows.append([f"{cell} (total)", f"{data.tokens(cell):,}", f"{data.tokens(cell, 'loss_tokens'):,}",
                     " + ".join(str(x.get("steps", "-")) for x in parts),
                     " / ".join(str(x.get("global_batch", "-")) for x in parts),
                     f"{sum(x.get('wall_time_s', 0) for x in parts):.0f}",
                     f"{sum(x.get('flops_estimate', 0) for x in parts):.2e}"])
        shared = st.get("sft", {}).get("shared_with")
        rows.append(_budget_row(f"{cell}: 1. SFT" + (f" ({shared}'s run)" if shared else ""), sft))
        if st.get("prefs"):
            p = st["prefs"]
            rows.append([f"{cell}: 2. answers sampled for pairs: {p.get('answers', 0):,} answers, "
                         f"{p.get('pairs') if p.get('pairs') is not None else '?'} pairs",
                         f"{p.get('generated_tokens', 0):,} generated", "-", "-", "-", "-", "-"])
        stage = st.get("preference", {}).get("objective") or "preference"
        rows.append(_budget_row(f"{cell}: {3 if st.get('prefs') else 2}. {stage}", b))
    return header, rows


def _budget_row(label: str, b: dict[str, Any]) -> list[str]:
    return [label, f"{b.get('tokens_seen', 0):,}", f"{b.get('loss_tokens', 0):,}", str(b.get("steps", "-")),
            str(b.get("global_batch", "-")), f"{b.get('wall_time_s', 0):.0f}", f"{b.get('flops_estimate', 0):.2e}"]


def data_budget_table(data: ExperimentData) -> tuple[list[str], list[list[str]]]:
    """Examples and tokens of each arm's training data, as the recipe measured them."""
    totals = data.data_budget.get("totals") or {}
    unit = data.data_budget.get("unit", "tokens")
    header = ["arm", "examples", f"{unit} (prompt + response)"]
    trained = set(data.cells)  # the recipe builds every arm (mono-* too); list the ones this grid trained
    # "length" since budget.json names its unit; "tokens" in files written before that
    return header, [[arm, f"{t['examples']:,}", f"{t.get('length', t.get('tokens', 0)):,}"] for arm, t in totals.items()
                    if not trained or arm in trained]


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


_BRACKETS = re.compile(r"\[[^\]]*\]|\([^)]*\)")


def _cell(text: str) -> str:
    """Escaped cell text whose ``[low, high]`` interval (or ``(n=4)``) never breaks inside, so a wide
    table wraps each cell between the estimate and its interval instead of overflowing the page."""
    out, pos = [], 0
    for m in _BRACKETS.finditer(text):
        out += [html.escape(text[pos:m.start()]), html.escape(m.group(0)).replace(" ", "&nbsp;")]
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def to_html(header: list[str], rows: list[list[str]], css_class: str | None = None) -> str:
    th = "".join(f"<th>{_cell(str(h))}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{_cell(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    cls = f" class='{css_class}'" if css_class else ""
    return f"<table{cls}><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"
