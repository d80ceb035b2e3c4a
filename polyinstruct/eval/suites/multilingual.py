"""Multilingual benchmarks beyond the studies (docs/evaluation.md, "multilingual").

MGSM (grade-school maths in 10 languages plus English; answer = the last number, as GSM8K),
Belebele (reading comprehension on Flores passages, 4-way multiple choice) and Global-MMLU
(MMLU translated and checked by native speakers; multiple choice). Each starts from
lm-eval's own config; the task option ``languages=fr,ru,...`` picks an experiment's languages
(default: every language the benchmark has). Subtasks end in the language code.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from polyinstruct.errors import DataError
from polyinstruct.eval.data import DATASOURCES, DataSource, read_jsonl_file, require
from polyinstruct.eval.scoring import exact_match, last_number, number_match
from polyinstruct.eval.suites.crosslingual import gen_kwargs, languages, mean_metrics
from polyinstruct.eval.tasks import SUITES, TASKS, BuildContext, EvalTask, Suite, lm_eval_config
from polyinstruct.lang.languages import flores_code

MGSM_LANGS = ("en", "bn", "de", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
MGSM_MAX_TOKENS = 512
BELEBELE_CODES = {c: flores_code(c) for c in ("en", "fr", "es", "ru", "bg", "zh", "de", "ar", "el", "hi", "tr", "vi",
                                              "ja", "ko", "it", "pt", "nl", "pl", "uk", "cs", "sv", "fi", "da", "no",
                                              "ro", "hu", "th", "id", "sw", "bn", "te", "ta", "fa", "he", "ca")}
GLOBAL_MMLU_LANGS = ("am", "ar", "bn", "cs", "de", "el", "en", "es", "fa", "fil", "fr", "ha", "he", "hi", "id",
                     "ig", "it", "ja", "ko", "ky", "lt", "mg", "ms", "ne", "nl", "ny", "pl", "pt", "ro", "ru", "si",
                     "sn", "so", "sr", "sv", "sw", "te", "tr", "uk", "vi", "yo", "zh")


# ============================================================================ MGSM
def _number(text: str, path: Path, line: int) -> int | float:
    try:
        v = float(text.replace(",", "").strip())
    except ValueError:
        raise DataError(f"answer must be a number, got {text!r}", path=str(path), line=line, field="answer") from None
    return int(v) if v.is_integer() else v


def convert_mgsm(folder: Path) -> dict[str, dict[str, list[dict]]]:
    """mgsm_LANG.tsv (question TAB answer number, no header) -> the hub schema's test split."""
    root = folder / "mgsm" if (folder / "mgsm").is_dir() else folder
    out = {}
    for p in sorted(root.glob("mgsm_*.tsv")):
        lang = p.stem[len("mgsm_"):]
        rows = []
        try:
            with p.open(encoding="utf-8", newline="") as f:
                for line, rec in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                    if not rec or not any(x.strip() for x in rec):
                        continue
                    if len(rec) != 2:
                        raise DataError(f"expected 2 tab-separated columns (question, answer), got {len(rec)}",
                                        path=str(p), line=line)
                    rows.append({"question": rec[0], "answer": None, "answer_number": _number(rec[1], p, line),
                                 "equation_solution": None})
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8: {e.reason}", path=str(p)) from None
        out[lang] = {"test": rows}
    return out


DATASOURCES.register("mgsm", DataSource(
    name="mgsm", hub="juletxara/mgsm", layout="mgsm_LANG.tsv (question TAB answer, 250 per language)",
    fetch="https://github.com/google-research/url-nlp (mgsm/ folder)", convert=convert_mgsm))


def mgsm_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """The last number of the output against the gold number (GSM8K's rule), and the strict
    comparison beside it (numbers as numbers, any script's digits: ৫ and ５ are 5)."""
    return {"exact_match": float(exact_match(last_number(results[0]), str(doc["answer_number"]))),
            "exact_match_strict": float(number_match(results[0], doc["answer_number"]))}


def _mgsm_builder(native_cot: bool):
    def build(ctx: BuildContext) -> list[dict[str, Any]]:
        out = []
        for lang in languages(ctx, MGSM_LANGS, benchmark="MGSM"):
            if native_cot:
                cfg = lm_eval_config(f"mgsm_native_cot_{lang}", "mgsm/native_cot")  # "step by step" in the language
            else:
                cfg = lm_eval_config(f"mgsm_direct_{lang}", "mgsm/direct")
            until = list(cfg.get("generation_kwargs", {}).get("until", []))
            cfg.update(task=f"ml_mgsm_{'native_cot' if native_cot else 'direct'}_{lang}", num_fewshot=0,
                       process_results=mgsm_results, filter_list=None,
                       metric_list=mean_metrics("exact_match", "exact_match_strict"),
                       generation_kwargs=gen_kwargs(until or ["\n\n"], MGSM_MAX_TOKENS if native_cot else 64))
            for k in ("training_split", "fewshot_split", "fewshot_config"):
                cfg.pop(k, None)
            out.append(ctx.use_data(cfg, "mgsm", config=lang))
        return out
    return build


TASKS.register("ml_mgsm_direct", EvalTask(
    name="ml_mgsm_direct", benchmark="mgsm", setting="direct", metric="exact_match", aggregate="macro",
    also=("exact_match_strict",),
    build=_mgsm_builder(False), sources=("mgsm",),
    description="MGSM, 0-shot, lm-eval's direct prompt in each language; answer = the last number of the output; "
                "accuracy per language, mean over languages"))
TASKS.register("ml_mgsm_native_cot", EvalTask(
    name="ml_mgsm_native_cot", benchmark="mgsm", setting="native_cot", metric="exact_match", aggregate="macro",
    also=("exact_match_strict",),
    build=_mgsm_builder(True), sources=("mgsm",),
    description="MGSM, 0-shot, chain of thought cued in the question's language (lm-eval's native_cot prompt), "
                "up to 512 tokens; answer = the last number; accuracy per language (optional: not in the suite)"))


# ============================================================================ Belebele
def convert_belebele(folder: Path) -> dict[str, dict[str, list[dict]]]:
    """Belebele/CODE.jsonl (one file per language variant, e.g. rus_Cyrl.jsonl) -> test split per code."""
    root = folder / "Belebele" if (folder / "Belebele").is_dir() else folder
    need = ("flores_passage", "question", "mc_answer1", "mc_answer2", "mc_answer3", "mc_answer4",
            "correct_answer_num")
    out = {}
    for p in sorted(root.glob("*_*.jsonl")):
        rows = read_jsonl_file(p)
        for i, r in enumerate(rows, start=1):
            require(r, need, p, i)
            if str(r["correct_answer_num"]) not in ("1", "2", "3", "4"):
                raise DataError(f"correct_answer_num must be 1-4, got {r['correct_answer_num']!r}", path=str(p),
                                line=i, field="correct_answer_num")
            r["correct_answer_num"] = str(r["correct_answer_num"])
        out[p.stem] = {"test": rows}
    return out


DATASOURCES.register("belebele", DataSource(
    name="belebele", hub="facebook/belebele",
    layout="Belebele/CODE.jsonl, one per language variant (eng_Latn.jsonl, rus_Cyrl.jsonl, zho_Hans.jsonl, ...; "
           "Belebele.zip)", fetch="https://github.com/facebookresearch/belebele", convert=convert_belebele))


def _belebele_build(ctx: BuildContext) -> list[dict[str, Any]]:
    out = []
    for lang in languages(ctx, tuple(BELEBELE_CODES), benchmark="Belebele"):
        code = BELEBELE_CODES[lang]
        cfg = lm_eval_config(f"belebele_{code}", "belebele")  # "P: passage Q: question A-D Answer:" prompt
        cfg.update(task=f"ml_belebele_{lang}", num_fewshot=0)
        cfg.pop("fewshot_split", None)
        out.append(ctx.use_data(cfg, "belebele", config=code))
    return out


TASKS.register("ml_belebele", EvalTask(
    name="ml_belebele", benchmark="belebele", setting="0shot", metric="acc", aggregate="macro",
    build=_belebele_build, sources=("belebele",),
    description="Belebele, 0-shot, lm-eval's prompt (passage, question, A-D), log-likelihood of the letter; "
                "accuracy per language, mean over languages"))


# ============================================================================ Global-MMLU
def convert_global_mmlu(folder: Path) -> dict[str, dict[str, list[dict]]]:
    """LANG/{dev,test}-*.parquet (the hub repository's files) -> dev and test splits per language."""
    import pyarrow.parquet as pq

    out: dict[str, dict[str, list[dict]]] = {}
    need = ("question", "option_a", "option_b", "option_c", "option_d", "answer", "subject")
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        for split in ("dev", "test"):
            rows: list[dict] = []
            for p in sorted(d.glob(f"{split}-*.parquet")):
                try:
                    table = pq.read_table(p).to_pylist()
                except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
                    raise DataError(f"not a readable parquet file: {e}", path=str(p)) from None
                for i, r in enumerate(table):
                    missing = [f for f in need if f not in r]
                    if missing:
                        raise DataError(f"missing column {missing[0]!r}", path=str(p), field=missing[0])
                    if str(r["answer"]).strip() not in ("A", "B", "C", "D"):
                        raise DataError(f"row {i}: answer must be A-D, got {r['answer']!r}", path=str(p),
                                        field="answer")
                    rows.append({k: (v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v))
                                 for k, v in r.items()})
            if rows:
                out.setdefault(d.name, {})[split] = rows
    return out


DATASOURCES.register("global_mmlu", DataSource(
    name="global_mmlu", hub="CohereLabs/Global-MMLU",
    layout="LANG/test-00000-of-00001.parquet and LANG/dev-00000-of-00001.parquet (the hub repository's files)",
    fetch="https://huggingface.co/datasets/CohereLabs/Global-MMLU", convert=convert_global_mmlu))


def _global_mmlu_build(ctx: BuildContext) -> list[dict[str, Any]]:
    out = []
    for lang in languages(ctx, GLOBAL_MMLU_LANGS, benchmark="Global-MMLU"):
        cfg = lm_eval_config("global_mmlu_en_stem", "global_mmlu/default/en")  # the prompt (same for every language)
        cfg.update(task=f"ml_global_mmlu_{lang}", num_fewshot=0, dataset_path="CohereLabs/Global-MMLU",
                   dataset_name=lang)
        for k in ("process_docs", "fewshot_split", "fewshot_config"):
            cfg.pop(k, None)
        out.append(ctx.use_data(cfg, "global_mmlu", config=lang))
    return out


TASKS.register("ml_global_mmlu", EvalTask(
    name="ml_global_mmlu", benchmark="global_mmlu", setting="0shot", metric="acc", aggregate="macro",
    build=_global_mmlu_build, sources=("global_mmlu",),
    description="Global-MMLU (all 57 subjects), 0-shot, lm-eval's Global-MMLU prompt (question, A-D, 'Answer:'), "
                "log-likelihood of the letter; accuracy per language, mean over languages"))


SUITES.register("multilingual", Suite("multilingual", ["ml_mgsm_direct", "ml_belebele", "ml_global_mmlu"],
                                      "beyond the studies: MGSM, Belebele and Global-MMLU for an experiment's "
                                      "languages (--task-option languages=...)"))
