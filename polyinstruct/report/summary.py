"""The report's opening: what the intervals say, and where the answers that missed the prompt's
language went (echoes, another language, undetermined), in words and numbers a reader can quote.

``answer_categories`` is also what README.md's quickstart statement is checked against
(tests/test_readme_claims.py): the README states the quickstart's numbers, and the numbers come
from this function on a quickstart's ``results.jsonl``.
"""

from __future__ import annotations

from typing import Any

from polyinstruct.report import uncertainty as U
from polyinstruct.report.load import ExperimentData

CATEGORIES = ("in language", "another language", "echo of the prompt", "undetermined")


def _category(item: dict[str, Any]) -> str | None:
    if "lang_match" not in item:
        return None
    if item["lang_match"]:
        return CATEGORIES[0]
    if item.get("prompt_echo"):
        return CATEGORIES[2]
    if item.get("lang_undetermined"):
        return CATEGORIES[3]
    return CATEGORIES[1]  # not in language, no echo, a language found: another one (lang_mismatch)


def answer_categories(results: list[dict[str, Any]], cell: str, languages: list[str]) -> dict[str, Any]:
    """Share (%) of ``cell``'s answers to prompts in ``languages`` in each category, and n.

    An echo (the answer mostly repeats the prompt) counts as an echo whatever its language; an
    answer in another language is one language ID names definitely; undetermined: no language
    found. The four shares add up to 100."""
    counts = dict.fromkeys(CATEGORIES, 0)
    n = 0
    for r in results:
        if r.get("cell") != cell or r.get("language") not in languages:
            continue
        for item in r.get("items") or []:
            cat = _category(item)
            if cat is not None:
                counts[cat] += 1
                n += 1
    return {"n": n, **{k: (100.0 * v / n if n else None) for k, v in counts.items()}}


def categories_table(data: ExperimentData) -> tuple[list[str], list[list[str]]]:
    """Per arm and pooled column (seen, unseen): the answers' categories in %."""
    cols = [(label, langs) for label, langs in U.column_languages(data) if label in (U.SEEN, U.UNSEEN)]
    if not cols:
        cols = [(lang, [lang]) for lang in data.languages]
    header = ["arm", "languages", "n", *CATEGORIES]
    rows = []
    for cell in data.cells:
        for label, langs in cols:
            c = answer_categories(data.results, cell, langs)
            if c["n"]:
                rows.append([cell, label, str(c["n"]), *(f"{c[k]:.1f}" for k in CATEGORIES)])
    return header, rows


def interval_readings(data: ExperimentData, metric: Any) -> list[list[str]]:
    """One row per pair of arms and pooled column: the paired difference [95% interval] and what
    it says (which arm it favours, or that these prompts cannot tell them apart)."""
    cols = [(label, langs) for label, langs in U.column_languages(data) if label in (U.SEEN, U.UNSEEN)]
    from polyinstruct.report.tables import arm_pairs

    out = []
    for a, b in arm_pairs(data.cells):
        for label, langs in cols:
            iv = metric.difference(data, a, b, langs)
            if iv is None or iv.estimate is None:
                continue
            d = U.fmt_difference(iv, metric.scale).replace(f" {U.MARK}", "")
            where = "seen" if label == U.SEEN else "unseen"
            if iv.excludes_zero:
                lead, trail = (a, b) if iv.estimate > 0 else (b, a)
                verdict = f"{lead} is ahead of {trail} (the interval excludes 0)"
            else:
                verdict = f"cannot tell {a} and {b} apart on these prompts (the interval includes 0)"
            out.append([f"{a} - {b}", where, d, verdict])
    return out


def summary_sections(data: ExperimentData) -> list[tuple[str, str, list, list | None, None]]:
    """The report's first sections (title, note, header, rows, image)."""
    from polyinstruct.report.tables import metrics

    ms = [m for m in metrics(data) if m.key == "lang_match_rate"] or metrics(data)[:1]
    out: list = []
    if ms:
        rows = interval_readings(data, ms[0])
        if rows:
            out.append(("Summary: what the intervals say",
                        f"Paired differences of the headline metric ({ms[0].title}) between arms, pooled over the "
                        "seen and the unseen languages, with 95% bootstrap intervals (the tables below give every "
                        "language). An interval that includes 0 means these prompts cannot say which arm is "
                        "better.", ["difference", "languages", "estimate [95% interval]", "what it says"], rows,
                        None))
    header, rows = categories_table(data)
    if rows:
        out.append(("Where the answers went",
                    "Each arm's answers, pooled over the seen and the unseen languages, in %: in the prompt's "
                    "language (the headline), in another language by language ID, an echo of the prompt "
                    "(counted as such whatever its language), or undetermined (no language found: too short, "
                    "code, markup). The four add up to 100.", header, rows, None))
    return out
