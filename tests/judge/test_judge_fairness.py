"""Judge replies and cell totals (issue 22, item 4): whole points on the 1-3 scale, totals that
compare across parse rates, and the language penalty's settings in an experiment's judge section."""

from __future__ import annotations

import json

import pytest

from polyinstruct.judge.parse import parse_score
from polyinstruct.judge.prompts import load_template
from polyinstruct.judge.scores import markdown_table, summarize


@pytest.mark.parametrize("reply,expected", [
    ("Rating: [[2.5]]", None),      # between the points of a 1-3 scale: no verdict
    ("Rating: [[1.5]]", None),
    ("Rating: [[2.0]]", 2.0),       # a whole point written with a decimal
    ("Score: 2.5", None),
    ("Rating: [[3]]", 3.0),
])
def test_the_1_to_3_scale_takes_whole_points_only(reply, expected):
    t = load_template("single-1to3")
    assert t.integer is True
    assert parse_score(reply, t.scale, integer=t.integer) == expected


def test_mt_bench_scale_keeps_decimals():
    t = load_template("mtbench-1to10")
    assert t.integer is False and parse_score("[[7.5]]", t.scale, integer=t.integer) == 7.5


class _Backend:
    """Replies a fixed text to every judge call."""

    def __init__(self, text):
        self.text, self.calls = text, 0

    def generate(self, conversations, params):
        from polyinstruct.infer.backend import Generation

        self.calls += len(conversations)
        return [Generation(text=self.text, prompt_tokens=1, completion_tokens=1) for _ in conversations]


def test_single_judge_leaves_a_half_point_unparsed_also_from_the_cache(tmp_path):
    from polyinstruct.judge.cache import JudgmentCache
    from polyinstruct.judge.judges import SingleJudge

    item = {"id": "1", "model": "m", "language": "en", "response": "Paris.",
            "messages": [{"role": "user", "content": "Capital of France?"}]}
    cache = JudgmentCache(tmp_path / "c.jsonl")
    rows = SingleJudge(_Backend("Rating: [[2.5]]"), load_template("single-1to3"), cache, judge_name="x",
                       max_parse_retries=1).score([item])
    assert rows[0]["score"] is None and rows[0]["parsed"] is False and rows[0]["attempts"] == 2
    # a judgment cached before the rule (value 2.5, parsed) is read back as unparsed
    key = rows[0]["cache_key"]
    cache.put(key, {"value": 2.5, "parsed": True, "raw": "Rating: [[2.5]]", "attempts": 1})
    again = SingleJudge(_Backend("never asked"), load_template("single-1to3"), JudgmentCache(tmp_path / "c.jsonl"),
                        judge_name="x").score([item])
    assert again[0]["cached"] and again[0]["score"] is None and again[0]["parsed"] is False


def _row(lang, score):
    return {"model": "m", "language": lang, "score": score, "final_score": score, "language_match": True,
            "scale": [1, 3], "parsed": score is not None}


def test_cells_with_unparsed_replies_show_mean_scaled_total_and_rate():
    # en: 4 items all scored 2 -> total 8; fr: 4 items, two unparsed, scored 2, 2 -> raw total 4
    rows = [_row("en", 2)] * 4 + [_row("fr", 2), _row("fr", 2), _row("fr", None), _row("fr", None)]
    s = summarize(rows)
    en, fr = s["models"]["m"]["languages"]["en"], s["models"]["m"]["languages"]["fr"]
    assert (en["total_after"], fr["total_after"]) == (8, 4)          # raw totals differ by the parse rate
    assert en["mean_after"] == fr["mean_after"] == 2.0                # the per-item means do not
    assert en["total_after_scaled"] == fr["total_after_scaled"] == 8.0
    assert (en["unparsed_rate"], fr["unparsed_rate"]) == (0.0, 0.5)
    md = markdown_table(s)
    assert "| m | fr | 2 / 4 | 4 | 4 | 6 | 2.00 | 2.00 | 8 / 12 | 50% | 0 | 0 | 2 |" in md
    assert "mean after" in md and "total after scaled to n" in md


def test_experiment_judge_section_sets_and_records_the_language_penalty(tmp_path):
    from polyinstruct.experiment.checks import cell_fingerprint, check_sections, differences
    from polyinstruct.experiment.config import ExperimentConfig
    from polyinstruct.judge.config import resolve_judge_config

    judge = {"model": "j", "language_policy": "lenient", "lenient_close_pairs": True}
    cfg = ExperimentConfig(model="m", arms=["base"], judge=judge)
    check_sections(cfg)  # not rejected as unknown fields
    jc = resolve_judge_config(cfg.judge)
    assert jc.language_policy == "lenient" and jc.lenient_close_pairs is True
    base = ExperimentConfig(model="m", arms=["base"], judge={"model": "j"})
    cell = base.cells()[0]
    changed = differences(cell_fingerprint(base, cell), cell_fingerprint(cfg, cell))
    assert any("language_policy" in c for c in changed) and any("lenient_close_pairs" in c for c in changed)
    with pytest.raises(Exception, match="language_policy"):
        resolve_judge_config({"model": "j", "language_policy": "lax"})


def test_judge_predictions_takes_the_policy_from_the_judge_config(tmp_path):
    from polyinstruct.judge.run import judge_predictions

    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": "1", "model": "m", "language": "en", "response": "42",
                             "messages": [{"role": "user", "content": "How much?"}]}) + "\n", encoding="utf-8")
    cfg = {"model": "j", "backend": "openai_http", "cache_dir": str(tmp_path / "cache"), "language_policy": "lenient"}
    summary = judge_predictions(p, tmp_path / "out", judge=cfg, lid="fasttext-lite", backend=_Backend("[[3]]"))
    row = json.loads((tmp_path / "out" / "judgments.jsonl").read_text().splitlines()[0])
    assert summary["language_policy"] == "lenient" and row["language_policy"] == "lenient"
    assert row["lid_language"] == "und" and row["final_score"] == 3.0  # "42" has no letters: kept under lenient
