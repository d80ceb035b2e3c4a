"""README.md's statement of what the quickstart shows is kept true by numbers, not prose.

1. Its rates are the recorded run's (docs/experiments.md, the bf16 columns of the "Precision"
   table): a rerun recorded there and not in the README (or the other way round) fails here.
2. Its qualitative claims follow from those numbers (trained arms above base on the seen
   languages; multi ahead).
3. With ``POLYINSTRUCT_QUICKSTART_DIR`` pointing at a finished quickstart (``runs/quickstart``),
   the claims are checked against that run's ``results.jsonl`` with the report's own functions,
   including what the README says of the English-only arm (the share of its answers in another
   language on the seen languages, and that echoes and undetermined answers dominate its losses,
   from the report's "Where the answers went" split). CI has no
   quickstart run (5 minutes), so that part runs where one exists.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("base", "en-only", "multi", "multi-down")


def _readme_rates() -> dict[str, dict[str, float]]:
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    out = {}
    for where, n in (("seen", 48), ("unseen", 16)):
        m = re.search(rf"pooled over the \d+ {where} languages \(n = {n}\): base ([\d.]+)%, en-only ([\d.]+)%, "
                      rf"multi ([\d.]+)%, multi-down ([\d.]+)%", text)
        assert m, f"README.md no longer states the quickstart's {where}-language rates in the checked form"
        out[where] = dict(zip(ARMS, map(float, m.groups())))
    return out


def _recorded_rates() -> dict[str, dict[str, float]]:
    lines = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| arm |") and "bf16" in line)
    out: dict[str, dict[str, float]] = {"seen": {}, "unseen": {}}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for where, cell in (("seen", cells[-2]), ("unseen", cells[-1])):
            out[where][cells[0]] = float(cell.split()[0])
    return out


def test_readme_rates_are_the_recorded_runs():
    assert _readme_rates() == _recorded_rates()


def test_readme_claims_follow_from_the_numbers():
    rates = _readme_rates()
    seen = rates["seen"]
    assert all(seen[a] > seen["base"] for a in ("en-only", "multi", "multi-down"))  # "every trained arm beats"
    assert seen["multi"] == max(seen.values()) and rates["unseen"]["multi"] == max(rates["unseen"].values())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "answers other languages in English" not in readme.replace("\n", " ")


@pytest.mark.skipif(not os.environ.get("POLYINSTRUCT_QUICKSTART_DIR"),
                    reason="set POLYINSTRUCT_QUICKSTART_DIR to a finished quickstart run to check it")
def test_a_quickstart_run_bears_out_the_readme():
    from polyinstruct.report.summary import answer_categories

    root = Path(os.environ["POLYINSTRUCT_QUICKSTART_DIR"])
    results = [json.loads(x) for x in (root / "results.jsonl").read_text(encoding="utf-8").splitlines() if x]
    seen = sorted({r["language"] for r in results if r.get("seen", True)})
    unseen = sorted({r["language"] for r in results if not r.get("seen", True)})
    share = {a: answer_categories(results, a, seen) for a in ARMS}
    assert {s["n"] for s in share.values()} == {48}
    assert all(share[a]["in language"] > share["base"]["in language"] for a in ("en-only", "multi", "multi-down"))
    assert share["multi"]["in language"] == max(s["in language"] for s in share.values())
    # "on the seen languages none of its answers were in another language ... what it loses are mostly
    # echoes of the prompt and answers whose language cannot be determined"
    en_only_seen = answer_categories(results, "en-only", [lang for lang in seen if lang != "en"])
    assert en_only_seen["another language"] <= 5.0, en_only_seen
    en_only = answer_categories(results, "en-only", [lang for lang in seen + unseen if lang != "en"])
    assert en_only["echo of the prompt"] + en_only["undetermined"] > 2 * en_only["another language"], en_only
