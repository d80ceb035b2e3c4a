"""The Alpaca-CoT study's Chinese evaluation (docs/evaluation.md, "alpaca-cot"; docs/studies.md).

- MMCU: Chinese multiple-choice exams in medicine, law, psychology and education. The
  official evaluation asks for the option letter(s) ("请阅读以下选择题并给出正确选项，不要解释原因。",
  each option on its own line, then "正确答案的序号是："), zero-shot, and counts an answer as
  right when the gold letter(s) appear in the output after removing 、.,;，.
- Belle-Eval: 1,000 Chinese instructions in 10 categories; the model's answer is scored 0-1
  by a judge model against the gold answer (``--task-option judge=MODEL_OR_JUDGE_YAML``),
  with the category's prompt from ``eval_prompt.json`` when the data folder has it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError, DataError, MissingDependencyError
from polyinstruct.eval.data import DATASOURCES, DataSource
from polyinstruct.eval.suites.crosslingual import gen_kwargs, mean_metrics
from polyinstruct.eval.tasks import SUITES, TASKS, BuildContext, EvalTask, Suite

log = logging.getLogger(__name__)

# ============================================================================ MMCU
MMCU_AREAS = {"医疗": "medicine", "医学": "medicine", "法律": "law", "心理": "psychology", "心理学": "psychology",
              "教育": "education"}
MMCU_INSTRUCTION = "请阅读以下选择题并给出正确选项，不要解释原因。\n"
_OPTION_PREFIX = re.compile(r"^\s*[A-DＡ-Ｄ]\s*[、.．]\s*")


def _read_xlsx(path: Path) -> list[tuple[str, list[list[Any]]]]:
    """[(sheet name, rows without the header)] of an .xlsx file."""
    try:
        import openpyxl
    except ImportError:
        raise MissingDependencyError("MMCU's .xlsx files need openpyxl: pip install 'polyinstruct[eval]'") from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001 - openpyxl raises several types for a bad file
        raise DataError(f"not a readable .xlsx file: {e}", path=str(path)) from None
    out = []
    for ws in wb.worksheets:
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
        out.append((ws.title, rows[1:]))  # the first row is a header (pandas header=0 in the official script)
    wb.close()
    return out


def _mmcu_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for sheet, table in _read_xlsx(path):
        for i, r in enumerate(table, start=2):
            cells = [c for c in r if c is not None and str(c).strip() != ""] if r else []
            if not cells:
                continue
            if len(r) < 6:
                raise DataError(f"sheet {sheet}: expected question, 4 options and the answer, got {len(r)} columns",
                                path=str(path), line=i)
            answer = re.sub(r"[^A-D]", "", str(r[5]).upper())
            if not answer:
                raise DataError(f"sheet {sheet}: answer must be letters A-D, got {r[5]!r}", path=str(path), line=i,
                                field="answer")
            rows.append({"question": str(r[0]).strip(),
                         "choices": [_OPTION_PREFIX.sub("", str(c if c is not None else "")).strip() for c in r[1:5]],
                         "answer": answer, "sheet": sheet})
    return rows


def convert_mmcu(folder: Path) -> dict[str, dict[str, list[dict]]]:
    """test/SUBJECT.xlsx (and dev/SUBJECT.xlsx for few-shot examples) -> one config per subject file."""
    out: dict[str, dict[str, list[dict]]] = {}
    for split in ("test", "dev"):
        d = folder / split
        for p in sorted(d.glob("*.xlsx")) if d.is_dir() else []:
            out.setdefault(p.stem, {})[split] = [{**r, "subject": p.stem} for r in _mmcu_rows(p)]
    return {k: v for k, v in out.items() if "test" in v}


DATASOURCES.register("mmcu", DataSource(
    name="mmcu", hub=None,
    layout="test/SUBJECT.xlsx and dev/SUBJECT.xlsx (医疗, 法律, 心理, 教育; columns question, A, B, C, D, answer "
           "after a header row; 医疗.xlsx has one sheet per medical subject)",
    fetch="the MMCU authors (github.com/Felixgithub2017/MMCU: the data is sent on request)", convert=convert_mmcu))


def mmcu_prompt(doc: dict[str, Any]) -> str:
    lines = [doc["question"]] + [f"{letter}. {text}" for letter, text in zip("ABCD", doc["choices"])]
    return "\n".join(lines) + "\n正确答案的序号是："


def mmcu_correct(output: str, gold: str) -> bool:
    """The official rule: the gold letter(s) appear in the output once 、.,;， are removed."""
    pred = re.sub(r"[、.,;，]", "", output or "")
    return gold in pred


def mmcu_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    return {"acc": float(mmcu_correct(results[0], doc["answer"]))}


def _mmcu_build(ctx: BuildContext) -> list[dict[str, Any]]:
    from polyinstruct.eval.data import local_copy, missing_message
    from polyinstruct.eval.data import MissingDatasetError

    local = local_copy("mmcu", ctx)
    if local is None:
        raise MissingDatasetError(missing_message(DATASOURCES.get("mmcu"), ctx.data_dir))
    shots = int(ctx.options.get("mmcu_shots", 0))
    out = []
    for subject in sorted(local):
        area = MMCU_AREAS.get(subject, re.sub(r"\W+", "_", subject).strip("_").lower() or "subject")
        files = {s: str(p) for s, p in local[subject].items()}
        cfg = {"task": f"ac_mmcu_{area}", "dataset_path": "json", "dataset_kwargs": {"data_files": files},
               "test_split": "test", "output_type": "generate_until", "num_fewshot": shots,
               "description": MMCU_INSTRUCTION, "doc_to_text": mmcu_prompt, "doc_to_target": "{{answer}}",
               "target_delimiter": " ", "fewshot_delimiter": "\n\n",
               "process_results": mmcu_results, "metric_list": mean_metrics("acc"),
               "generation_kwargs": gen_kwargs(["\n\n"], 32), "metadata": {"version": 1.0}}
        if shots:
            if "dev" not in files:
                raise DataError(f"mmcu_shots={shots} needs dev/{subject}.xlsx", path=str(ctx.data_dir / "mmcu"))
            cfg.update(fewshot_split="dev", fewshot_config={"sampler": "first_n"})
        out.append(cfg)
    return out


TASKS.register("ac_mmcu", EvalTask(
    name="ac_mmcu", benchmark="mmcu", setting="0shot", metric="acc", aggregate="micro", build=_mmcu_build,
    sources=("mmcu",),
    description="MMCU (medicine, law, psychology, education), 0-shot (--task-option mmcu_shots=5: the dev file's "
                "first 5), the official Chinese prompt, greedy up to 32 tokens; right when the gold letter(s) appear "
                "in the output; accuracy per subject, over all questions"))


# ============================================================================ Belle-Eval
BELLE_MAX_TOKENS = 512
# The project's judge prompt (used when the data folder has no eval_prompt.json): the BELLE
# protocol of a 0-1 score against the reference answer, written "得分: X".
BELLE_DEFAULT_PROMPT = ("你是一名严格的评审。请参考标准答案，判断模型的回答是否正确、完整地完成了问题的要求，"
                        "给出0到1之间的分数（1分为完全正确，0分为错误或没有回答）。请按照\"得分: X\"的格式输出分数，"
                        "然后简要说明理由。")
_SCORE = re.compile(r"得分\s*[:：]\s*([01](?:\.\d+)?)")


def _belle_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
        lines = [None] * len(items)
    except json.JSONDecodeError:  # the file is also published as JSON lines
        items, lines = [], []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"invalid JSON ({e.msg})", path=str(path), line=n) from None
                lines.append(n)
    rows = []
    for i, (r, n) in enumerate(zip(items, lines)):
        for f in ("question", "class", "std_answer"):
            if not isinstance(r, dict) or not isinstance(r.get(f), str):
                raise DataError(f"item {i}: needs a {f!r} string", path=str(path), line=n, field=f)
        rows.append({"id": f"belle-{i}", "question": r["question"], "class": r["class"], "std_answer": r["std_answer"]})
    return rows


def convert_belle(folder: Path) -> dict[str, dict[str, list[dict]]]:
    p = folder / "eval_set.json"
    return {"": {"test": _belle_rows(p)}} if p.is_file() else {}


DATASOURCES.register("belle_eval", DataSource(
    name="belle_eval", hub=None,
    layout="eval_set.json (question, class, std_answer) and optionally eval_prompt.json (the judge prompt per class)",
    fetch="https://github.com/LianjiaTech/BELLE (eval/ folder)", convert=convert_belle))


def belle_prompts(ctx: BuildContext) -> dict[str, dict[str, Any]]:
    """{class: row of eval_prompt.json} when the data folder has the official prompts, else {}."""
    p = (ctx.data_dir / "belle_eval" / "eval_prompt.json") if ctx.data_dir else None
    if p is None or not p.is_file():
        return {}
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        items = [json.loads(x) for x in text.splitlines() if x.strip()]
    return {r["class"]: r for r in items if isinstance(r, dict) and "class" in r and "prompt" in r}


def belle_judge_messages(doc: dict[str, Any], answer: str, prompts: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    row = prompts.get(doc["class"], {})
    instruction = row.get("prompt") or BELLE_DEFAULT_PROMPT
    msgs = []
    for k in (1, 2):  # the official prompts come with two worked examples
        if row.get(f"demo_input_{k}") and row.get(f"demo_output_{k}"):
            msgs += [{"role": "user", "content": row[f"demo_input_{k}"]},
                     {"role": "assistant", "content": row[f"demo_output_{k}"]}]
    msgs.append({"role": "user", "content": f"{instruction}问题:{doc['question']} 标准回答: {doc['std_answer']} "
                                            f"模型回答:{answer}"})
    return msgs


def belle_score(reply: str) -> float | None:
    """The 0-1 score of a "得分: X" reply (None when there is none)."""
    m = _SCORE.search(reply or "")
    if not m:
        return None
    v = float(m.group(1))
    return v if 0.0 <= v <= 1.0 else None


def _belle_build(ctx: BuildContext) -> list[dict[str, Any]]:
    from polyinstruct.eval.data import MissingDatasetError, local_copy, missing_message

    local = local_copy("belle_eval", ctx)
    if local is None:
        raise MissingDatasetError(missing_message(DATASOURCES.get("belle_eval"), ctx.data_dir))
    max_tokens = int(ctx.options.get("belle_max_tokens", BELLE_MAX_TOKENS))
    return [{"task": "ac_belle_eval", "dataset_path": "json",
             "dataset_kwargs": {"data_files": {"test": str(local[""]["test"])}}, "test_split": "test",
             "output_type": "generate_until", "doc_to_text": "{{question}}", "doc_to_target": "",
             "target_delimiter": "",
             "process_results": lambda doc, results: {"generated": 1.0}, "metric_list": mean_metrics("generated"),
             "generation_kwargs": gen_kwargs(["</s>", "<|im_end|>"], max_tokens), "num_fewshot": 0,
             "metadata": {"version": 1.0}}]


def _judge(ctx: BuildContext):
    """(backend, config, whether we own the backend) from --task-option judge / judge_backend."""
    from polyinstruct.judge.config import build_backend, resolve_judge_config

    backend = ctx.options.get("judge_backend")
    cfg = resolve_judge_config(ctx.options.get("judge") or "scripted")
    return (backend, cfg, False) if backend is not None else (build_backend(cfg), cfg, True)


def _belle_check(ctx: BuildContext) -> None:
    if not ctx.options.get("judge") and ctx.options.get("judge_backend") is None:
        raise ConfigError("the Belle-Eval task needs a judge: --task-option judge=MODEL_OR_JUDGE_YAML "
                          "(docs/judging.md)", field="--task-option judge")


def _belle_post(samples: dict[str, list[dict]], ctx: BuildContext) -> dict[str, dict[str, Any]]:
    from polyinstruct.fileio import write_jsonl
    from polyinstruct.judge.ask import Request, ask_all
    from polyinstruct.judge.cache import JudgmentCache
    from polyinstruct.judge.config import cache_path

    rows = samples["ac_belle_eval"]
    prompts = belle_prompts(ctx)
    backend, cfg, own = _judge(ctx)
    reqs = []
    for r in rows:
        answer = str(r["filtered_resps"][0] if isinstance(r["filtered_resps"], list) else r["filtered_resps"]).strip()
        msgs = belle_judge_messages(r["doc"], answer, prompts)
        key = hashlib.sha256(json.dumps([cfg.backend, cfg.model, msgs], ensure_ascii=False).encode()).hexdigest()
        reqs.append((r, answer, Request(key=key, messages=msgs, parse=belle_score)))
    try:
        got = ask_all(backend, [q for _, _, q in reqs], cfg.decoding(), JudgmentCache(cache_path(cfg)),
                      max_parse_retries=cfg.max_parse_retries)
    finally:
        if own and hasattr(backend, "close"):
            backend.close()
    judged = []
    by: dict[str, list[float]] = {}
    for r, answer, q in reqs:
        rec = got.get(q.key, {})
        value = rec.get("value")
        judged.append({"id": r["doc"]["id"], "class": r["doc"]["class"], "question": r["doc"]["question"],
                       "response": answer, "std_answer": r["doc"]["std_answer"], "score": value,
                       "judge_reply": rec.get("raw"), "error": rec.get("error")})
        # an unparsed or failed judgment counts as 0 and is listed in judgments.jsonl
        by.setdefault(r["doc"]["class"], []).append(float(value) if value is not None else 0.0)
    write_jsonl(ctx.work_dir.parent / "ac_belle_eval" / "judgments.jsonl", judged)
    unjudged = sum(j["score"] is None for j in judged)
    if unjudged:
        log.warning("Belle-Eval: %d of %d answers got no score from the judge (counted 0; see judgments.jsonl)",
                    unjudged, len(judged))
    out = {}
    for cls, xs in sorted(by.items()):
        m = sum(xs) / len(xs)
        se = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) ** 0.5 if len(xs) > 1 else None
        out[f"ac_belle_eval_{cls}"] = {"score": m, "stderr": se, "n": len(xs),
                                       "unjudged": sum(j["score"] is None for j in judged if j["class"] == cls)}
    return out


TASKS.register("ac_belle_eval", EvalTask(
    name="ac_belle_eval", benchmark="belle_eval", setting="judge", metric="score", aggregate="micro",
    build=_belle_build, sources=("belle_eval",), postprocess=_belle_post, check=_belle_check,
    description="Belle-Eval, 1,000 Chinese instructions in 10 categories, greedy up to 512 tokens; each answer "
                "scored 0-1 by the judge against the gold answer (eval_prompt.json's prompt per category when "
                "present); mean score per category and over all items"))


SUITES.register("alpaca-cot", Suite("alpaca-cot", ["ac_mmcu", "ac_belle_eval"],
                                    "the Alpaca-CoT study's Chinese evaluation: MMCU exams and Belle-Eval"))
