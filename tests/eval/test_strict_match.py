"""The strict metric reported beside the studies' exact match (issue 22, item 2): hand cases where
punctuation-blind matching is wrong, and the score tables that show both."""

from decimal import Decimal

import pytest

from polyinstruct.eval.scoring import (
    ascii_digits,
    benchmark_scores,
    exact_match,
    last_number,
    number_match,
    strict_match,
    strict_number,
)


@pytest.mark.parametrize("output,gold,study,strict", [
    ("So the answer is -5.", "5", True, False),            # the sign is dropped by the study's metric
    ("The total is 3.50 dollars.", "350", True, False),    # the decimal point too
    ("The answer is 18.00", "18", False, True),            # 18.00 is 18
    ("She pays $1,234 in all.", "1234", True, True),       # thousands separator
    ("答案是１８。", "18", False, True),                     # full-width digits (MGSM zh/ja)
    ("উত্তর হল ১৮", "18", False, True),                      # Bengali digits (MGSM bn)
    ("సమాధానం ౧౮", "18", False, True),                       # Telugu digits (MGSM te)
    ("คำตอบคือ ๑๘", "18", False, True),                       # Thai digits (MGSM th)
    ("It is 5km away, so 7 km.", "7", True, True),
    ("10 - 3 = 7", "7", True, True),                        # a minus between numbers is not a sign
    ("The answer is −4", "-4", True, True),                 # U+2212 minus sign
    ("no number", "5", False, False),
])
def test_numbers_compared_as_numbers(output, gold, study, strict):
    assert exact_match(last_number(output), gold) is study
    assert number_match(output, gold) is strict


def test_strict_number_reads_sign_point_and_separators():
    assert strict_number("1,234,567.50") == Decimal("1234567.5")
    assert strict_number("x = -0.5") == Decimal("-0.5")
    assert strict_number("5-3") == Decimal("3")
    assert strict_number("3,50") == Decimal("50")  # not a thousands group: two numbers, the last is 50
    assert strict_number("nothing") is None
    assert ascii_digits("٣٤ ５ ৭") == "34 5 7"


@pytest.mark.parametrize("answer,target,study,strict", [
    ("", "] ) }", True, False),               # dyck_languages: an empty answer matched any target
    ("]", ") ]", True, False),                # any brackets matched any brackets
    (") ]", ") ]", True, True),
    (")]", ") ]", True, True),                # spacing does not matter
    ("] )", ") ]", True, False),              # the order does
    ("(A)", "(A)", True, True),
    ("A", "(A)", True, True),                 # an option letter without its parentheses
    ("valid.", "valid", True, True),
    ("-8", "8", True, False),                 # multistep_arithmetic: the sign matters
    ("8.", "8", True, True),
    ("10122001", "10/12/2001", True, False),  # inner punctuation kept
    ("12/25/1937", "12/25/1937", True, True),
    ("(B)", "(A)", False, False),
])
def test_bbh_strict(answer, target, study, strict):
    assert exact_match(answer, target) is study
    assert strict_match(answer, target) is strict


def test_task_results_report_both_metrics():
    from polyinstruct.eval.suites.multilingual import mgsm_results
    from polyinstruct.eval.suites.tulu import bbh_cot_results, bbh_direct_results, gsm8k_results

    assert gsm8k_results({"answer": "x\n#### 5"}, ["so -5"]) == {"exact_match": 1.0, "exact_match_strict": 0.0}
    assert bbh_cot_results({"target": ") ]"}, ["Let me think. So the answer is ."]) == \
        {"exact_match": 1.0, "exact_match_strict": 0.0}
    assert bbh_direct_results({"target": "False"}, ["False"]) == {"exact_match": 1.0, "exact_match_strict": 1.0}
    assert mgsm_results({"answer_number": 18}, ["答案是１８"]) == {"exact_match": 0.0, "exact_match_strict": 1.0}


def test_tasks_declare_the_strict_metric_for_lm_eval():
    from polyinstruct.eval.tasks import TASKS, load_suites

    load_suites()
    for name in ("tulu_gsm8k_cot", "tulu_gsm8k_direct", "tulu_bbh_cot", "tulu_bbh_direct", "ml_mgsm_direct",
                 "ml_mgsm_native_cot"):
        t = TASKS.get(name)
        assert t.metric == "exact_match" and t.also == ("exact_match_strict",), name


def test_summary_and_tables_show_strict_beside_the_study_metric():
    from polyinstruct.eval.run import combine_also, render_summary, subtask_scores
    from polyinstruct.eval.tasks import TASKS, load_suites
    from polyinstruct.report.benchmarks import also_table

    load_suites()
    task = TASKS.get("tulu_bbh_cot")
    res = {"results": {"a": {"exact_match,none": 0.5, "exact_match_stderr,none": 0.1,
                             "exact_match_strict,none": 0.25, "exact_match_strict_stderr,none": 0.1},
                       "b": {"exact_match,none": 1.0, "exact_match_stderr,none": 0.0,
                             "exact_match_strict,none": 0.75, "exact_match_strict_stderr,none": 0.1}},
           "n-samples": {"a": {"effective": 4}, "b": {"effective": 4}}}
    subs = subtask_scores(task, res)
    also = combine_also(task, subs)  # macro over subsets, x100
    assert also["exact_match_strict"]["score"] == pytest.approx(50.0)
    row = {"task": task.name, "benchmark": "bbh", "setting": "cot", "metric": "exact_match", "score": 75.0,
           "stderr": 5.0, "n": 8, "also": also, "higher_is_better": True, "in_average": True}
    bench = benchmark_scores([row])
    assert bench["bbh"]["score"] == 75.0 and bench["bbh"]["also"]["exact_match_strict"]["score"] == pytest.approx(50)
    md = render_summary({"model": "m", "template": None, "template_source": "-", "chat": False, "limit": 4,
                         "tasks": [row], "benchmarks": bench, "average": None})
    assert "| tulu_bbh_cot | bbh | cot | exact_match_strict | 50.0 |" in md
    assert "| bbh (exact_match_strict) | 50.0 |" in md
    header, rows = also_table({"arm": {"benchmarks": bench}})
    assert header == ["arm", "bbh (exact_match_strict)"] and rows == [["arm", "75.0 / 50.0"]]
