"""Golden scoring on hand-computed cases: GSM8K's last number, BBH's "So the answer is",
SQuAD F1 on Chinese and Russian, the study's averages, the fixed 200-item GSM8K sample."""

import random

import pytest

from polyinstruct.eval.scoring import (
    bbh_answer,
    benchmark_scores,
    exact_match,
    gsm8k_gold,
    last_number,
    squad_em,
    squad_f1,
    suite_average,
)


@pytest.mark.parametrize("text,expected", [
    ("She has 3 apples, then 5 more, so 8 apples.", "8"),
    ("The total is 1,234,567 dollars.", "1234567"),
    ("It costs $2.50 and she pays 10. The answer is 7.5", "7.5"),
    ("Answer: .5 of the cake", ".5"),
    ("no digits here", None),
    ("42 is the answer, not 41. Final: 40\n", "40"),
])
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_gsm8k_comparison_follows_the_study():
    assert gsm8k_gold("3 boxes hold 3*12=<<3*12=36>>36 eggs.\n#### 1,000") == "1000"
    assert exact_match(last_number("so 1,000 dollars"), gsm8k_gold("x\n#### 1,000"))
    assert not exact_match(last_number("so 100 dollars"), gsm8k_gold("x\n#### 1,000"))
    assert not exact_match(last_number("nothing"), "5")


@pytest.mark.parametrize("text,expected", [
    ("A is True. So the answer is False.", "False"),
    ("Step 1... So the answer is (B). Then more text. So the answer is (C).", "(B)"),
    ("The date is 12/25/1937. So the answer is 12/25/1937.\n\nQ: next", "12/25/1937"),
    ("  valid  ", "valid"),                            # no phrase: the whole output
    ("so the answer is yes.", "so the answer is yes."),  # the phrase is case-sensitive, as in the study
])
def test_bbh_answer(text, expected):
    assert bbh_answer(text) == expected


def test_bbh_exact_match_ignores_case_and_punctuation():
    assert exact_match("(B)", "(B)") and exact_match("b", "(B)") and exact_match("FALSE", "False")
    assert not exact_match("(C)", "(B)")


def test_squad_f1_russian_hand_computed():
    # tokens: pred [москва, столица, россии] vs gold [москва]: P=1/3 R=1 F1=0.5
    assert squad_f1("Москва, столица России.", "Москва") == pytest.approx(0.5)
    # punctuation and case do not count
    assert squad_f1("«Москва»", "москва") == 1.0
    # best over several gold answers: [река, волга] vs [волга] -> 2/3; vs [река, волга] -> 1
    assert squad_f1("Река Волга", ["Волга", "река Волга"]) == pytest.approx(1.0)
    assert squad_f1("Нева", "Волга") == 0.0
    assert squad_em("  Волга. ", "волга") == 1.0


def test_squad_f1_chinese_splits_characters():
    # 北京大学 -> 4 character tokens, gold 北京 -> 2: common 2, P=2/4 R=2/2 F1=2/3
    assert squad_f1("北京大学", "北京") == pytest.approx(2 / 3)
    # mixed script: "2008年北京" -> [2008, 年, 北, 京]; gold "北京" -> F1 = 2*(2/4*1)/(2/4+1) = 2/3
    assert squad_f1("2008年北京", "北京") == pytest.approx(2 / 3)
    # Chinese punctuation is removed like ASCII punctuation
    assert squad_f1("北京。", "北京") == 1.0
    assert squad_f1("上海", "北京") == 0.0


def test_english_articles_are_dropped():
    assert squad_f1("the Nile", "Nile") == 1.0


def test_equal_weight_average_hand_computed():
    rows = [
        {"benchmark": "mmlu", "setting": "0shot", "score": 40.0, "stderr": 3.0},
        {"benchmark": "mmlu", "setting": "5shot", "score": 50.0, "stderr": 4.0},
        {"benchmark": "gsm8k", "setting": "cot", "score": 20.0, "stderr": 2.0},
        {"benchmark": "gsm8k", "setting": "direct", "score": 10.0, "stderr": 2.0},
        {"benchmark": "bbh", "setting": "cot", "score": 33.0, "stderr": 1.0},
        {"benchmark": "toxigen", "setting": "hateful", "score": 80.0, "stderr": 1.0,
         "higher_is_better": False, "in_average": False},
    ]
    b = benchmark_scores(rows)
    assert b["mmlu"]["score"] == 45.0 and b["gsm8k"]["score"] == 15.0 and b["bbh"]["score"] == 33.0
    assert b["mmlu"]["stderr"] == pytest.approx(2.5)  # sqrt(9 + 16) / 2
    avg = suite_average(b)
    # (45 + 15 + 33) / 3 = 31: benchmarks weigh equally whatever their number of settings; ToxiGen is not averaged
    assert avg["score"] == pytest.approx(31.0)
    assert avg["benchmarks"] == ["bbh", "gsm8k", "mmlu"]
    # gsm8k: sqrt(4 + 4) / 2; the average's: sqrt(2.5^2 + gsm8k^2 + 1^2) / 3
    assert b["gsm8k"]["stderr"] == pytest.approx(8 ** 0.5 / 2)
    assert avg["stderr"] == pytest.approx((6.25 + 2.0 + 1.0) ** 0.5 / 3)


def test_gsm8k_fixed_sample_is_the_studys_random_sample():
    datasets = pytest.importorskip("datasets")
    from polyinstruct.eval.suites.tulu import fixed_sample

    data = datasets.Dataset.from_dict({"i": list(range(1319))})
    picked = fixed_sample()(data)["i"]
    random.seed(42)  # the study: random.seed(42); random.sample(test_data, 200)
    expected = random.sample(list(range(1319)), 200)
    assert picked == expected and len(set(picked)) == 200
    small = datasets.Dataset.from_dict({"i": [0, 1, 2]})
    assert fixed_sample()(small)["i"] == [0, 1, 2]


@pytest.mark.parametrize("lang,pred,gold", [
    ("es", "el Prado", "Prado"),
    ("es", "Las Palmas", "palmas"),
    ("de", "der Rhein", "Rhein"),
    ("de", "Die Alpen", "alpen"),
    ("vi", "những con mèo", "con mèo"),
])
def test_mlqa_articles_removed_as_the_official_script(lang, pred, gold):
    # mlqa_evaluation_v1.py (and lm-eval's mlqa/utils.py) drop these languages' articles:
    # "el Prado" vs "Prado" is F1 1.0 there (0.667 when the article stays).
    assert squad_f1(pred, gold, lang) == 1.0
    assert squad_em(pred, gold, lang) == 1.0


def test_mlqa_articles_match_lm_eval_normalisation():
    utils = pytest.importorskip("lm_eval.tasks.mlqa.utils")
    from polyinstruct.eval.scoring import normalize_answer

    for lang, text in [("es", "El museo del Prado, en la ciudad."), ("de", "Der Hund, die Katze und das Haus!"),
                       ("vi", "Đây là những cái bàn của tôi."), ("en", "The cat and a dog."),
                       ("ar", "الكتاب في البيت")]:
        assert normalize_answer(text, lang) == utils.normalize_answer(text, lang)
