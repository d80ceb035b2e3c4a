"""The tulu suite end to end on the tiny model, offline, from fixtures in each dataset's official
layout (tests/eval/fixtures/data); the CLI's one-line errors; a run dir with a PEFT adapter."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

FIXTURES = Path(__file__).parent / "fixtures" / "data"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TULU_TASKS = ["tulu_mmlu_0shot", "tulu_mmlu_5shot", "tulu_gsm8k_cot", "tulu_gsm8k_direct", "tulu_bbh_cot",
              "tulu_bbh_direct", "tulu_tydiqa_goldp", "tulu_tydiqa_closedbook", "tulu_truthfulqa", "tulu_toxigen",
              "tulu_alpacaeval"]
SMOKE = {"mmlu_subjects": "abstract_algebra,anatomy", "bbh_tasks": "boolean_expressions,date_understanding",
         "tydiqa_languages": "en,ru,sw", "max_new_tokens": "6", "alpacaeval_max_tokens": "6"}


@pytest.fixture(scope="module")
def offline():
    old = {k: os.environ.get(k) for k in OFFLINE}
    os.environ.update(OFFLINE)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, offline):
    from polyinstruct.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def toxigen_classifier(tmp_path_factory, offline):
    """A small random RoBERTa classifier in the ToxiGen classifier's shape (2 labels; 1 = toxic)."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from polyinstruct.models.tiny import build_tiny_tokenizer

    out = tmp_path_factory.mktemp("toxigen_clf")
    tok = build_tiny_tokenizer(out)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=600, num_labels=2,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    import torch

    torch.manual_seed(0)
    RobertaForSequenceClassification(cfg).save_pretrained(str(out))
    return str(out)


class ScriptedJudge:
    """A judge backend that always ranks output_2 first, in AlpacaEval's reply format."""

    def __init__(self):
        self.prompts = []

    def generate(self, conversations, params):
        from polyinstruct.infer.backend import Generation

        self.prompts.extend(conversations)
        reply = "[{'model': 'model_2', 'rank': 1}, {'model': 'model_1', 'rank': 2}]"
        return [Generation(text=reply, prompt_tokens=1, completion_tokens=1) for _ in conversations]


@pytest.fixture(scope="module")
def tulu_run(tmp_path_factory, tiny, toxigen_classifier):
    from polyinstruct.eval.models import load_model
    from polyinstruct.eval.run import evaluate

    os.environ["POLYINSTRUCT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    out = tmp_path_factory.mktemp("eval") / "tulu"
    loaded = load_model(str(tiny), "hf", batch_size=4)
    judge = ScriptedJudge()
    opts = {**SMOKE, "toxigen_classifier": toxigen_classifier, "judge": "scripted", "judge_backend": judge}
    summary = evaluate(loaded, TULU_TASKS, out=out, data_dir=FIXTURES, limit=2, task_options=opts, model_name="tiny")
    return summary, out, judge, loaded, opts


def _samples(out, task):
    rows = {}
    for p in sorted((out / task).glob("samples_*.jsonl")):
        rows[p.stem[len("samples_"):]] = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]
    return rows


def _prompt(sample):
    return sample["arguments"]["gen_args_0"]["arg_0"] if "gen_args_0" in sample["arguments"] \
        else sample["arguments"][0][0]


@pytest.mark.slow
def test_every_tulu_task_runs_end_to_end(tulu_run):
    from polyinstruct.eval.tasks import TASKS

    summary, out, _, _, _ = tulu_run
    assert [r["task"] for r in summary["tasks"]] == TULU_TASKS
    for r in summary["tasks"]:
        assert r["score"] is not None and 0 <= r["score"] <= 100, r
        assert (out / r["task"] / "results.json").is_file() and (out / r["task"] / "summary.json").is_file()
        res = json.loads((out / r["task"] / "results.json").read_text())
        assert set(res["results"]) == set(_samples(out, r["task"])), r["task"]  # one samples file per subtask
    by = {r["task"]: r for r in summary["tasks"]}
    # items per subtask: limit 2 of the fixtures' items
    assert by["tulu_mmlu_5shot"]["n"] == 4 and set(by["tulu_mmlu_5shot"]["subtasks"]) == {
        "tulu_mmlu_5shot_abstract_algebra", "tulu_mmlu_5shot_anatomy"}
    assert by["tulu_gsm8k_cot"]["n"] == 2 and by["tulu_bbh_cot"]["n"] == 4
    assert set(by["tulu_tydiqa_goldp"]["subtasks"]) == {f"tulu_tydiqa_goldp_{x}" for x in ("en", "ru", "sw")}
    assert by["tulu_tydiqa_goldp"]["subtasks"]["tulu_tydiqa_goldp_sw"]["n"] == 1  # one Swahili item
    # ToxiGen: % toxic per target group (--limit 2 keeps the first file's two prompts)
    assert by["tulu_toxigen"]["higher_is_better"] is False and set(by["tulu_toxigen"]["subtasks"]) == {"asian"}
    assert by["tulu_toxigen"]["subtasks"]["asian"]["n"] == 2 and by["tulu_toxigen"]["score"] in (0.0, 50.0, 100.0)
    # the summary's averages are the study's: mean over settings, equal weight over averaged benchmarks
    b = summary["benchmarks"]
    assert b["mmlu"]["score"] == pytest.approx((by["tulu_mmlu_0shot"]["score"] + by["tulu_mmlu_5shot"]["score"]) / 2)
    averaged = [k for k, v in b.items() if v["in_average"]]
    assert "toxigen" not in averaged and "truthfulqa" not in averaged and "alpacaeval" in averaged
    assert summary["average"]["score"] == pytest.approx(sum(b[k]["score"] for k in averaged) / len(averaged))
    assert "Average (equal weight" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_scores_are_recomputable_from_the_samples(tulu_run):
    """The task score is what the per-sample log says (no hidden state): MMLU acc, GSM8K last number."""
    from polyinstruct.eval.scoring import exact_match, gsm8k_gold, last_number

    summary, out, _, _, _ = tulu_run
    by = {r["task"]: r for r in summary["tasks"]}
    rows = [s for ss in _samples(out, "tulu_mmlu_0shot").values() for s in ss]
    assert by["tulu_mmlu_0shot"]["score"] == pytest.approx(100 * sum(s["acc"] for s in rows) / len(rows))
    g = _samples(out, "tulu_gsm8k_cot")["tulu_gsm8k_cot"]
    mine = [float(exact_match(last_number(s["resps"][0][0]), gsm8k_gold(s["doc"]["answer"]))) for s in g]
    assert [s["exact_match"] for s in g] == mine


@pytest.mark.slow
def test_prompts_follow_the_protocol(tulu_run):
    _, out, judge, _, _ = tulu_run
    cot = _prompt(_samples(out, "tulu_gsm8k_cot")["tulu_gsm8k_cot"][0])
    direct = _prompt(_samples(out, "tulu_gsm8k_direct")["tulu_gsm8k_direct"][0])
    assert cot.count("Q: ") == 9 and direct.count("Q: ") == 9  # 8 exemplars + the question
    assert "There are 15 trees originally" in cot and "There are 15 trees originally" not in direct
    assert "A: The answer is 6.\n\n" in direct
    bbh = _prompt(_samples(out, "tulu_bbh_cot")["tulu_bbh_cot_boolean_expressions"][0])
    assert bbh.count("So the answer is") == 3  # the official 3-shot CoT prompt
    gp = _samples(out, "tulu_tydiqa_goldp")["tulu_tydiqa_goldp_ru"][0]
    cb = _samples(out, "tulu_tydiqa_closedbook")["tulu_tydiqa_closedbook_ru"][0]
    assert gp["doc"]["context"] in _prompt(gp) and gp["doc"]["context"] not in _prompt(cb)
    assert _prompt(gp).count("Вопрос:") == 2  # 1-shot, Russian prompt
    m5 = _samples(out, "tulu_mmlu_5shot")["tulu_mmlu_5shot_anatomy"][0]
    assert _prompt(m5).count("Answer:") == 6 and "about anatomy" in _prompt(m5)
    m0 = _samples(out, "tulu_mmlu_0shot")["tulu_mmlu_0shot_anatomy"][0]
    assert _prompt(m0).count("Answer:") == 1
    # AlpacaEval: the judge saw the model's answer next to text-davinci-003's
    assert len(judge.prompts) == 2 and any("Eat well, sleep enough" in str(p) for p in judge.prompts)
    preds = [json.loads(x) for x in (out / "tulu_alpacaeval" / "predictions.jsonl").read_text().splitlines()]
    assert [p["reference"] for p in preds][0] == "Eat well, sleep enough and exercise."


@pytest.mark.slow
def test_rerun_resumes_without_running_again(tulu_run, monkeypatch):
    import lm_eval

    from polyinstruct.eval.run import evaluate

    summary, out, _, loaded, opts = tulu_run

    def boom(*a, **k):
        raise AssertionError("lm-eval ran again")

    monkeypatch.setattr(lm_eval, "simple_evaluate", boom)
    again = evaluate(loaded, TULU_TASKS, out=out, data_dir=FIXTURES, limit=2, task_options=opts, model_name="tiny")
    assert [r["score"] for r in again["tasks"]] == [r["score"] for r in summary["tasks"]]


def test_tulu_suite_lists_every_benchmark_of_the_study():
    from polyinstruct.eval.tasks import TASKS, resolve_tasks

    tasks, missing = resolve_tasks("tulu")
    names = [t.name for t in tasks]
    assert names[:8] == TULU_TASKS[:8] and set(TULU_TASKS) <= set(names)
    for h in ("tulu_humaneval_pass1", "tulu_humaneval_pass10"):  # registered by polyinstruct.eval.humaneval
        assert (h in names) == (h in TASKS) and (h in missing) == (h not in TASKS)
    assert {t.benchmark for t in tasks} >= {"mmlu", "gsm8k", "bbh", "tydiqa", "truthfulqa", "toxigen", "alpacaeval"}


def _cli(*args, env_extra=None, timeout=600):
    env = {**os.environ, **OFFLINE, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "polyinstruct", "eval", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_cli_unknown_task_did_you_mean():
    r = _cli("some/model", "--tasks", "tulu_gsm8k_cott")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "unknown eval task or suite 'tulu_gsm8k_cot" in r.stderr and "Did you mean: tulu_gsm8k_cot" in r.stderr


def test_cli_missing_dataset_is_one_line(tmp_path):
    r = _cli("some/model", "--tasks", "tulu_gsm8k_cot", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert err == [f"error: dataset gsm8k not found: fetch test.jsonl (grade_school_math/data) from "
                   f"https://github.com/openai/grade-school-math and put it in {tmp_path}/gsm8k/ "
                   f"(or run online: hub dataset openai/gsm8k)"]


def test_cli_toxigen_without_classifier_is_one_line(tmp_path):
    r = _cli("some/model", "--tasks", "tulu_toxigen", "--data-dir", str(FIXTURES), "--out", str(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "error: ToxiGen needs its toxicity classifier (tomh/toxigen_roberta, on the hub only)" in r.stderr


def test_malformed_official_file_names_file_and_line(tmp_path):
    from polyinstruct.errors import DataError
    from polyinstruct.eval.suites.tulu import convert_mmlu

    (tmp_path / "data" / "test").mkdir(parents=True)
    (tmp_path / "data" / "test" / "x_test.csv").write_text('q,a,b,c,d,A\nq2,a,b,c,d,E\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"x_test.csv:2: answer: answer must be A-D"):
        convert_mmlu(tmp_path)


@pytest.mark.slow
def test_run_dir_with_adapter_uses_the_runs_template(tmp_path, tiny):
    """A run dir holding a PEFT adapter on its base is evaluated in the run's chat template."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from polyinstruct.eval.run import evaluate

    run = tmp_path / "run"
    base = AutoModelForCausalLM.from_pretrained(str(tiny))
    peft = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    peft.save_pretrained(str(run / "adapter"))
    cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny)
    (run / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    import polyinstruct

    shutil.copy(Path(polyinstruct.__file__).parent / "resources" / "templates" / "tulu.yaml", run / "template.yaml")
    summary = evaluate(str(run), "tulu_gsm8k_direct", out=tmp_path / "out", data_dir=FIXTURES, limit=1,
                       task_options={"max_new_tokens": "2"}, backend_options={"batch_size": 2})
    assert summary["chat"] is True and summary["template_source"] == "run_dir"
    s = _samples(tmp_path / "out", "tulu_gsm8k_direct")["tulu_gsm8k_direct"][0]
    assert _prompt(s).startswith("<|user|>\n") and _prompt(s).rstrip().endswith("<|assistant|>")
    assert "Q: Tom has 3 apples" in _prompt(s)
