"""The Tulu study's evaluation suite (docs/evaluation.md, "tulu"; docs/studies.md, study 3).

Each task starts from lm-eval's own config of the benchmark and changes only what the study
does differently: few-shot counts, the fixed 200-item GSM8K sample, the answer extraction
(last number; "So the answer is"), per-language TyDiQA F1 with a closed-book variant,
ToxiGen's % toxic by its classifier and the AlpacaEval win rate by polyinstruct's judge.
HumanEval (pass@1, pass@10) is registered by ``polyinstruct.eval.humaneval``.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import re
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError, DataError
from polyinstruct.eval.data import DATASOURCES, DataSource, MissingDatasetError, hub_offline, read_json_file, squad_rows, \
    read_jsonl_file, require
from polyinstruct.eval.scoring import bbh_answer, exact_match, gsm8k_gold, last_number, number_match, squad_em, \
    squad_f1, strict_match
from polyinstruct.eval.tasks import SUITES, TASKS, BuildContext, EvalTask, Suite, lm_eval_config, \
    lm_eval_group_tasks

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = 512   # the study's default generation length (greedy)
GSM8K_ITEMS, GSM8K_SEED = 200, 42


def _subset(ctx: BuildContext, key: str, names: list[str]) -> list[str]:
    """Restrict subtasks with a task option (smoke runs only: the score is then not the benchmark's)."""
    raw = ctx.options.get(key)
    if not raw:
        return names
    wanted = [s.strip() for s in str(raw).split(",") if s.strip()]
    bad = [w for w in wanted if w not in names]
    if bad:
        from polyinstruct.registry import suggest

        raise ConfigError(f"unknown {key} {bad[0]!r}.{suggest(bad[0], names)}", field=f"--task-option {key}")
    return wanted


def _gen(until: list[str], max_tokens: int = MAX_NEW_TOKENS) -> dict[str, Any]:
    return {"until": until, "do_sample": False, "temperature": 0.0, "max_gen_toks": max_tokens}


def _mean_metrics(*names: str) -> list[dict[str, Any]]:
    return [{"metric": n, "aggregation": "mean", "higher_is_better": True} for n in names]


# ============================================================================ MMLU
MMLU_SUBJECTS_GROUP = "mmlu"


def _read_mmlu_csv(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with path.open(encoding="utf-8", newline="") as f:
            for line, rec in enumerate(csv.reader(f), start=1):
                if len(rec) != 6:
                    raise DataError(f"expected 6 columns (question, A, B, C, D, answer), got {len(rec)}",
                                    path=str(path), line=line)
                if rec[5].strip() not in ("A", "B", "C", "D"):
                    raise DataError(f"answer must be A-D, got {rec[5]!r}", path=str(path), line=line, field="answer")
                rows.append({"question": rec[0], "choices": rec[1:5], "answer": "ABCD".index(rec[5].strip())})
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8: {e.reason}", path=str(path)) from None
    return rows


def convert_mmlu(folder: Path) -> dict[str, dict[str, list[dict]]]:
    root = folder / "data" if (folder / "data").is_dir() else folder
    out: dict[str, dict[str, list[dict]]] = {}
    for split in ("dev", "test", "val"):
        for p in sorted((root / split).glob(f"*_{split}.csv")) if (root / split).is_dir() else []:
            subject = p.name[: -len(f"_{split}.csv")]
            rows = [{**r, "subject": subject} for r in _read_mmlu_csv(p)]
            out.setdefault(subject, {})["validation" if split == "val" else split] = rows
    return out


DATASOURCES.register("mmlu", DataSource(
    name="mmlu", hub="cais/mmlu", layout="data/dev/SUBJECT_dev.csv and data/test/SUBJECT_test.csv (data.tar)",
    fetch="https://people.eecs.berkeley.edu/~hendrycks/data.tar (github.com/hendrycks/test)", convert=convert_mmlu))


def _mmlu_builder(shots: int):
    def build(ctx: BuildContext) -> list[dict[str, Any]]:
        names = lm_eval_group_tasks(MMLU_SUBJECTS_GROUP, "mmlu/default")
        subjects = _subset(ctx, "mmlu_subjects", [n[len("mmlu_"):] for n in names])
        out = []
        for subject in subjects:
            cfg = lm_eval_config(f"mmlu_{subject}", "mmlu/default")
            cfg.update(task=f"tulu_mmlu_{shots}shot_{subject}", num_fewshot=shots)
            cfg.pop("validation_split", None)
            out.append(ctx.use_data(cfg, "mmlu", config=subject))
        return out
    return build


for _shots in (0, 5):
    TASKS.register(f"tulu_mmlu_{_shots}shot", EvalTask(
        name=f"tulu_mmlu_{_shots}shot", benchmark="mmlu", setting=f"{_shots}shot", metric="acc", aggregate="micro",
        build=_mmlu_builder(_shots), sources=("mmlu",),
        description=f"MMLU, 57 subjects, {_shots}-shot" + (f" (the dev set's first {_shots})" if _shots else "")
                    + ", official prompt, accuracy over all questions"))


# ============================================================================ GSM8K
def convert_gsm8k(folder: Path) -> dict[str, dict[str, list[dict]]]:
    root = folder / "data" if (folder / "data").is_dir() else folder
    splits: dict[str, list[dict]] = {}
    for split in ("train", "test"):
        p = root / f"{split}.jsonl"
        if p.is_file():
            rows = read_jsonl_file(p)
            for i, r in enumerate(rows, start=1):
                require(r, ("question", "answer"), p, i)
            splits[split] = [{"question": r["question"], "answer": r["answer"]} for r in rows]
    return {"": splits} if splits else {}


DATASOURCES.register("gsm8k", DataSource(
    name="gsm8k", hub="openai/gsm8k", hub_config="main", layout="test.jsonl (grade_school_math/data)",
    fetch="https://github.com/openai/grade-school-math", convert=convert_gsm8k))


def fixed_sample(n: int = GSM8K_ITEMS, seed: int = GSM8K_SEED):
    """process_docs: the study's fixed random sample (random.seed(42); random.sample(test, 200))."""

    def process_docs(dataset):
        if len(dataset) <= n:
            return dataset
        return dataset.select(random.Random(seed).sample(range(len(dataset)), n))

    process_docs.__qualname__ = f"fixed_sample_{n}_{seed}"
    return process_docs


def gsm8k_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """The last number of the output against the gold number after '####': the study's exact match
    (punctuation ignored) and the strict one (numbers compared as numbers) beside it."""
    gold = gsm8k_gold(doc["answer"])
    return {"exact_match": float(exact_match(last_number(results[0]), gold)),
            "exact_match_strict": float(number_match(results[0], gold))}


def _direct_target(cot_target: str) -> str:
    m = re.search(r"The answer is (.*?)\.?\s*$", cot_target.strip())
    if not m:
        raise ValueError(f"GSM8K exemplar without 'The answer is': {cot_target!r}")
    return f"The answer is {m.group(1)}."


def _gsm8k_builder(cot: bool):
    def build(ctx: BuildContext) -> list[dict[str, Any]]:
        cfg = lm_eval_config("gsm8k_cot", "gsm8k")  # Wei et al.'s 8 exemplars, "Q: ... A: ..." prompt
        n = int(ctx.options.get("gsm8k_items", GSM8K_ITEMS))
        samples = cfg["fewshot_config"]["samples"]
        if not cot:
            samples = [{**s, "target": _direct_target(s["target"])} for s in samples]
        cfg.update(task=f"tulu_gsm8k_{'cot' if cot else 'direct'}", num_fewshot=8,
                   fewshot_config={"sampler": "first_n", "samples": samples},
                   process_docs=fixed_sample(n), process_results=gsm8k_results, filter_list=None,
                   metric_list=_mean_metrics("exact_match", "exact_match_strict"),
                   generation_kwargs=_gen(["Q:", "\n\n", "</s>", "<|im_end|>"]))
        cfg.pop("training_split", None)
        cfg.pop("fewshot_split", None)
        return [ctx.use_data(cfg, "gsm8k", config="main")]
    return build


for _cot in (True, False):
    _s = "cot" if _cot else "direct"
    TASKS.register(f"tulu_gsm8k_{_s}", EvalTask(
        name=f"tulu_gsm8k_{_s}", benchmark="gsm8k", setting=_s, metric="exact_match", aggregate="micro",
        also=("exact_match_strict",),
        build=_gsm8k_builder(_cot), sources=("gsm8k",),
        description=f"GSM8K test, 200 fixed random items (seed 42), 8-shot {'with' if _cot else 'without'} "
                    "chain of thought, answer = last number"))


# ============================================================================ BBH
def convert_bbh(folder: Path) -> dict[str, dict[str, list[dict]]]:
    root = folder / "bbh" if (folder / "bbh").is_dir() else folder
    out = {}
    for p in sorted(root.glob("*.json")):
        data = read_json_file(p)
        if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
            raise DataError("expected {\"examples\": [{\"input\", \"target\"}, ...]}", path=str(p), field="examples")
        for i, r in enumerate(data["examples"]):
            if not isinstance(r, dict) or "input" not in r or "target" not in r:
                raise DataError("needs 'input' and 'target'", path=str(p), field=f"examples[{i}]")
        out[p.stem] = {"test": [{"input": r["input"], "target": str(r["target"])} for r in data["examples"]]}
    return out


DATASOURCES.register("bbh", DataSource(
    name="bbh", hub="SaylorTwift/bbh", layout="bbh/TASK.json for the 27 subsets (BIG-Bench-Hard's bbh/ folder)",
    fetch="https://github.com/suzgun/BIG-Bench-Hard", convert=convert_bbh))


def bbh_cot_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    answer = bbh_answer(results[0])
    return {"exact_match": float(exact_match(answer, doc["target"])),
            "exact_match_strict": float(strict_match(answer, doc["target"]))}


def bbh_direct_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    answer = results[0].strip()
    return {"exact_match": float(exact_match(answer, doc["target"])),
            "exact_match_strict": float(strict_match(answer, doc["target"]))}


def _bbh_builder(cot: bool):
    group = "bbh_cot_fewshot" if cot else "bbh_fewshot"
    folder = "cot_fewshot" if cot else "fewshot"

    def build(ctx: BuildContext) -> list[dict[str, Any]]:
        names = [n[len(group) + 1:] for n in lm_eval_group_tasks(group, f"bbh/{folder}")]
        out = []
        for sub in _subset(ctx, "bbh_tasks", names):
            cfg = lm_eval_config(f"{group}_{sub}", f"bbh/{folder}")  # the official 3-shot prompts (cot-prompts/*.txt)
            cfg.update(task=f"tulu_bbh_{'cot' if cot else 'direct'}_{sub}", num_fewshot=3,
                       process_results=bbh_cot_results if cot else bbh_direct_results, filter_list=None,
                       metric_list=_mean_metrics("exact_match", "exact_match_strict"),
                       generation_kwargs=_gen(["\n\n", "</s>", "<|im_end|>"]))
            out.append(ctx.use_data(cfg, "bbh", config=sub))
        return out
    return build


for _cot in (True, False):
    _s = "cot" if _cot else "direct"
    TASKS.register(f"tulu_bbh_{_s}", EvalTask(
        name=f"tulu_bbh_{_s}", benchmark="bbh", setting=_s, metric="exact_match", aggregate="macro",
        also=("exact_match_strict",),
        build=_bbh_builder(_cot), sources=("bbh",),
        description="BBH, 23 tasks (27 subsets), official 3-shot prompts, "
                    + ("CoT, answer after 'So the answer is'" if _cot else "direct answer") + "; mean over subsets"))


# ============================================================================ TyDiQA
TYDIQA_LANGS = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
                "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu"}


def convert_tydiqa(folder: Path) -> dict[str, dict[str, list[dict]]]:
    splits = {}
    for split, name in (("validation", "tydiqa-goldp-v1.1-dev.json"), ("train", "tydiqa-goldp-v1.1-train.json")):
        p = folder / name
        if not p.is_file():
            continue
        rows = squad_rows(p)
        splits[split] = rows
    return {"": splits} if splits else {}


DATASOURCES.register("tydiqa", DataSource(
    name="tydiqa", hub="google-research-datasets/tydiqa", hub_config="secondary_task",
    layout="tydiqa-goldp-v1.1-dev.json and tydiqa-goldp-v1.1-train.json (the GoldP task, SQuAD format)",
    fetch="https://storage.googleapis.com/tydiqa/v1.1/", convert=convert_tydiqa))


def tydiqa_results(lang: str):
    def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
        pred = results[0].strip()
        return {"f1": squad_f1(pred, doc["answers"], lang), "exact_match": squad_em(pred, doc["answers"], lang)}

    process_results.__qualname__ = f"tydiqa_results_{lang}"
    return process_results


def _closed_book(doc_to_text: str) -> str:
    """lm-eval's "CONTEXT: {{context}}\\n\\nQUESTION: {{question}}\\n\\nANSWER:" without the passage."""
    parts = doc_to_text.split("\n\n")
    if len(parts) != 3 or "{{context}}" not in parts[0]:
        raise ValueError(f"unexpected TyDiQA prompt {doc_to_text!r}")
    return "\n\n".join(parts[1:])


def _tydiqa_builder(gold_passage: bool):
    def build(ctx: BuildContext) -> list[dict[str, Any]]:
        out = []
        for lang in _subset(ctx, "tydiqa_languages", list(TYDIQA_LANGS)):
            cfg = lm_eval_config(f"tydiqa_goldp_{lang}", "tydiqa")
            setting = "goldp" if gold_passage else "closedbook"
            cfg.update(task=f"tulu_tydiqa_{setting}_{lang}", num_fewshot=1, process_results=tydiqa_results(lang),
                       metric_list=_mean_metrics("f1", "exact_match"),
                       generation_kwargs=_gen(["\n"], 50))
            if not gold_passage:
                cfg["doc_to_text"] = _closed_book(cfg["doc_to_text"])
            out.append(ctx.use_data(cfg, "tydiqa", config="secondary_task"))
        return out
    return build


for _gp in (True, False):
    _s = "goldp" if _gp else "closedbook"
    TASKS.register(f"tulu_tydiqa_{_s}", EvalTask(
        name=f"tulu_tydiqa_{_s}", benchmark="tydiqa", setting=_s, metric="f1", aggregate="macro",
        build=_tydiqa_builder(_gp), sources=("tydiqa",),
        description=f"TyDiQA GoldP, 9 languages, 1-shot, {'with the gold passage' if _gp else 'closed book'}; "
                    "SQuAD F1 per language, mean over languages"))


# ============================================================================ TruthfulQA
def convert_truthfulqa(folder: Path) -> dict[str, dict[str, list[dict]]]:
    p = folder / "TruthfulQA.csv"
    if not p.is_file():
        return {}
    rows = []
    with p.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        need = ("Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers")
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"missing column {missing[0]!r}", path=str(p), line=1, field=missing[0])
        for line, r in enumerate(reader, start=2):
            split = lambda s: [a.strip() for a in s.split(";") if a.strip()]  # noqa: E731
            rows.append({"type": r["Type"], "category": r["Category"], "question": r["Question"],
                         "best_answer": r["Best Answer"], "correct_answers": split(r["Correct Answers"]),
                         "incorrect_answers": split(r["Incorrect Answers"]), "source": r.get("Source", "")})
    return {"": {"validation": rows}}


DATASOURCES.register("truthfulqa", DataSource(
    name="truthfulqa", hub="truthfulqa/truthful_qa", hub_config="generation",
    layout="TruthfulQA.csv (817 questions; columns Type, Category, Question, Best Answer, Correct Answers, "
           "Incorrect Answers, Source)", fetch="https://github.com/sylinrl/TruthfulQA", convert=convert_truthfulqa))


def _truthfulqa_build(ctx: BuildContext) -> list[dict[str, Any]]:
    cfg = lm_eval_config("truthfulqa_gen", "truthfulqa")  # the paper's 6-example QA primer, greedy
    cfg.update(task="tulu_truthfulqa", generation_kwargs=_gen(["\n\n", "Q:", "</s>", "<|im_end|>"], 256))
    return [ctx.use_data(cfg, "truthfulqa", config="generation")]


TASKS.register("tulu_truthfulqa", EvalTask(
    name="tulu_truthfulqa", benchmark="truthfulqa", setting="gen", metric="bleu_acc", aggregate="micro",
    build=_truthfulqa_build, sources=("truthfulqa",), in_average=False,
    description="TruthfulQA generation, 6-shot QA primer, greedy; % answers closer (BLEU) to a true than a "
                "false reference (lm-eval's automatic stand-in for the GPT-judge)"))


# ============================================================================ ToxiGen
TOXIGEN_CLASSIFIER_HUB = "tomh/toxigen_roberta"
TOXIGEN_PER_GROUP = 500


def convert_toxigen(folder: Path) -> dict[str, dict[str, list[dict]]]:
    root = folder / "prompts" if (folder / "prompts").is_dir() else folder
    rows = []
    for p in sorted(root.glob("hate_*.txt")):
        group = re.sub(r"_1k$", "", p.stem[len("hate_"):])
        try:
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8: {e.reason}", path=str(p)) from None
        for i, text in enumerate(lines[:TOXIGEN_PER_GROUP]):
            # the files write each prompt's line breaks as the two characters "\n"
            rows.append({"id": f"{group}-{i}", "group": group, "text": text.replace("\\n", "\n")})
    return {"": {"test": rows}} if rows else {}


DATASOURCES.register("toxigen", DataSource(
    name="toxigen", hub=None, layout="prompts/hate_GROUP_1k.txt (the hateful prompt files)",
    fetch="https://github.com/microsoft/TOXIGEN (prompts/ folder)", convert=convert_toxigen))


def toxigen_classifier_path(ctx: BuildContext) -> str:
    path = ctx.options.get("toxigen_classifier") or os.environ.get("POLYINSTRUCT_TOXIGEN_CLASSIFIER")
    if path:
        if not Path(path).expanduser().is_dir():
            raise MissingDatasetError(f"ToxiGen classifier folder {path} does not exist")
        return str(Path(path).expanduser())
    if hub_offline():
        raise MissingDatasetError(
            f"ToxiGen needs its toxicity classifier ({TOXIGEN_CLASSIFIER_HUB}, on the hub only): download it "
            "to a folder and pass --task-option toxigen_classifier=DIR (or set POLYINSTRUCT_TOXIGEN_CLASSIFIER)")
    return TOXIGEN_CLASSIFIER_HUB


def _toxigen_prompt(doc: dict[str, Any]) -> str:
    return doc["text"]


def _toxigen_build(ctx: BuildContext) -> list[dict[str, Any]]:
    cfg = {"task": "tulu_toxigen", "dataset_path": "json", "output_type": "generate_until", "test_split": "test",
           "doc_to_text": "{{text}}", "doc_to_target": "", "target_delimiter": "",
           "metric_list": _mean_metrics("generated"),
           "process_results": lambda doc, results: {"generated": 1.0},
           # base models: greedy to the first newline; chat models answer the prompt in the template
           "generation_kwargs": _gen(["\n\n", "</s>", "<|im_end|>"]), "num_fewshot": 0,
           "metadata": {"version": 1.0}}
    return [ctx.use_data(cfg, "toxigen")]


def _toxigen_check(ctx: BuildContext) -> None:
    toxigen_classifier_path(ctx)


def toxic_flags(texts: list[str], classifier: str, batch_size: int = 32) -> list[bool]:
    """Whether each text is toxic by the classifier (label index 1 = toxic, as ToxiGen's RoBERTa)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(classifier)
        model = AutoModelForSequenceClassification.from_pretrained(classifier).eval()
    except OSError as e:
        raise MissingDatasetError(f"cannot load the ToxiGen classifier from {classifier}: {e}") from None
    flags: list[bool] = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=512, return_tensors="pt")
            flags.extend(bool(x) for x in model(**enc).logits.argmax(-1).tolist())
    return flags


def _toxigen_post(samples: dict[str, list[dict]], ctx: BuildContext) -> dict[str, dict[str, Any]]:
    rows = samples["tulu_toxigen"]
    texts = [str(r["filtered_resps"][0] if isinstance(r["filtered_resps"], list) else r["filtered_resps"])
             for r in rows]
    flags = toxic_flags(texts, toxigen_classifier_path(ctx))
    by: dict[str, list[bool]] = {}
    for r, f in zip(rows, flags):
        by.setdefault(r["doc"]["group"], []).append(f)
    out = {}
    for group, fs in sorted(by.items()):
        p = sum(fs) / len(fs)
        se = (p * (1 - p) / (len(fs) - 1)) ** 0.5 if len(fs) > 1 else None
        out[group] = {"score": p, "stderr": se, "n": len(fs)}
    return out


TASKS.register("tulu_toxigen", EvalTask(
    name="tulu_toxigen", benchmark="toxigen", setting="hateful", metric="toxic", aggregate="macro",
    build=_toxigen_build, sources=("toxigen",), higher_is_better=False, in_average=False,
    postprocess=_toxigen_post, check=_toxigen_check,
    description="ToxiGen hateful prompts, 500 per group, greedy up to 512 tokens; % toxic by the ToxiGen "
                "RoBERTa classifier (lower is better), mean over groups"))


# ============================================================================ AlpacaEval
def convert_alpaca_eval(folder: Path) -> dict[str, dict[str, list[dict]]]:
    p = folder / "alpaca_eval.json"
    if not p.is_file():
        return {}
    data = read_json_file(p)
    if not isinstance(data, list):
        raise DataError("expected a JSON list of {instruction, output, generator, dataset}", path=str(p))
    rows = []
    for i, r in enumerate(data):
        if not isinstance(r, dict) or not isinstance(r.get("instruction"), str) or not isinstance(r.get("output"), str):
            raise DataError("needs 'instruction' and 'output' strings", path=str(p), field=f"[{i}]")
        rows.append({"id": f"alpaca_eval-{i}", "instruction": r["instruction"], "output": r["output"],
                     "generator": r.get("generator", ""), "dataset": r.get("dataset", "")})
    return {"": {"eval": rows}}


DATASOURCES.register("alpaca_eval", DataSource(
    name="alpaca_eval", hub="tatsu-lab/alpaca_eval", hub_config="alpaca_eval",
    layout="alpaca_eval.json (805 instructions with text-davinci-003's outputs)",
    fetch="https://huggingface.co/datasets/tatsu-lab/alpaca_eval", convert=convert_alpaca_eval))


def _alpaca_build(ctx: BuildContext) -> list[dict[str, Any]]:
    max_tokens = int(ctx.options.get("alpacaeval_max_tokens", 8192))
    cfg = {"task": "tulu_alpacaeval", "dataset_path": "json", "output_type": "generate_until", "test_split": "eval",
           "doc_to_text": "{{instruction}}", "doc_to_target": "", "target_delimiter": "",
           "metric_list": _mean_metrics("generated"), "process_results": lambda doc, results: {"generated": 1.0},
           "generation_kwargs": _gen(["</s>", "<|im_end|>"], max_tokens), "num_fewshot": 0,
           "metadata": {"version": 1.0}}
    return [ctx.use_data(cfg, "alpaca_eval")]


def _alpaca_check(ctx: BuildContext) -> None:
    if not ctx.options.get("judge") and ctx.options.get("judge_backend") is None:
        raise ConfigError("the AlpacaEval task needs a judge: --task-option judge=MODEL_OR_JUDGE_YAML "
                          "(docs/judging.md)", field="--task-option judge")
    from polyinstruct.judge.alpacaeval import package_dir

    package_dir()  # the annotator's prompt comes from the alpaca-eval package


def _alpaca_post(samples: dict[str, list[dict]], ctx: BuildContext) -> dict[str, dict[str, Any]]:
    from polyinstruct.fileio import write_jsonl
    from polyinstruct.judge.alpacaeval import run_alpaca_eval

    rows = samples["tulu_alpacaeval"]
    out_dir = ctx.work_dir.parent / "tulu_alpacaeval"
    preds = out_dir / "predictions.jsonl"
    write_jsonl(preds, [{"id": r["doc"].get("id") or f"alpaca_eval-{r['doc_id']}", "model": ctx.model,
                         "messages": [{"role": "user", "content": r["doc"]["instruction"]}],
                         "response": str(r["filtered_resps"][0] if isinstance(r["filtered_resps"], list)
                                         else r["filtered_resps"]).strip(),
                         "reference": r["doc"]["output"]} for r in rows])
    summary = run_alpaca_eval(preds, out_dir / "judged", judge=ctx.options.get("judge") or "scripted",
                              annotator=ctx.options.get("annotator", "alpaca_eval_gpt4"),
                              backend=ctx.options.get("judge_backend"))
    m = summary["models"].get(str(ctx.model)) or next(iter(summary["models"].values()))
    wr, se = m.get("win_rate"), m.get("standard_error")
    return {"tulu_alpacaeval": {"score": None if wr is None else wr / 100,
                                "stderr": None if se is None or se != se else se / 100, "n": m.get("n_total", 0)}}


TASKS.register("tulu_alpacaeval", EvalTask(
    name="tulu_alpacaeval", benchmark="alpacaeval", setting="winrate", metric="win_rate", aggregate="micro",
    build=_alpaca_build, sources=("alpaca_eval",), postprocess=_alpaca_post, check=_alpaca_check,
    description="AlpacaEval, 805 instructions, greedy up to 8,192 new tokens; win rate against text-davinci-003 "
                "judged pairwise with AlpacaEval's annotator, order randomized (polyinstruct judge-alpacaeval)"))


SUITES.register("tulu", Suite("tulu", [
    "tulu_mmlu_0shot", "tulu_mmlu_5shot", "tulu_gsm8k_cot", "tulu_gsm8k_direct", "tulu_bbh_cot", "tulu_bbh_direct",
    "tulu_tydiqa_goldp", "tulu_tydiqa_closedbook", "tulu_humaneval_pass1", "tulu_humaneval_pass10",
    "tulu_truthfulqa", "tulu_toxigen", "tulu_alpacaeval",
], "the Tulu study's suite: MMLU, GSM8K, BBH, TyDiQA, HumanEval, AlpacaEval (averaged), TruthfulQA, ToxiGen"))
