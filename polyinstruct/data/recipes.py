"""Multilingual budget recipes (seed 1): the four arms of the budget-controlled study.

From one dataset per language (parallel, same size), build:

- ``mono-XX``: one arm per language, that language's data (N arms, N x C in total);
- ``multi``: every language merged and shuffled (one model, N x C);
- ``multi-down``: the merged data randomly sampled down to one language's size
  (C), so it costs what one monolingual arm costs: by default a random sample of
  as many *examples* as one language has (what study 1 did, see docs/studies.md),
  or, with ``downsample_by="tokens"``, records added while their content length
  fits the reference arm's;
- ``en-only``: the English set alone (C), the model then answers every language.

Lengths are content lengths in the counter's unit: tokenizer tokens when a
tokenizer is given, else words (see ``data.tokens``); ``budget.json`` names the
unit it counted (``unit``) and the rule used (``downsample_by``, ``downsample``).
"""

from __future__ import annotations

import random
from typing import Any, Callable

from polyinstruct.data.records import Conversation
from polyinstruct.data.tokens import conversation_tokens, make_counter
from polyinstruct.errors import DataError

DOWNSAMPLE_BY = ("examples", "tokens")


class BudgetArms(dict):
    """``{arm name: [Conversation, ...]}`` plus ``budget``: rows of examples/tokens per arm and language."""

    budget: list[dict[str, Any]]
    unit: str
    reference: str

    downsample_by: str
    downsample: str

    def format_budget(self) -> str:
        """The budget report as a plain-text table, with the downsampling rule under it."""
        head = ["arm", "language", "examples", self.unit]
        rows = [[r["arm"], r["language"], str(r["examples"]), str(r["length"])] for r in self.budget]
        widths = [max(len(x[i]) for x in rows + [head]) for i in range(4)]
        line = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
                         + [f"multi-down: {self.downsample}"])


def _budget_rows(arm: str, convs: list[Conversation], lengths: dict[int, int]) -> list[dict[str, Any]]:
    per: dict[str, list[int]] = {}
    for c in convs:
        per.setdefault(c.language or "unknown", [0, 0])
        per[c.language or "unknown"][0] += 1
        per[c.language or "unknown"][1] += lengths[id(c)]
    rows = [{"arm": arm, "language": lang, "examples": n, "length": t} for lang, (n, t) in sorted(per.items())]
    if len(per) > 1:
        rows.append({"arm": arm, "language": "all", "examples": sum(v[0] for v in per.values()),
                     "length": sum(v[1] for v in per.values())})
    return rows


def build_budget_arms(per_language: dict[str, list[Conversation]], *, english: str = "en",
                      downsample_by: str = "examples", seed: int = 0,
                      token_counter: Callable[[str], int] | Any = None, reference: str | None = None) -> BudgetArms:
    """Build the four arms from ``{language: conversations}``.

    ``multi-down`` is sampled (seeded) to the size of the ``reference`` arm
    (default: ``english`` when present, else the first language): by default a
    uniform random sample of as many examples (study 1's rule); with
    ``downsample_by="tokens"``, records are taken in a random order and added
    while they fit, so the arm lands just under the reference's content length
    (in tokenizer tokens, or words without a tokenizer).
    ``en-only`` is present only when ``english`` is one of the languages.
    """
    if downsample_by not in DOWNSAMPLE_BY:
        raise DataError(f"downsample_by must be one of {', '.join(DOWNSAMPLE_BY)}, got {downsample_by!r}",
                        field="downsample_by")
    if not per_language:
        raise DataError("no languages given", field="per_language")
    from polyinstruct.lang.codes import language_code_problem

    for code in per_language:  # codes name the arm files (mono-XX.jsonl): no paths
        problem = language_code_problem(code)
        if problem:
            raise DataError(problem, field="languages")
    count = make_counter(token_counter)
    langs = sorted(per_language)
    ref = reference or (english if english in per_language else langs[0])
    if ref not in per_language:
        raise DataError(f"reference language {ref!r} is not among {', '.join(langs)}", field="reference")
    lengths = {id(c): conversation_tokens(c, count) for lang in langs for c in per_language[lang]}

    arms = BudgetArms()
    for lang in langs:
        arms[f"mono-{lang}"] = list(per_language[lang])
    merged = [c for lang in langs for c in per_language[lang]]
    random.Random(seed).shuffle(merged)
    arms["multi"] = merged

    rng = random.Random(seed + 1)
    order = list(range(len(merged)))
    rng.shuffle(order)
    ref_convs = per_language[ref]
    if downsample_by == "examples":
        chosen = sorted(order[:len(ref_convs)])
    else:
        target = sum(lengths[id(c)] for c in ref_convs)
        chosen, total = [], 0
        for i in order:
            n = lengths[id(merged[i])]
            if total + n <= target:
                chosen.append(i)
                total += n
                if total == target:
                    break
        chosen.sort()
    arms["multi-down"] = [merged[i] for i in chosen]
    if english in per_language:
        arms["en-only"] = list(per_language[english])

    arms.budget = [row for name, convs in arms.items() for row in _budget_rows(name, convs, lengths)]
    arms.unit = count.unit
    arms.reference = ref
    arms.downsample_by = downsample_by
    n_ref = len(ref_convs)
    arms.downsample = (f"random sample of {n_ref} examples (the size of {ref}) from {len(merged)}, seed {seed}"
                       if downsample_by == "examples" else
                       f"random records up to {sum(lengths[id(c)] for c in ref_convs)} {count.unit} (the content "
                       f"length of {ref}) from {len(merged)} examples, seed {seed}")
    return arms


def arm_totals(arms: BudgetArms) -> dict[str, dict[str, int]]:
    """``{arm: {"examples": n, "length": t}}`` summed over languages (``length`` in ``arms.unit``)."""
    out: dict[str, dict[str, int]] = {}
    for r in arms.budget:
        if r["language"] == "all":
            continue
        t = out.setdefault(r["arm"], {"examples": 0, "length": 0})
        t["examples"] += r["examples"]
        t["length"] += r["length"]
    return out


def write_budget_arms(arms: BudgetArms, out_dir: str | Any, *, seed: int | None = None,
                      downsample_by: str | None = None) -> dict[str, Any]:
    """Write ``{arm}.jsonl`` per arm and ``budget.json`` (the table plus settings); returns the latter.

    ``budget.json``: ``unit`` (``words`` or ``tokens``: what ``length`` counts),
    ``downsample_by`` (``examples`` or ``tokens``) and ``downsample`` (the rule in
    words), ``reference``, ``seed``, ``files``, ``totals`` and ``budget`` rows
    ``{arm, language, examples, length}``.
    """
    from pathlib import Path

    from polyinstruct.data.formats import write_records
    from polyinstruct.fileio import write_json

    out = Path(out_dir)
    files = {}
    for name, convs in arms.items():
        write_records(convs, out / f"{name}.jsonl")
        files[name] = f"{name}.jsonl"
    report = {"unit": arms.unit, "reference": arms.reference, "seed": seed,
              "downsample_by": downsample_by or arms.downsample_by, "downsample": arms.downsample,
              "files": files, "totals": arm_totals(arms), "budget": arms.budget}
    write_json(out / "budget.json", report)
    return report
