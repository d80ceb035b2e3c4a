"""The report opens with what the intervals say and where the answers went, lists only the arms
the grid trained, and its wide tables wrap (estimate, then interval) instead of overflowing."""

from __future__ import annotations

from polyinstruct.fileio import write_json
from polyinstruct.report import write_report
from polyinstruct.report.load import load_experiment
from polyinstruct.report.summary import answer_categories, categories_table
from tests.report.test_report import _fake_experiment


def test_summary_reads_the_intervals_and_categories_add_up(tmp_path):
    root = _fake_experiment(tmp_path / "exp")
    write_json(root / "arms" / "budget.json", {"unit": "tokens", "totals": {
        "multi": {"examples": 8, "length": 900}, "mono-fr": {"examples": 4, "length": 450}}})
    html = write_report(root).read_text(encoding="utf-8")
    md = (root / "report" / "report.md").read_text(encoding="utf-8")
    assert html.index("<h2>Summary: what the intervals say") < html.index("<h2>Where the answers went") < \
        html.index("<h2>answers in the prompt")
    assert "multi is ahead of base (the interval excludes 0)" in md  # seen: 3 of 4 vs 1 of 4 per language
    assert "cannot tell multi and base apart" in md  # unseen: one language, n = 4
    assert "mono-fr" not in md and "| multi | 8 |" in md  # built but never trained: not listed
    assert "[0.0,&nbsp;75.0]" in html  # an interval never breaks inside; the table wraps before it


def test_answer_categories_split_misses_into_echo_other_language_and_undetermined():
    items = [{"lang_match": 1, "prompt_echo": 0, "lang_undetermined": 0, "lang_mismatch": 0},
             {"lang_match": 0, "prompt_echo": 1, "lang_undetermined": 0, "lang_mismatch": 0},
             {"lang_match": 0, "prompt_echo": 0, "lang_undetermined": 1, "lang_mismatch": 0},
             {"lang_match": 0, "prompt_echo": 0, "lang_undetermined": 0, "lang_mismatch": 1}]
    res = [{"cell": "en-only", "language": "fr", "items": items}, {"cell": "en-only", "language": "en", "items": items}]
    c = answer_categories(res, "en-only", ["fr"])
    assert c == {"n": 4, "in language": 25.0, "another language": 25.0, "echo of the prompt": 25.0,
                 "undetermined": 25.0}


def test_categories_table_has_a_row_per_arm_and_pooled_column(tmp_path):
    data = load_experiment(_fake_experiment(tmp_path / "exp"))
    header, rows = categories_table(data)
    assert header[:3] == ["arm", "languages", "n"]
    assert [r[:3] for r in rows] == [["base", "seen (pooled)", "8"], ["base", "unseen (pooled)", "4"],
                                     ["multi", "seen (pooled)", "8"], ["multi", "unseen (pooled)", "4"]]
    for r in rows:
        assert abs(sum(float(x) for x in r[3:]) - 100.0) < 1e-6
