"""Human-LLM agreement (seed 1: system-level Pearson per language; Tulu: annotator agreement).

Human score files are JSONL rows ``{"id", "model", "language", "annotator", "score"}``
(absolute) or ``{"id", "model", "annotator", "preference": "win"|"loss"|"tie"}``
(pairwise, from the candidate's side).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import Any, Iterable

from polyinstruct.errors import DataError
from polyinstruct.fileio import iter_jsonl
from polyinstruct.lang.codes import normalize_code
# The maths lives in the one statistics module; re-exported here for existing callers.
from polyinstruct.stats import cohen_kappa, exact_agreement, pairwise_agreement, pearson  # noqa: F401


def system_level_pearson(human: Iterable[dict[str, Any]], judge: Iterable[dict[str, Any]],
                         judge_field: str = "score") -> dict[str, Any]:
    """Per language: Pearson r between per-model mean human score and mean judge score.

    Human rows from several annotators of one item are averaged per model. Models
    need both kinds of score to count; a language with fewer than 2 systems gets None.
    """
    def means(rows: Iterable[dict[str, Any]], field: str) -> dict[tuple[str, str], float]:
        acc: dict[tuple[str, str], list[float]] = defaultdict(list)
        for r in rows:
            if r.get(field) is not None:
                acc[(normalize_code(r.get("language")), str(r.get("model")))].append(float(r[field]))
        return {k: sum(v) / len(v) for k, v in acc.items()}

    h, j = means(human, "score"), means(judge, judge_field)
    out: dict[str, Any] = {}
    for lang in sorted({k[0] for k in h}):
        models = sorted(m for (lg, m) in h if lg == lang and (lg, m) in j)
        r = pearson([h[(lang, m)] for m in models], [j[(lang, m)] for m in models])
        out[lang] = {"pearson": None if r is None else round(r, 4), "n_systems": len(models)}
    return out


def annotator_agreement(rows: Iterable[dict[str, Any]], field: str = "score") -> dict[str, Any]:
    """Mean over annotator pairs of exact agreement and Cohen's kappa (pairwise: ties count half)."""
    by_item: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in rows:
        by_item[(str(r["id"]), str(r.get("model")))][str(r["annotator"])] = r[field]
    annotators = sorted({a for d in by_item.values() for a in d})
    pairs = []
    for x, y in combinations(annotators, 2):
        common = [d for d in by_item.values() if x in d and y in d]
        if not common:
            continue
        la, lb = [d[x] for d in common], [d[y] for d in common]
        agree = pairwise_agreement(la, lb) if field == "preference" else exact_agreement(la, lb)
        pairs.append({"annotators": [x, y], "n": len(common), "agreement": agree, "kappa": cohen_kappa(la, lb)})
    mean = lambda key: (sum(p[key] for p in pairs if p[key] is not None) / len(pairs)) if pairs else None  # noqa: E731
    fewest = min((p["n"] for p in pairs), default=0)
    out = {"pairs": pairs, "agreement": mean("agreement"), "kappa": mean("kappa"), "fewest_shared_items": fewest}
    if pairs and fewest < MIN_KAPPA_ITEMS:
        out["warning"] = few_items_warning(fewest)
    return out


# Below this many items rated by both annotators of a pair, agreement and kappa say little (one
# shared item gives kappa 1.0 or undefined); the figure is reported with this warning.
MIN_KAPPA_ITEMS = 10


def few_items_warning(n: int) -> str:
    return (f"only {n} item{'s' if n != 1 else ''} rated by both annotators of a pair: agreement and Cohen's kappa "
            f"rest on too few items to mean much (1 shared item gives kappa 1.0); aim for {MIN_KAPPA_ITEMS}+ "
            f"shared items per annotator pair")


def load_human_scores(path: str) -> list[dict[str, Any]]:
    """Read and check a human score file (see module doc)."""
    rows = []
    for i, r in enumerate(iter_jsonl(path), start=1):
        for f in ("id", "annotator"):
            if f not in r:
                raise DataError("missing field", path=path, line=i, field=f)
        if "score" not in r and "preference" not in r:
            raise DataError("needs 'score' (absolute) or 'preference' (pairwise)", path=path, line=i, field="score")
        if "preference" in r and r["preference"] not in ("win", "loss", "tie"):
            raise DataError(f"must be win, loss or tie, got {r['preference']!r}", path=path, line=i,
                            field="preference")
        rows.append(r)
    return rows


def agreement_report(human_path: str, judgments_path: str | None = None) -> dict[str, Any]:
    """Everything ``polyinstruct judge-agreement`` prints: annotator agreement, and
    system-level Pearson per language against a judge's ``judgments.jsonl`` when given.

    Absolute human scores are compared with the judge's ``score`` (before the language
    penalty, as humans grade content and language together with the same rubric).
    """
    human = load_human_scores(human_path)
    pairwise = any("preference" in r for r in human)
    field = "preference" if pairwise else "score"
    out: dict[str, Any] = {"n_human": len(human), "kind": field,
                           "annotators": annotator_agreement(human, field=field)}
    if judgments_path and not pairwise:
        judged = list(iter_jsonl(judgments_path))
        out["system_level_pearson"] = system_level_pearson(human, judged)
    return out
