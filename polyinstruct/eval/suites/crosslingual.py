"""The cross-lingual study's evaluation suite (docs/evaluation.md, "crosslingual"; docs/studies.md).

XQuAD and MLQA (extractive QA: SQuAD F1/EM per language, CJK text split into characters as
MLQA's official script does) and Flores-101 English<->X translation (chrF, and spBLEU with
the Flores SentencePiece model when it is on this machine). Every task takes the task option
``languages=fr,ru,...`` (default: every language the benchmark has; Flores: the project's six
languages); a language a benchmark lacks is left out of that benchmark with a warning.
Subtasks end in the language code (``xl_xquad_ru``) so the report draws per-language charts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError, DataError
from polyinstruct.eval.data import DATASOURCES, DataSource, MissingDatasetError, local_copy, missing_message, squad_rows
from polyinstruct.eval.scoring import squad_em, squad_f1
from polyinstruct.eval.tasks import SUITES, TASKS, BuildContext, EvalTask, Suite, lm_eval_config
from polyinstruct.lang.languages import english_name

log = logging.getLogger(__name__)

QA_MAX_TOKENS = 50          # an extractive answer is a span: lm-eval's TyDiQA/XQuAD use short outputs
MT_MAX_TOKENS = 256         # a Flores sentence is at most ~100 words
XQUAD_LANGS = ("en", "ar", "de", "el", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
MLQA_LANGS = ("en", "ar", "de", "es", "hi", "vi", "zh")
FLORES_LANGS = ("fr", "es", "ru", "bg", "zh")   # English <-> X for the project's six languages
# Flores-101 file codes (ISO 639-3; Chinese: the simplified script)
FLORES_CODES = {"en": "eng", "fr": "fra", "es": "spa", "ru": "rus", "bg": "bul", "zh": "zho_simpl", "de": "deu",
                "ar": "ara", "el": "ell", "hi": "hin", "tr": "tur", "vi": "vie", "ja": "jpn", "ko": "kor",
                "it": "ita", "pt": "por", "nl": "nld", "pl": "pol", "uk": "ukr", "cs": "ces", "sv": "swe",
                "fi": "fin", "da": "dan", "no": "nob", "ro": "ron", "hu": "hun", "th": "tha", "id": "ind",
                "sw": "swh", "bn": "ben", "te": "tel", "ta": "tam", "fa": "fas", "he": "heb", "ca": "cat"}
LANG_NAMES = {c: english_name(c) for c in ("en", "fr", "es", "ru", "bg", "zh", "de", "ar", "el", "hi", "tr", "vi",
                                           "ja", "ko", "it", "pt", "nl", "pl", "uk", "cs", "sv", "fi", "da", "no",
                                           "ro", "hu", "th", "id", "sw", "bn", "te", "ta", "fa", "he", "ca")}


def gen_kwargs(until: list[str], max_tokens: int) -> dict[str, Any]:
    return {"until": until, "do_sample": False, "temperature": 0.0, "max_gen_toks": max_tokens}


def mean_metrics(*names: str) -> list[dict[str, Any]]:
    return [{"metric": n, "aggregation": "mean", "higher_is_better": True} for n in names]


def languages(ctx: BuildContext, available: tuple[str, ...], default: tuple[str, ...] | None = None,
              *, benchmark: str) -> list[str]:
    """The task option ``languages`` (comma-separated codes, normalised by polyinstruct.lang) cut
    to what ``benchmark`` has; a language it lacks is left out with a warning, none left is an error."""
    raw = ctx.options.get("languages")
    if not raw:
        return list(default or available)
    from polyinstruct.lang.codes import normalize_code

    wanted = []
    for code in (c.strip() for c in str(raw).split(",")):
        if not code:
            continue
        if code.lower() in available:  # the benchmark's own code (e.g. Global-MMLU's "fil")
            wanted.append(code.lower())
            continue
        try:
            wanted.append(normalize_code(code))
        except Exception:  # noqa: BLE001 - an unknown code is reported below like a missing one
            wanted.append(code.lower())
    kept = [w for w in dict.fromkeys(wanted) if w in available]
    dropped = [w for w in wanted if w not in available]
    if dropped:
        log.warning("%s has no %s; left out of it (it has: %s)", benchmark, ", ".join(dropped), ", ".join(available))
    if not kept:
        raise ConfigError(f"{benchmark} has none of the languages {', '.join(wanted)} (it has: "
                          f"{', '.join(available)})", field="--task-option languages")
    return kept


# ============================================================================ SQuAD-format QA
def convert_xquad(folder: Path) -> dict[str, dict[str, list[dict]]]:
    out = {}
    for p in sorted(folder.glob("xquad.*.json")):
        out[p.name[:-len(".json")]] = {"validation": squad_rows(p)}
    return out


def convert_mlqa(folder: Path) -> dict[str, dict[str, list[dict]]]:
    root = folder / "MLQA_V1" if (folder / "MLQA_V1").is_dir() else folder
    out: dict[str, dict[str, list[dict]]] = {}
    for split, name in (("test", "test"), ("dev", "validation")):
        for p in sorted((root / split).glob(f"{split}-context-*-question-*.json")) if (root / split).is_dir() else []:
            parts = p.stem.split("-")  # test-context-zh-question-zh
            out.setdefault(f"mlqa.{parts[2]}.{parts[4]}", {})[name] = squad_rows(p)
    return out


DATASOURCES.register("xquad", DataSource(
    name="xquad", hub="google/xquad", layout="xquad.LANG.json (SQuAD v1.1 JSON, one file per language)",
    fetch="https://github.com/google-deepmind/xquad", convert=convert_xquad))
DATASOURCES.register("mlqa", DataSource(
    name="mlqa", hub="facebook/mlqa",
    layout="MLQA_V1/test/test-context-LANG-question-LANG.json and MLQA_V1/dev/dev-context-LANG-question-LANG.json "
           "(SQuAD v1.1 JSON; MLQA_V1.zip)",
    fetch="https://github.com/facebookresearch/MLQA (MLQA_V1.zip)", convert=convert_mlqa))


def qa_results(lang: str):
    """process_results: SQuAD F1 and exact match of the first line against every gold answer."""

    def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
        pred = results[0].strip()
        golds = doc["answers"]["text"]
        return {"f1": squad_f1(pred, golds, lang), "exact_match": squad_em(pred, golds, lang)}

    process_results.__qualname__ = f"qa_results_{lang}"
    return process_results


def lm_eval_config_unresolved(name: str, folder: str) -> dict[str, Any]:
    """lm-eval's config of ``name`` with its ``!function`` entries left unresolved, for a task whose
    helper module does not import with this transformers (lm-eval's xquad/utils.py imports
    transformers.data.metrics, gone in transformers 5); the caller replaces those entries."""
    import copy

    from lm_eval.tasks._yaml_loader import load_yaml

    from polyinstruct.eval.tasks import task_manager

    entry = task_manager(folder).task_index.get(name)
    if entry is None or entry.yaml_path is None:
        return lm_eval_config(name, folder)  # raises the did-you-mean error
    cfg = copy.deepcopy(load_yaml(entry.yaml_path, resolve_func=False))
    for key in ("tag", "group", "task_list"):
        cfg.pop(key, None)
    return cfg


def _xquad_build(ctx: BuildContext) -> list[dict[str, Any]]:
    out = []
    for lang in languages(ctx, XQUAD_LANGS, benchmark="XQuAD"):
        cfg = lm_eval_config_unresolved(f"xquad_{lang}", "xquad")  # the prompt in the test language
        cfg.update(task=f"xl_xquad_{lang}", num_fewshot=0, process_results=qa_results(lang),
                   metric_list=mean_metrics("f1", "exact_match"), generation_kwargs=gen_kwargs(["\n"], QA_MAX_TOKENS))
        out.append(ctx.use_data(cfg, "xquad", config=f"xquad.{lang}"))
    return out


def _mlqa_build(ctx: BuildContext) -> list[dict[str, Any]]:
    out = []
    for lang in languages(ctx, MLQA_LANGS, benchmark="MLQA"):
        cfg = lm_eval_config(f"mlqa_{lang}_{lang}", "mlqa")  # context and question in the same language
        cfg.update(task=f"xl_mlqa_{lang}", num_fewshot=0, process_results=qa_results(lang),
                   metric_list=mean_metrics("f1", "exact_match"), generation_kwargs=gen_kwargs(["\n"], QA_MAX_TOKENS),
                   doc_to_target="{{answers.text[0]}}")
        for k in ("process_docs", "validation_split"):
            cfg.pop(k, None)
        out.append(ctx.use_data(cfg, "mlqa", config=f"mlqa.{lang}.{lang}", splits={"test": "test"}))
    return out


def qa_post(samples: dict[str, list[dict]], ctx: BuildContext) -> dict[str, dict[str, Any]]:
    """Per language: F1 (the score) and exact match beside it, both from the per-sample log."""
    out = {}
    for sub, rows in sorted(samples.items()):
        f1 = [float(r["f1"]) for r in rows]
        em = [float(r["exact_match"]) for r in rows]
        out[sub] = {"score": _mean(f1), "stderr": _sem(f1), "n": len(rows),
                    "exact_match": 100 * _mean(em), "exact_match_stderr": None if _sem(em) is None else 100 * _sem(em)}
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _sem(xs: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    m = _mean(xs)
    return (sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) ** 0.5


for _name, _bench, _build, _langs, _label in (("xl_xquad", "xquad", _xquad_build, XQUAD_LANGS, "XQuAD"),
                                              ("xl_mlqa", "mlqa", _mlqa_build, MLQA_LANGS, "MLQA")):
    TASKS.register(_name, EvalTask(
        name=_name, benchmark=_bench, setting="0shot", metric="f1", aggregate="macro", build=_build,
        sources=(_bench,), postprocess=qa_post,
        description=f"{_label}, 0-shot, {'the prompt in the test language' if _bench == 'xquad' else 'English prompt labels'}"
                    ", greedy to the first newline; SQuAD F1 "
                    f"(exact match beside it) per language ({', '.join(_langs)}), mean over languages"))


# ============================================================================ Flores-101
def convert_flores(folder: Path) -> dict[str, dict[str, list[dict]]]:
    """flores101_dataset/{dev,devtest}/CODE.{dev,devtest} (one sentence per line, aligned) ->
    one config per English<->X direction, rows {id, source, target}."""
    root = folder / "flores101_dataset" if (folder / "flores101_dataset").is_dir() else folder
    out: dict[str, dict[str, list[dict]]] = {}
    for split in ("dev", "devtest"):
        d = root / split
        if not d.is_dir():
            continue
        lines: dict[str, list[str]] = {}
        for lang, code in FLORES_CODES.items():
            p = d / f"{code}.{split}"
            if p.is_file():
                try:
                    lines[lang] = p.read_text(encoding="utf-8").rstrip("\n").split("\n")
                except UnicodeDecodeError as e:
                    raise DataError(f"not UTF-8: {e.reason}", path=str(p)) from None
        if "en" not in lines:
            continue
        for lang, sents in lines.items():
            if lang == "en":
                continue
            if len(sents) != len(lines["en"]):
                raise DataError(f"{len(sents)} lines, but {FLORES_CODES['en']}.{split} has {len(lines['en'])}: "
                                "the files must be line-aligned", path=str(d / f"{FLORES_CODES[lang]}.{split}"))
            for src, tgt in (("en", lang), (lang, "en")):
                out.setdefault(f"{src}-{tgt}", {})[split] = [
                    {"id": i, "source": s, "target": t} for i, (s, t) in enumerate(zip(lines[src], lines[tgt]))]
    return out


DATASOURCES.register("flores101", DataSource(
    name="flores101", hub=None,
    layout="flores101_dataset/devtest/CODE.devtest (and dev/CODE.dev), one sentence per line, e.g. eng, fra, "
           "spa, rus, bul, zho_simpl (flores101_dataset.tar.gz)",
    fetch="https://dl.fbaipublicfiles.com/flores101/dataset/flores101_dataset.tar.gz", convert=convert_flores))


def _flores_files(ctx: BuildContext, direction: str) -> dict[str, str]:
    """{split: JSONL} for one direction from the local copy (the hub copies of Flores-101 are
    loading scripts, which polyinstruct does not run)."""
    local = local_copy("flores101", ctx)
    src = DATASOURCES.get("flores101")
    if local is None:
        raise MissingDatasetError(missing_message(src, ctx.data_dir))
    if direction not in local or "devtest" not in local[direction]:
        raise MissingDatasetError(f"{ctx.data_dir / 'flores101'}: no devtest files for {direction}; "
                                  f"{missing_message(src, ctx.data_dir)}")
    return {k: str(v) for k, v in local[direction].items()}


def _flores_builder(into_english: bool):
    def build(ctx: BuildContext) -> list[dict[str, Any]]:
        out = []
        for lang in languages(ctx, tuple(k for k in FLORES_CODES if k != "en"), FLORES_LANGS, benchmark="Flores-101"):
            src, tgt = (lang, "en") if into_english else ("en", lang)
            files = _flores_files(ctx, f"{src}-{tgt}")
            s, t = LANG_NAMES[src], LANG_NAMES[tgt]
            cfg = {"task": f"xl_flores_{'x_en' if into_english else 'en_x'}_{lang}", "dataset_path": "json",
                   "dataset_kwargs": {"data_files": {"devtest": files["devtest"]}}, "test_split": "devtest",
                   "output_type": "generate_until", "num_fewshot": 0,
                   "doc_to_text": f"Translate the following sentence from {s} to {t}.\n{s}: {{{{source}}}}\n{t}:",
                   "doc_to_target": "{{target}}", "target_delimiter": " ",
                   "process_results": lambda doc, results: {"generated": 1.0},
                   "metric_list": mean_metrics("generated"), "generation_kwargs": gen_kwargs(["\n"], MT_MAX_TOKENS),
                   "metadata": {"version": 1.0, "source_language": src, "target_language": tgt}}
            out.append(cfg)
        return out
    return build


SPM_FILES = {"flores101": "sacrebleu_tokenizer_spm.model", "flores200": "flores200sacrebleuspm"}


def spbleu_tokenizer() -> str | None:
    """'flores101' (or 'flores200') when sacrebleu's SentencePiece model is already on this machine;
    None otherwise: sacrebleu would download it, which an offline machine cannot."""
    from sacrebleu.utils import SACREBLEU_DIR

    for name, fname in SPM_FILES.items():
        if os.path.isfile(os.path.join(SACREBLEU_DIR, "models", fname)):
            try:
                import sentencepiece  # noqa: F401
            except ImportError:
                return None
            return name
    return None


def translation_scores(hyps: list[str], refs: list[str], target_lang: str) -> dict[str, Any]:
    """Corpus chrF (sacrebleu defaults: chrF2, character 6-grams) and spBLEU when its model is here."""
    from sacrebleu.metrics import BLEU, CHRF

    chrf = CHRF()
    out: dict[str, Any] = {"chrf": chrf.corpus_score(hyps, [refs]).score, "chrf_stderr": chrf_stderr(chrf, hyps, refs)}
    tok = spbleu_tokenizer()
    if tok:
        out["spbleu"] = BLEU(tokenize=tok).corpus_score(hyps, [refs]).score
        out["spbleu_tokenizer"] = tok
    else:
        out["spbleu"] = None
        out["note"] = ("spBLEU not computed: sacrebleu's Flores SentencePiece model is not on this machine "
                       "(run once online, or put sacrebleu_tokenizer_spm.model in ~/.sacrebleu/models/); "
                       "COMET not computed (no local COMET model support)")
    return out


BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 1000, 1234


def chrf_stderr(chrf: Any, hyps: list[str], refs: list[str]) -> float | None:
    """Bootstrap standard error of corpus chrF: sentences resampled with replacement, the
    corpus score recomputed from summed sentence statistics (as sacrebleu's own bootstrap)."""
    if len(hyps) < 2:
        return None
    import numpy as np

    from polyinstruct.stats import chrf_from_statistics, chrf_statistics

    stats = chrf_statistics(hyps, refs)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    idx = rng.integers(0, len(hyps), size=(BOOTSTRAP_RESAMPLES, len(hyps)))
    scores = [chrf_from_statistics(stats[i].sum(axis=0)) for i in idx]
    return float(np.std(scores, ddof=1))


def _flores_post(samples: dict[str, list[dict]], ctx: BuildContext) -> dict[str, dict[str, Any]]:
    out = {}
    for sub, rows in sorted(samples.items()):
        hyps = [str(r["filtered_resps"][0] if isinstance(r["filtered_resps"], list) else r["filtered_resps"]).strip()
                for r in rows]
        refs = [r["doc"]["target"] for r in rows]
        sc = translation_scores(hyps, refs, sub.rsplit("_", 1)[-1])
        if sc.get("note"):
            log.warning("%s: %s", sub, sc["note"])
        se = sc.pop("chrf_stderr")
        out[sub] = {"score": sc.pop("chrf") / 100, "stderr": None if se is None else se / 100, "n": len(rows), **sc}
    return out


for _into_en in (False, True):
    _s = "x-en" if _into_en else "en-x"
    TASKS.register(f"xl_flores_{_s.replace('-', '_')}", EvalTask(
        name=f"xl_flores_{_s.replace('-', '_')}", benchmark="flores", setting=_s, metric="chrf", aggregate="macro",
        build=_flores_builder(_into_en), sources=("flores101",), postprocess=_flores_post,
        description=f"Flores-101 devtest, {'X->English' if _into_en else 'English->X'} for fr, es, ru, bg, zh, 0-shot "
                    "instruction prompt, greedy to the first newline; corpus chrF per direction (spBLEU beside it "
                    "when sacrebleu's Flores SentencePiece model is present), mean over languages"))


SUITES.register("crosslingual", Suite("crosslingual", [
    "xl_xquad", "xl_mlqa", "xl_flores_en_x", "xl_flores_x_en",
], "the cross-lingual study's benchmarks: XQuAD and MLQA (F1, EM per language), Flores-101 English<->X (chrF, spBLEU)"))
