"""Verdict parsing, score summaries, unique-token analyses and agreement statistics."""

from __future__ import annotations

import pytest

from polyinstruct.errors import DataError, UnknownNameError
from polyinstruct.judge.agreement import (annotator_agreement, cohen_kappa, load_human_scores, pairwise_agreement,
                                          system_level_pearson)
from polyinstruct.judge.analyses import (default_tokenize, fake_judge, fake_judge_win_rates, pearson,
                                         unique_token_analysis)
from polyinstruct.lang.identify import load_identifier
from polyinstruct.judge.parse import parse_preference, parse_score
from polyinstruct.judge.prompts import available_templates, load_template
from polyinstruct.judge.scores import language_consistency, summarize


@pytest.mark.parametrize("reply,scale,expected", [
    ("Good answer. Rating: [[3]]", (1, 3), 3.0),
    ("Rating: [[ 2 ]]", (1, 3), 2.0),
    ("[[2/3]]", (1, 3), 2.0),
    ("Rating: [2]", (1, 3), 2.0),  # MT-Bench's backup pattern
    ("Score: 1", (1, 3), 1.0),
    ("评分：[[2]]", (1, 3), 2.0),
    ("Rating: [[7.5]]", (1, 10), 7.5),
    ("Rating: [[4]]", (1, 3), None),  # out of scale
    ("[[1]] or maybe [[3]]", (1, 3), None),  # conflicting
    ("[[2]] ... final: [[2]]", (1, 3), 2.0),  # repeated, consistent
    ("No rating here.", (1, 3), None),
    ("", (1, 3), None),
])
def test_parse_score(reply, scale, expected):
    assert parse_score(reply, scale) == expected


@pytest.mark.parametrize("reply,expected", [
    ("[[A]]", "A"), ("so [[b]]", "B"), ("[[C]]", "tie"), ("[[tie]]", "tie"), ("[[A]] vs [[B]]", None),
    ("A is better", None),
])
def test_parse_preference(reply, expected):
    assert parse_preference(reply) == expected


def test_templates_are_versioned_data():
    assert {"single-1to3", "mtbench-1to10", "pairwise"} <= set(available_templates())
    t = load_template("single-1to3")
    assert t.version >= 1 and t.scale == (1.0, 3.0) and {"en", "fr", "zh", "ru"} <= set(t.variants)
    assert t.variant_for("zh-CN", "auto") == "zh" and t.variant_for("bn", "auto") == "en"
    msgs = t.render("en", question="What is {answer}?", answer="It is {question}.")
    assert "What is {answer}?" in msgs[-1]["content"] and "It is {question}." in msgs[-1]["content"]
    with pytest.raises(UnknownNameError, match="Did you mean: single-1to3"):
        load_template("single-1to4")


def _j(model, lang, score, match, scale=(1, 3)):
    final = None if score is None else (0.0 if match is False else float(score))
    return {"model": model, "language": lang, "score": score, "final_score": final, "language_match": match,
            "scale": list(scale), "parsed": score is not None}


def test_summarize_totals_and_robustness():
    rows = [_j("a", "en", 3, True), _j("a", "en", 2, False), _j("a", "en", None, None),
            _j("a", "fr", 3, False), _j("a", "fr", 3, False), _j("a", "bn", 1, False),
            _j("b", "en", 2, True), _j("b", "fr", 1, None)]
    s = summarize(rows, seen_languages=["en", "fr"])
    a = s["models"]["a"]
    assert a["languages"]["en"] == {**a["languages"]["en"], "n": 3, "n_scored": 2, "n_unparsed": 1,
                                    "total_before": 5.0, "total_after": 3.0, "max_total": 9, "n_wrong_language": 1}
    assert a["languages"]["fr"]["total_after"] == 0.0 and a["languages"]["fr"]["drop"] == 6.0
    assert a["robustness"] == 4.0 and a["robustness_languages"] == ["en", "fr"]  # (2 + 6) / 2, bn unseen
    assert s["models"]["b"]["robustness"] == 0.0 and s["models"]["b"]["languages"]["fr"]["n_undetermined"] == 1


def test_language_consistency_without_judge():
    preds = [{"model": "m", "language": "fr", "response": "La capitale de la France est Paris, bien sûr."},
             {"model": "m", "language": "fr", "response": "The capital of France is Paris, of course."},
             {"model": "m", "language": "fr", "response": "Oui."}]
    out = language_consistency(preds, load_identifier())
    c = out["models"]["m"]["fr"]
    assert (c["match"], c["mismatch"], c["undetermined"], c["rate"]) == (1, 1, 1, 0.5)
    assert c["detected"] == {"fr": 1, "en": 1, "und": 1}


def test_unique_tokens_and_fake_judge():
    assert default_tokenize("The the cat, 猫猫!") == ["the", "the", "cat", "猫", "猫"]
    assert fake_judge("a b c d", "a a a") == "win" and fake_judge("a", "a b") == "loss" and fake_judge("x", "y") == "tie"
    preds = [{"model": "long", "response": "one two three four five", "reference": "one two"},
             {"model": "long", "response": "alpha beta gamma", "reference": "alpha beta gamma"},
             {"model": "short", "response": "one", "reference": "one two"},
             {"model": "mid", "response": "one two three", "reference": "one two"}]
    assert fake_judge_win_rates(preds) == {"long": 0.75, "mid": 1.0, "short": 0.0}
    res = unique_token_analysis(preds, {"long": 0.9, "short": 0.1, "mid": 0.5})
    assert res["mean_unique_tokens"] == {"long": 4.0, "mid": 3.0, "short": 1.0}
    assert res["pearson_unique_tokens_vs_win_rate"] == pytest.approx(pearson([4, 3, 1], [0.9, 0.5, 0.1]))
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0) and pearson([1, 1], [2, 3]) is None


def test_agreement_statistics(tmp_path):
    # Cohen's kappa textbook example: po = 0.7, pe = 0.5 -> 0.4
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert pairwise_agreement(["win", "tie", "loss", "win"], ["win", "win", "win", "tie"]) == pytest.approx(2 / 4)
    human = [{"id": i, "model": m, "language": "en", "annotator": "h1", "score": s}
             for i, (m, s) in enumerate([("a", 3), ("a", 2), ("b", 1), ("b", 1), ("c", 2), ("c", 3)])]
    judge = [{"model": m, "language": "en", "score": s} for m, s in [("a", 3), ("b", 1.5), ("c", 2.4)]]
    r = system_level_pearson(human, judge)
    assert r["en"]["n_systems"] == 3 and r["en"]["pearson"] == pytest.approx(pearson([2.5, 1, 2.5], [3, 1.5, 2.4]), abs=1e-4)
    rows = human + [dict(h, annotator="h2", score=h["score"] if h["id"] % 2 else 1) for h in human]
    ag = annotator_agreement(rows)
    assert ag["agreement"] == pytest.approx(4 / 6) and len(ag["pairs"]) == 1
    p = tmp_path / "h.jsonl"
    p.write_text('{"id": 1, "annotator": "x", "preference": "better"}\n')
    with pytest.raises(DataError, match="h.jsonl:1: preference"):
        load_human_scores(str(p))


def test_agreement_cli(tmp_path, capsys):
    import json

    from polyinstruct.cli import main

    human = [{"id": i, "model": m, "language": "en", "annotator": a, "score": s}
             for a in ("h1", "h2") for i, (m, s) in enumerate([("a", 3), ("b", 1), ("c", 2)])]
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(r) + "\n" for r in human))
    judged = [{"id": i, "model": m, "language": "en", "score": s} for i, (m, s) in enumerate([("a", 3), ("b", 2), ("c", 2)])]
    (tmp_path / "j.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judged))
    assert main(["judge-agreement", str(tmp_path / "h.jsonl"), "--judgments", str(tmp_path / "j.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["annotators"]["agreement"] == 1.0 and out["annotators"]["kappa"] == 1.0
    assert out["system_level_pearson"]["en"]["pearson"] == pytest.approx(pearson([3, 1, 2], [3, 2, 2]), abs=1e-4)


def test_lenient_close_pairs_option():
    from polyinstruct.judge.scores import apply_language_penalty

    class Fixed:
        def identify(self, texts):
            return [("da", 0.9), ("en", 0.99)]

    def rows():
        return [{"language": "no", "score": 3}, {"language": "no", "score": 3}]

    strict = apply_language_penalty(rows(), ["x", "y"], Fixed())
    assert [r["final_score"] for r in strict] == [0.0, 0.0]
    lenient = apply_language_penalty(rows(), ["x", "y"], Fixed(), lenient_close_pairs=True,
                                     language_policy="lenient")
    assert [r["language_match"] for r in lenient] == [None, False]  # English is still wrong
    assert [r["final_score"] for r in lenient] == [3.0, 0.0]
    # under the strict default a close pair becomes undetermined, which still scores 0
    close_strict = apply_language_penalty(rows(), ["x", "y"], Fixed(), lenient_close_pairs=True)
    assert [r["final_score"] for r in close_strict] == [0.0, 0.0]


def test_strict_and_lenient_language_penalty_on_hand_made_cases():
    """final = score x [lang(answer) == lang(question)]; strict (study 1) also zeroes undetermined."""
    from polyinstruct.errors import ConfigError
    from polyinstruct.judge.scores import apply_language_penalty, markdown_table, penalized, summarize

    class Fixed:  # answer text -> (detected language, confidence)
        table = {"fr ok": ("fr", 0.98), "english": ("en", 0.97), "42": ("und", 0.0), "unsure": ("und", 0.41),
                 "norsk": ("no", 0.9)}

        def identify(self, texts):
            return [self.table[t] for t in texts]

    answers = ["fr ok", "english", "42", "unsure", "norsk", "fr ok"]
    langs = ["fr", "fr", "fr", "fr", "no", "fr"]
    scores = [3, 3, 2, 1, 2, None]  # the last judgment was unparsed

    def rows():
        return [{"model": "m", "language": lg, "score": sc, "scale": [1, 3]} for lg, sc in zip(langs, scores)]

    strict = apply_language_penalty(rows(), answers, Fixed())
    assert [r["language_match"] for r in strict] == [True, False, None, None, True, True]
    assert [r["final_score"] for r in strict] == [3.0, 0.0, 0.0, 0.0, 2.0, None]
    assert {r["language_policy"] for r in strict} == {"strict"}
    lenient = apply_language_penalty(rows(), answers, Fixed(), language_policy="lenient")
    assert [r["final_score"] for r in lenient] == [3.0, 0.0, 2.0, 1.0, 2.0, None]
    s, l_ = summarize(strict)["models"]["m"]["languages"]["fr"], summarize(lenient)["models"]["m"]["languages"]["fr"]
    assert (s["total_before"], s["total_after"], s["n_wrong_language"], s["n_undetermined"]) == (9, 3, 1, 2)
    assert (l_["total_after"], l_["language_policy"], s["language_policy"]) == (6, "lenient", "strict")
    assert "Language penalty: strict" in markdown_table(summarize(strict))
    assert penalized(2, None, "strict") == 0.0 and penalized(2, None, "lenient") == 2.0 and penalized(None, True) is None
    with pytest.raises(ConfigError, match="Did you mean: strict"):
        apply_language_penalty(rows(), answers, Fixed(), language_policy="strct")
