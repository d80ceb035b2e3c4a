"""Agreement of a human evaluation, as a table for the report.

From the store's export rows (``Store.export_rows``), with the maths of
``polyinstruct.judge.agreement`` and ``polyinstruct.stats``:

- acceptability: mean pairwise exact agreement, mean Cohen's kappa, Fleiss' kappa;
- pairwise preference (win/tie/loss from one system's side): agreement with ties
  counting half (Tulu), mean Cohen's kappa, Fleiss' kappa;
- per language: Pearson r between systems' human scores (acceptability rate, and
  win rate with ties half) and the LLM judge's mean score from ``judgments.jsonl``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Hashable, Iterable, Sequence

from polyinstruct.judge.agreement import annotator_agreement, system_level_pearson
from polyinstruct.lang.codes import normalize_code
from polyinstruct.stats import fleiss_kappa


def _fleiss_from_rows(rows: Iterable[dict[str, Any]], key: tuple[str, ...], field: str) -> dict[str, Any]:
    by_item: dict[tuple, list[Hashable]] = defaultdict(list)
    for r in rows:
        by_item[tuple(str(r.get(k)) for k in key)].append(r[field])
    ratings = [v for v in by_item.values() if len(v) >= 2]
    return {"fleiss_kappa": fleiss_kappa(ratings), "items_with_2plus": len(ratings)}


def human_scores(pairwise: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{model, language, score}`` of win (1), tie (0.5) and loss (0) for both systems of each judgment."""
    value = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    out = []
    for r in pairwise:
        v = value[r["preference"]]
        out.append({"model": r["model"], "language": r.get("language"), "score": v})
        out.append({"model": r["baseline"], "language": r.get("language"), "score": 1.0 - v})
    return out


def agreement_table(pairwise: Sequence[dict[str, Any]], acceptability: Sequence[dict[str, Any]],
                    judged: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything ``polyinstruct annotate agreement`` reports (see module doc)."""
    acc = annotator_agreement([dict(r, id=f"{r['id']}|{r['item']}") for r in acceptability], field="score")
    pref = annotator_agreement(pairwise, field="preference")
    out: dict[str, Any] = {
        "n_judgments": len(pairwise),
        "annotators": sorted({r["annotator"] for r in pairwise}),
        "acceptability": {"agreement": acc["agreement"], "cohen_kappa": acc["kappa"], "pairs": len(acc["pairs"]),
                          "fewest_shared_items": acc["fewest_shared_items"], "warning": acc.get("warning"),
                          **_fleiss_from_rows(acceptability, ("item", "model"), "score")},
        "pairwise": {"agreement_ties_half": pref["agreement"], "cohen_kappa": pref["kappa"], "pairs": len(pref["pairs"]),
                     "fewest_shared_items": pref["fewest_shared_items"], "warning": pref.get("warning"),
                     **_fleiss_from_rows(pairwise, ("id", "model"), "preference")},
    }
    if judged is not None:
        out["system_level_pearson"] = {
            "acceptability_rate": system_level_pearson(acceptability, judged),
            "win_rate": system_level_pearson(human_scores(pairwise), judged),
        }
    langs = defaultdict(set)
    for r in pairwise:
        langs[normalize_code(r.get("language"))].update((r["model"], r["baseline"]))
    out["languages"] = {lang: sorted(models) for lang, models in sorted(langs.items())}
    return out


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def to_markdown(table: dict[str, Any]) -> str:
    """The agreement table as markdown (one section of a report)."""
    a, p = table["acceptability"], table["pairwise"]
    lines = [
        "## Human evaluation: agreement",
        "",
        f"{table['n_judgments']} judgments by {len(table['annotators'])} annotators.",
        "",
        "| measure | agreement | Cohen's kappa (mean over annotator pairs) | fewest items a pair shares "
        "| Fleiss' kappa | items with 2+ annotators |",
        "|---|---|---|---|---|---|",
        f"| acceptability | {_fmt(a['agreement'])} | {_fmt(a['cohen_kappa'])} | {a.get('fewest_shared_items', '-')} "
        f"| {_fmt(a['fleiss_kappa'])} | {a['items_with_2plus']} |",
        f"| pairwise preference (ties count half) | {_fmt(p['agreement_ties_half'])} | {_fmt(p['cohen_kappa'])} "
        f"| {p.get('fewest_shared_items', '-')} | {_fmt(p['fleiss_kappa'])} | {p['items_with_2plus']} |",
    ]
    for what, part in (("acceptability", a), ("pairwise preference", p)):
        if part.get("warning"):
            lines += ["", f"**Warning ({what}):** {part['warning']}."]
    spl = table.get("system_level_pearson")
    if spl:
        lines += ["", "### Human vs LLM judge: system-level Pearson per language", "",
                  "| language | systems | r (acceptability rate) | r (win rate, ties half) |", "|---|---|---|---|"]
        for lang in sorted(set(spl["acceptability_rate"]) | set(spl["win_rate"])):
            ar, wr = spl["acceptability_rate"].get(lang, {}), spl["win_rate"].get(lang, {})
            lines.append(f"| {lang} | {ar.get('n_systems', wr.get('n_systems', 0))} | {_fmt(ar.get('pearson'))} "
                         f"| {_fmt(wr.get('pearson'))} |")
        lines += ["", "r needs at least 3 systems with both human and judge scores to mean anything "
                      "(2 systems give +-1); n/a: fewer than 2."]
    return "\n".join(lines) + "\n"
