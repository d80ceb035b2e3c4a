"""The crosslingual, alpaca-cot and multilingual suites end to end on the tiny model, offline,
from fixtures in each dataset's official layout (tests/eval/fixtures/data; MMCU's .xlsx and
Global-MMLU's .parquet files are written here at test time), and their golden scoring."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

sys.path.insert(0, str(Path(__file__).parent.parent / "judge"))
from fake_server import ScriptedServer  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "data"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TASKS = ["xl_xquad", "xl_mlqa", "xl_flores_en_x", "xl_flores_x_en", "ac_mmcu", "ac_belle_eval",
         "ml_mgsm_direct", "ml_mgsm_native_cot", "ml_belebele", "ml_global_mmlu"]
LANGS = "en,ru,zh,fr"

MMCU = {  # file -> {sheet: [(question, A, B, C, D, answer)]}
    "医疗": {"药理学": [("阿司匹林属于哪类药物？", "A、抗生素", "B、解热镇痛药", "C、降压药", "D、利尿药", "B"),
                      ("胰岛素用于治疗哪种疾病？", "A、糖尿病", "B、高血压", "C、肺炎", "D、贫血", "A")],
           "解剖学": [("人体最大的器官是什么？", "A、心脏", "B、肝脏", "C、皮肤", "D、大脑", "C")]},
    "法律": {"Sheet1": [("我国的根本大法是什么？", "A、刑法", "B、民法典", "C、宪法", "D、行政法", "C"),
                       ("成年人的年龄标准是多少周岁？", "A、16", "B、18", "C、20", "D、21", "B")]},
}
GMMLU = {lang: [{"sample_id": f"{lang}-{i}", "subject": "anatomy", "subject_category": "Medical",
                 "question": q, "option_a": a, "option_b": b, "option_c": c, "option_d": d, "answer": ans}
                for i, (q, a, b, c, d, ans) in enumerate(rows)]
         for lang, rows in {
             "en": [("Which organ pumps blood?", "Lung", "Heart", "Kidney", "Skin", "B"),
                    ("How many bones does an adult human have?", "206", "106", "306", "26", "A")],
             "ru": [("Какой орган перекачивает кровь?", "Лёгкое", "Сердце", "Почка", "Кожа", "B")],
             "zh": [("哪个器官负责泵血？", "肺", "心脏", "肾", "皮肤", "B")],
             "fr": [("Quel organe pompe le sang ?", "Le poumon", "Le cœur", "Le rein", "La peau", "B")]}.items()}


def write_mmcu(root: Path) -> None:
    import openpyxl

    for split in ("test", "dev"):
        (root / split).mkdir(parents=True, exist_ok=True)
        for name, sheets in MMCU.items():
            wb = openpyxl.Workbook()
            wb.remove(wb.active)
            for sheet, rows in sheets.items():
                ws = wb.create_sheet(sheet)
                ws.append(["题目", "A", "B", "C", "D", "答案"])
                for r in rows:
                    ws.append(list(r))
            wb.save(root / split / f"{name}.xlsx")


def write_global_mmlu(root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for lang, rows in GMMLU.items():
        (root / lang).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), root / lang / "test-00000-of-00001.parquet")
        pq.write_table(pa.Table.from_pylist(rows[:1]), root / lang / "dev-00000-of-00001.parquet")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    for name in ("xquad", "mlqa", "flores101", "mgsm", "belebele", "belle_eval"):
        shutil.copytree(FIXTURES / name, d / name)
    write_mmcu(d / "mmcu")
    write_global_mmlu(d / "global_mmlu")
    return d


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


def _judge_reply(body, n):
    """A judge that gives 1 to answers containing the gold '8', 0.5 otherwise (Belle's '得分: X')."""
    text = body["messages"][-1]["content"]
    answer = text.rsplit("模型回答:", 1)[-1]
    return ("ok", "得分: 1分。正确。" if "8" in answer else "得分: 0.5分。部分正确。")


@pytest.fixture(scope="module")
def run(tmp_path_factory, offline, data_dir):
    from polyinstruct.eval.models import load_model
    from polyinstruct.eval.run import evaluate
    from polyinstruct.models.tiny import build_tiny_model

    tiny = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    out = tmp_path_factory.mktemp("eval") / "xl"
    loaded = load_model(str(tiny), "hf", batch_size=4)
    with ScriptedServer(_judge_reply) as srv:
        judge = {"model": "judge-x", "base_url": srv.base_url, "timeout": 5, "max_retries": 0,
                 "cache_dir": str(tmp_path_factory.mktemp("judge_cache"))}
        opts = {"languages": LANGS, "max_new_tokens": "6", "belle_max_tokens": "6", "judge": judge}
        summary = evaluate(loaded, TASKS, out=out, data_dir=data_dir, limit=2, task_options=opts, model_name="tiny")
        calls = list(srv.calls)
    return summary, out, calls


def _samples(out, task):
    rows = {}
    for p in sorted((out / task).glob("samples_*.jsonl")):
        rows[p.stem[len("samples_"):]] = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]
    return rows


def _prompt(s):
    return s["arguments"]["gen_args_0"]["arg_0"] if "gen_args_0" in s["arguments"] else s["arguments"][0][0]


@pytest.mark.slow
def test_every_task_runs_end_to_end_with_per_language_subtasks(run):
    summary, out, _ = run
    assert [r["task"] for r in summary["tasks"]] == TASKS
    by = {r["task"]: r for r in summary["tasks"]}
    for r in summary["tasks"]:
        assert r["score"] is not None and 0 <= r["score"] <= 100, r
        assert (out / r["task"] / "results.json").is_file()
    assert set(by["xl_xquad"]["subtasks"]) == {"xl_xquad_en", "xl_xquad_ru", "xl_xquad_zh"}
    assert set(by["xl_mlqa"]["subtasks"]) == {"xl_mlqa_en", "xl_mlqa_zh"}  # MLQA has no ru, fr
    assert set(by["xl_flores_en_x"]["subtasks"]) == {f"xl_flores_en_x_{x}" for x in ("fr", "ru", "zh")}
    assert set(by["xl_flores_x_en"]["subtasks"]) == {f"xl_flores_x_en_{x}" for x in ("fr", "ru", "zh")}
    assert set(by["ml_mgsm_direct"]["subtasks"]) == {f"ml_mgsm_direct_{x}" for x in ("en", "ru", "zh", "fr")}
    assert set(by["ml_belebele"]["subtasks"]) == {f"ml_belebele_{x}" for x in ("en", "ru", "zh", "fr")}
    assert set(by["ml_global_mmlu"]["subtasks"]) == {f"ml_global_mmlu_{x}" for x in ("en", "ru", "zh", "fr")}
    assert set(by["ac_mmcu"]["subtasks"]) == {"ac_mmcu_medicine", "ac_mmcu_law"}
    assert by["ac_mmcu"]["n"] == 4 and by["xl_xquad"]["subtasks"]["xl_xquad_ru"]["n"] == 2
    assert "exact_match" in by["xl_xquad"]["subtasks"]["xl_xquad_zh"]
    # the report's per-language charts pick these tasks up by their subtask names
    from polyinstruct.report.benchmarks import per_language

    per = per_language({"arm": summary})
    assert set(per) >= {"xl_xquad", "xl_mlqa", "xl_flores_en_x", "xl_flores_x_en", "ml_mgsm_direct"}
    assert set(per["xl_flores_x_en"]["arm"]) == {"fr", "ru", "zh"}


@pytest.mark.slow
def test_scores_are_recomputable_from_the_samples(run):
    from sacrebleu.metrics import CHRF

    from polyinstruct.eval.scoring import exact_match, last_number, squad_f1

    summary, out, _ = run
    by = {r["task"]: r for r in summary["tasks"]}
    zh = _samples(out, "xl_xquad")["xl_xquad_zh"]
    f1 = [squad_f1(s["resps"][0][0].strip(), s["doc"]["answers"]["text"], "zh") for s in zh]
    assert by["xl_xquad"]["subtasks"]["xl_xquad_zh"]["score"] == pytest.approx(100 * sum(f1) / len(f1))
    fr = _samples(out, "xl_flores_en_x")["xl_flores_en_x_fr"]
    chrf = CHRF().corpus_score([s["resps"][0][0].strip() for s in fr], [[s["doc"]["target"] for s in fr]]).score
    sub = by["xl_flores_en_x"]["subtasks"]["xl_flores_en_x_fr"]
    assert sub["score"] == pytest.approx(chrf) and sub["stderr"] is not None and sub["stderr"] >= 0
    from polyinstruct.eval.suites.crosslingual import spbleu_tokenizer

    if spbleu_tokenizer() is None:  # sacrebleu's Flores SentencePiece model is not on this machine
        assert sub["spbleu"] is None and "spBLEU not computed" in sub["note"]
    else:
        assert 0 <= sub["spbleu"] <= 100
    g = _samples(out, "ml_mgsm_direct")["ml_mgsm_direct_ru"]
    assert [s["exact_match"] for s in g] == [
        float(exact_match(last_number(s["resps"][0][0]), str(s["doc"]["answer_number"]))) for s in g]


@pytest.mark.slow
def test_prompts_follow_the_protocol(run):
    _, out, _ = run
    x = _samples(out, "xl_xquad")["xl_xquad_ru"][0]
    assert _prompt(x).startswith("Контекст: ") and x["doc"]["context"] in _prompt(x)
    f = _samples(out, "xl_flores_en_x")["xl_flores_en_x_zh"][0]
    assert "from English to Chinese" in _prompt(f) and "The cat sleeps on the sofa." in _prompt(f)
    m = _samples(out, "ac_mmcu")["ac_mmcu_law"][0]
    p = _prompt(m)
    assert p.startswith("请阅读以下选择题并给出正确选项，不要解释原因。") and p.rstrip().endswith("正确答案的序号是：")
    assert "\nC. 宪法" in p and "C、" not in p  # the option's own letter prefix removed, as the official script
    cot = _samples(out, "ml_mgsm_native_cot")["ml_mgsm_native_cot_zh"][0]
    assert "逐步解答" in _prompt(cot)


@pytest.mark.slow
def test_belle_eval_is_judged_against_the_gold_answer(run):
    summary, out, calls = run
    by = {r["task"]: r for r in summary["tasks"]}
    judged = [json.loads(x) for x in (out / "ac_belle_eval" / "judgments.jsonl").read_text().splitlines()]
    assert len(judged) == 2 and len(calls) == 2  # --limit 2
    assert all(j["score"] == 0.5 for j in judged)  # the tiny model never writes the gold '8'
    assert by["ac_belle_eval"]["score"] == pytest.approx(50.0)
    math_call = [c for c in calls if "3加5" in json.dumps(c, ensure_ascii=False)]
    assert math_call and "你是一名数学老师" in json.dumps(math_call[0], ensure_ascii=False)  # eval_prompt.json's prompt
    assert "标准回答: 8" in json.dumps(math_call[0], ensure_ascii=False)


# -- golden scoring ----------------------------------------------------------------------------

def test_squad_f1_chinese_and_russian_by_hand():
    from polyinstruct.eval.scoring import squad_em, squad_f1

    # Chinese: characters are tokens. pred 两万公里 (4 chars) vs gold 两万多公里 (5): 4 common
    # P = 4/4, R = 4/5, F1 = 2*1*0.8/1.8 = 0.8889
    assert squad_f1("两万公里", "两万多公里", "zh") == pytest.approx(8 / 9)
    assert squad_f1("北京。", "北京", "zh") == 1.0 and squad_em("北京。", "北京", "zh") == 1.0
    # Russian: words, case and punctuation ignored. pred "в 1935" vs gold "В 1935 году": 2 common,
    # P = 2/2, R = 2/3, F1 = 0.8
    assert squad_f1("в 1935", "В 1935 году.", "ru") == pytest.approx(0.8)
    assert squad_em("Байкал!", "байкал", "ru") == 1.0 and squad_f1("Онега", "Байкал", "ru") == 0.0
    assert squad_f1("Байкал", ["Онега", "озеро Байкал"], "ru") == pytest.approx(2 / 3)  # best gold


def test_chrf_on_a_known_pair():
    from polyinstruct.eval.suites.crosslingual import translation_scores

    assert translation_scores(["Le chat dort."], ["Le chat dort."], "fr")["chrf"] == pytest.approx(100.0)
    # chrF2 by hand for "ab" vs "abc" (characters, spaces removed; n = 1..6, beta = 2):
    # n=1: P = 2/2, R = 2/3; n=2: P = 1/1, R = 1/2; n>=3: no hypothesis n-grams (left out of the mean,
    # as sacrebleu averages over the orders that exist). avg P = 1, avg R = (2/3 + 1/2)/2 = 7/12.
    p, r = 1.0, 7 / 12
    expected = 100 * (1 + 4) * p * r / (4 * p + r)
    assert translation_scores(["ab"], ["abc"], "fr")["chrf"] == pytest.approx(expected, abs=0.01)
    assert translation_scores(["xyz"], ["abc"], "fr")["chrf"] == pytest.approx(0.0)


def test_mgsm_number_extraction():
    from polyinstruct.eval.suites.multilingual import mgsm_results

    doc = {"answer_number": 1500}
    def both(doc, out):
        r = mgsm_results(doc, [out])
        return r["exact_match"], r["exact_match_strict"]

    assert both(doc, "Всего 1,200 + 300 = 1 500? Ответ: 1500.") == (1.0, 1.0)
    assert both(doc, "答案是 1500。") == (1.0, 1.0)
    assert both(doc, "1500 pages, then 3 more") == (0.0, 0.0)  # the last number counts
    assert both({"answer_number": 7}, "Il reste 7 pommes") == (1.0, 1.0)
    assert both({"answer_number": 7}, "no number") == (0.0, 0.0)


def test_mmcu_answer_rule_and_belle_score_parsing():
    from polyinstruct.eval.suites.alpaca_cot import belle_score, mmcu_correct

    assert mmcu_correct("B", "B") and mmcu_correct("正确答案是B。", "B") and mmcu_correct("A、B", "AB")
    assert not mmcu_correct("C", "B") and not mmcu_correct("A", "AB")
    assert belle_score("得分: 1分。") == 1.0 and belle_score("得分：0.5") == 0.5 and belle_score("很好") is None


def test_language_option_keeps_what_a_benchmark_has():
    from polyinstruct.errors import ConfigError
    from polyinstruct.eval.suites.crosslingual import XQUAD_LANGS, languages
    from polyinstruct.eval.tasks import BuildContext

    ctx = BuildContext(data_dir=None, work_dir=Path("."), options={"languages": "fr,bg,ru,zh"})
    assert languages(ctx, XQUAD_LANGS, benchmark="XQuAD") == ["ru", "zh"]
    with pytest.raises(ConfigError, match="XQuAD has none of the languages fr, bg"):
        languages(BuildContext(data_dir=None, work_dir=Path("."), options={"languages": "fr,bg"}),
                  XQUAD_LANGS, benchmark="XQuAD")


def test_suites_list_their_tasks():
    from polyinstruct.eval.tasks import resolve_tasks

    for suite, names in (("crosslingual", ["xl_xquad", "xl_mlqa", "xl_flores_en_x", "xl_flores_x_en"]),
                         ("alpaca-cot", ["ac_mmcu", "ac_belle_eval"]),
                         ("multilingual", ["ml_mgsm_direct", "ml_belebele", "ml_global_mmlu"])):
        tasks, missing = resolve_tasks(suite)
        assert [t.name for t in tasks] == names and missing == []


@pytest.mark.parametrize("task,name,fetch", [
    ("xl_xquad", "xquad", "github.com/google-deepmind/xquad"),
    ("xl_flores_en_x", "flores101", "flores101_dataset.tar.gz"),
    ("ac_mmcu", "mmcu", "Felixgithub2017/MMCU"),
    ("ml_belebele", "belebele", "github.com/facebookresearch/belebele"),
])
def test_missing_dataset_is_one_line(tmp_path, task, name, fetch):
    env = {**os.environ, **OFFLINE}
    r = subprocess.run([sys.executable, "-m", "polyinstruct", "eval", "some/model", "--tasks", task, "--data-dir",
                        str(tmp_path), "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and err[0].startswith(f"error: dataset {name} not found: fetch ") and fetch in err[0]
    assert f"{tmp_path}/{name}/" in err[0]


def test_malformed_files_name_file_and_line(tmp_path):
    from polyinstruct.errors import DataError
    from polyinstruct.eval.suites.alpaca_cot import convert_belle
    from polyinstruct.eval.suites.crosslingual import convert_flores
    from polyinstruct.eval.suites.multilingual import convert_mgsm

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mgsm_en.tsv").write_text("q1\t3\nq2\tseven\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mgsm_en.tsv:2: answer: answer must be a number"):
        convert_mgsm(tmp_path / "m")
    d = tmp_path / "f" / "devtest"
    d.mkdir(parents=True)
    (d / "eng.devtest").write_text("a\nb\n", encoding="utf-8")
    (d / "fra.devtest").write_text("a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"fra.devtest: 1 lines, but eng.devtest has 2"):
        convert_flores(tmp_path / "f")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "eval_set.json").write_text('{"question": "q", "class": "qa", "std_answer": "a"}\n'
                                                  '{"question": "q", "class": "qa"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"eval_set.json:2: std_answer"):
        convert_belle(tmp_path / "b")
