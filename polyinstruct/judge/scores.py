"""From judgments to the numbers a paper reports (seed 1 section "Evaluation").

- ``apply_language_penalty``: final = judge score x [lang(answer) == lang(question)],
  study 1's rule (docs/judging.md). ``language_policy="strict"`` (default): as study 1,
  the identifier's top label decides for every answer with a letter; an answer without
  letters (code, numbers, emoji) is undetermined and scores 0, like a definite mismatch.
  ``"lenient"``: the identifier's own policy (short or unsure answers are ``und``), and an
  undetermined answer keeps its score. Either way the row records
  ``language_policy`` and undetermined rows are counted apart.
- ``summarize``: totals per model x language before/after the penalty (0..3N for
  the 1-3 scale) and language robustness = mean over seen languages of
  (total before - total after). Unparsed or failed judge replies leave a cell's totals
  over fewer items, so each cell also has the mean per scored item, the total scaled to
  all n items (mean x n) and ``unparsed_rate`` (share of items without a score).
- ``pairwise_summary``: win rates with ties counted half, position bias and the
  fraction of inconsistent verdicts when both orders were asked.
- ``language_consistency``: the LID-only score (no judge needed).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

from polyinstruct.lang.codes import normalize_code, same_language


# Pairs a statistical identifier confuses on short text (see docs/judging.md).
CLOSE_PAIRS = frozenset(frozenset(p) for p in [
    ("no", "da"), ("no", "sv"), ("da", "sv"), ("bg", "ru"), ("bg", "mk"), ("ru", "uk"), ("ru", "be"),
    ("sr", "hr"), ("hr", "bs"), ("sr", "bs"), ("cs", "sk"), ("id", "ms"), ("hi", "ur"), ("es", "gl"),
    ("pt", "gl"), ("es", "ca"), ("zh", "wuu"), ("zh", "yue"), ("zh", "ja")])


LANGUAGE_POLICIES = ("strict", "lenient")


def check_language_policy(policy: str) -> str:
    """``policy`` if it is one of ``LANGUAGE_POLICIES``, else a ConfigError with a suggestion."""
    if policy not in LANGUAGE_POLICIES:
        from polyinstruct.errors import ConfigError
        from polyinstruct.registry import suggest

        raise ConfigError(f"unknown language policy {policy!r}.{suggest(policy, list(LANGUAGE_POLICIES))} "
                          f"Known: {', '.join(LANGUAGE_POLICIES)}", field="language_policy")
    return policy


def penalized(score: float | None, match: bool | None, policy: str = "strict") -> float | None:
    """Study 1's final score: ``score`` x [answer in the question's language].

    ``match`` is ``same_language``'s verdict (None = undetermined): strict zeroes it,
    lenient keeps the score.
    """
    if score is None:
        return None
    if match is True or (match is None and check_language_policy(policy) == "lenient"):
        return float(score)
    check_language_policy(policy)
    return 0.0


def study1_identifier(identifier: Any) -> Any:
    """``identifier`` under study 1's rule: OpenLID's top label always names a language, so any
    answer with a letter gets the top label, however short or unsure ("Det er Oslo." -> no);
    only one without letters (code, numbers, emoji) is ``und``. An identifier without
    ``with_policy`` (a test double) is used as it is."""
    return identifier.with_policy(top_label=True) if hasattr(identifier, "with_policy") else identifier


def apply_language_penalty(rows: list[dict[str, Any]], answers: list[str], identifier: Any, *,
                           language_policy: str = "strict",
                           lenient_close_pairs: bool = False) -> list[dict[str, Any]]:
    """Add ``lid_language``, ``lid_confidence``, ``language_match``, ``language_policy`` and
    ``final_score`` to each row.

    ``language_policy``: ``strict`` (study 1, default) identifies as study 1 did, by the top
    label (``study1_identifier``: ``und`` only for answers without letters, which score 0);
    ``lenient`` uses the identifier's own policy (short or unsure answers ``und``) and
    zeroes only a definite mismatch.
    ``lenient_close_pairs``: a mismatch between two languages of ``CLOSE_PAIRS`` (e.g.
    Norwegian expected, Danish detected) counts as undetermined instead of wrong, for
    identifiers that cannot separate them reliably on short text (under the strict
    policy such an answer is still zeroed, as undetermined).
    """
    check_language_policy(language_policy)
    ident = study1_identifier(identifier) if language_policy == "strict" else identifier
    ids = ident.identify(answers)
    for row, (code, conf) in zip(rows, ids):
        match = same_language(code, row.get("language"))
        if match is False and lenient_close_pairs and \
                frozenset((code, normalize_code(row.get("language")))) in CLOSE_PAIRS:
            match = None
            row["language_note"] = "close pair: treated as undetermined"
        row["lid_language"], row["lid_confidence"] = code, round(float(conf), 4)
        row["language_match"] = match
        row["language_policy"] = language_policy
        row["final_score"] = penalized(row.get("score"), match, language_policy)
    return rows


def summarize(judgments: Iterable[dict[str, Any]], seen_languages: Iterable[str] | None = None) -> dict[str, Any]:
    """Totals per model and language before/after the language penalty, and robustness.

    ``seen_languages``: languages averaged for robustness (seed 1: the six training
    languages); default all languages present. Unparsed judgments are excluded from
    totals and counted; ``max_total`` = scale high x items.
    """
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for r in judgments:
        key = (str(r.get("model")), normalize_code(r.get("language")))
        c = cells.setdefault(key, {"n": 0, "n_scored": 0, "n_unparsed": 0, "n_errors": 0, "total_before": 0.0,
                                   "total_after": 0.0, "n_wrong_language": 0, "n_undetermined": 0,
                                   "language_policy": None, "scale_high": None})
        c["n"] += 1
        if r.get("language_policy"):
            pol = c["language_policy"]
            c["language_policy"] = r["language_policy"] if pol in (None, r["language_policy"]) else "mixed"
        if r.get("scale"):
            c["scale_high"] = r["scale"][1]
        if r.get("error"):
            c["n_errors"] += 1
        if r.get("score") is None:
            c["n_unparsed"] += 0 if r.get("error") else 1
            continue
        c["n_scored"] += 1
        c["total_before"] += float(r["score"])
        final = r.get("final_score", r["score"])
        c["total_after"] += float(final)
        if r.get("language_match") is False:
            c["n_wrong_language"] += 1
        elif r.get("language_match") is None:
            c["n_undetermined"] += 1
    models: dict[str, Any] = defaultdict(lambda: {"languages": {}})
    for (model, lang), c in sorted(cells.items()):
        c["max_total"] = (c.pop("scale_high") or 0) * c["n"]
        c["mean_before"] = round(c["total_before"] / c["n_scored"], 4) if c["n_scored"] else None
        c["mean_after"] = round(c["total_after"] / c["n_scored"], 4) if c["n_scored"] else None
        # A cell whose replies did not all parse has its totals over fewer items: the mean per
        # item, and the total scaled to all n items, compare fairly across parse rates.
        c["total_before_scaled"] = round(c["total_before"] / c["n_scored"] * c["n"], 4) if c["n_scored"] else None
        c["total_after_scaled"] = round(c["total_after"] / c["n_scored"] * c["n"], 4) if c["n_scored"] else None
        c["unparsed_rate"] = round((c["n"] - c["n_scored"]) / c["n"], 4) if c["n"] else None
        c["drop"] = c["total_before"] - c["total_after"]
        models[model]["languages"][lang] = c
    seen = [normalize_code(x) for x in seen_languages] if seen_languages is not None else None
    for model, m in models.items():
        langs = seen if seen is not None else sorted(m["languages"])
        drops = [m["languages"][lg]["drop"] for lg in langs if lg in m["languages"]]
        m["robustness"] = round(sum(drops) / len(drops), 4) if drops else None
        m["robustness_languages"] = [lg for lg in langs if lg in m["languages"]]
        m["total_before"] = sum(c["total_before"] for c in m["languages"].values())
        m["total_after"] = sum(c["total_after"] for c in m["languages"].values())
    return {"models": dict(models), "seen_languages": seen}


def pairwise_summary(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Win rate per model (and per language): (wins + ties/2) / parsed pairs."""
    def empty() -> dict[str, Any]:
        return {"n": 0, "wins": 0, "losses": 0, "ties": 0, "unparsed": 0, "both_orders": 0, "inconsistent": 0,
                "asked": 0, "chose_first": 0}

    per_model: dict[str, dict[str, Any]] = defaultdict(empty)
    per_cell: dict[tuple[str, str], dict[str, Any]] = defaultdict(empty)
    for r in rows:
        for c in (per_model[str(r.get("model"))], per_cell[(str(r.get("model")), normalize_code(r.get("language")))]):
            c["n"] += 1
            v = r.get("verdict")
            if v is None:
                c["unparsed"] += 1
            else:
                c[{"win": "wins", "loss": "losses", "tie": "ties"}[v]] += 1
            if r.get("inconsistent") is not None:
                c["both_orders"] += 1
                c["inconsistent"] += int(bool(r["inconsistent"]))
            for outcome, cf in zip(r.get("outcomes") or [], r.get("candidate_first") or []):
                if outcome in ("win", "loss"):
                    c["asked"] += 1
                    c["chose_first"] += int((outcome == "win") == cf)
    def finish(c: dict[str, Any]) -> dict[str, Any]:
        parsed = c["wins"] + c["losses"] + c["ties"]
        c["win_rate"] = round((c["wins"] + 0.5 * c["ties"]) / parsed, 4) if parsed else None
        c["inconsistent_fraction"] = round(c["inconsistent"] / c["both_orders"], 4) if c["both_orders"] else None
        c["first_position_rate"] = round(c["chose_first"] / c["asked"], 4) if c["asked"] else None
        return c
    out: dict[str, Any] = {"models": {}}
    for model, c in sorted(per_model.items()):
        out["models"][model] = finish(c)
        out["models"][model]["languages"] = {lg: finish(cc) for (m, lg), cc in sorted(per_cell.items()) if m == model}
    return out


def language_consistency(predictions: Iterable[dict[str, Any]], identifier: Any) -> dict[str, Any]:
    """Share of answers in the prompt's language, per model and language; needs no judge.

    ``rate`` counts only determined answers; ``undetermined`` are reported apart.
    """
    preds = list(predictions)
    ids = identifier.identify([p.get("response") or "" for p in preds])
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for p, (code, _conf) in zip(preds, ids):
        key = (str(p.get("model")), normalize_code(p.get("language")))
        c = cells.setdefault(key, {"n": 0, "match": 0, "mismatch": 0, "undetermined": 0, "detected": defaultdict(int)})
        c["n"] += 1
        c["detected"][code] += 1
        m = same_language(code, p.get("language"))
        c["match" if m else "undetermined" if m is None else "mismatch"] += 1
    out: dict[str, Any] = {"models": {}}
    for (model, lang), c in sorted(cells.items()):
        det = c["match"] + c["mismatch"]
        c["rate"] = round(c["match"] / det, 4) if det else None
        c["detected"] = dict(sorted(c["detected"].items(), key=lambda kv: -kv[1]))
        out["models"].setdefault(model, {})[lang] = c
    return out


def markdown_table(summary: dict[str, Any]) -> str:
    """One row per model x language: totals before/after penalty, wrong-language count.

    ``scored / n`` says how many items the totals cover (failed and unparsed calls are
    not scored) and ``max`` is the most those scored items could reach; a cell with
    nothing scored shows "–", never a total of 0. Beside the raw totals: the mean per scored
    item, the total after the penalty scaled to all n items (mean x n, out of the full
    scale's max) and the share of items without a score.
    """
    policies = sorted({str(c["language_policy"]) for m in summary["models"].values()
                       for c in m["languages"].values() if c.get("language_policy")})
    head = ([f"Language penalty: {', '.join(policies)} (strict: an undetermined language counts as wrong; "
             "lenient: it keeps its score).", ""] if policies else [])
    lines = ["| model | language | scored / n | total before | total after | max | mean before | mean after "
             "| total after scaled to n | no score | wrong lang | und | unparsed |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines = head + lines
    for model, m in summary["models"].items():
        for lang, c in m["languages"].items():
            if c["n_scored"]:
                top = c["max_total"] / c["n"] * c["n_scored"]  # the most the scored items could reach
                totals = (f"{c['total_before']:g} | {c['total_after']:g} | {top:g} | {c['mean_before']:.2f} | "
                          f"{c['mean_after']:.2f} | {round(c['total_after_scaled'], 2):g} / {c['max_total']:g}")
            else:
                totals = "– | – | – | – | – | –"
            totals += f" | {100 * (c['n'] - c['n_scored']) / c['n']:.0f}%"
            lines.append(f"| {model} | {lang} | {c['n_scored']} / {c['n']} | {totals} | "
                         f"{c['n_wrong_language']} | {c['n_undetermined']} | {c['n_unparsed']} |")
    lines += ["", "| model | language robustness (mean drop before -> after penalty) | over languages |",
              "|---|---:|---|"]
    for model, m in summary["models"].items():
        rob = m.get("robustness")
        lines.append(f"| {model} | {'' if rob is None else f'{rob:g}'} | {', '.join(m['robustness_languages'])} |")
    return "\n".join(lines) + "\n"
