"""Report sections from polyinstruct/analysis (docs/analysis.md), each present only when the
experiment has the data: scaling-law fits and the allocation they recommend (an experiment
with a size axis), layer-wise alignment (after ``polyinstruct analyze alignment`` wrote into
the experiment's ``analysis/alignment/``), and tokenizer fertility of the base model on the
embedded parallel sentences (experiments whose budgets are matched in tokens).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from polyinstruct.report.load import ExperimentData

log = logging.getLogger(__name__)
Section = tuple[str, str, list, "list | None", "Path | None"]
SCALING_METRICS = ("chrf", "lang_match_rate")


def analysis_sections(data: ExperimentData, out_dir: Path) -> list[Section]:
    out: list[Section] = []
    out += _scaling(data, out_dir)
    out += _alignment(data, out_dir)
    out += _fertility(data)
    return out


def _g(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def _scaling(data: ExperimentData, out_dir: Path) -> list[Section]:
    from polyinstruct.analysis.scaling import plot_scaling, scaling_study

    saved = data.root / "analysis" / "scaling.json"
    if saved.is_file():
        study = json.loads(saved.read_text(encoding="utf-8"))
    else:
        if not any(r.get("size") for r in data.results):
            return []
        metric = next((m for m in SCALING_METRICS if all(r.get(m) is not None for r in data.results
                                                         if r.get("size") is not None)), None)
        if metric is None:
            return []
        arms = sorted({r.get("arm") for r in data.results if r.get("size")})
        if len(arms) != 1:
            return [("Scaling laws", f"Several arms on the size axis ({', '.join(arms)}): run `polyinstruct analyze "
                     "scaling --arm ARM` and rebuild the report to see the fits.", [], None, None)]
        try:
            study = scaling_study(data.root, metric=metric, resamples=200)
        except Exception as e:  # too few sizes and the like: say so in the report
            return [("Scaling laws", f"No fit: {e}", [], None, None)]
    header = ["language", "law", "parameters [95% interval]", "R²", "leave-one-size-out MAE", "largest-size error"]
    rows = []
    for lang, fits in study["fits"].items():
        for name, f in fits.items():
            if "error" in f:
                rows.append([lang, name, f["error"], "", "", ""])
                continue
            params = ", ".join(f"{k}={_g(v)} [{_g(f['intervals'].get(k, {}).get('low'))}, "
                               f"{_g(f['intervals'].get(k, {}).get('high'))}]" for k, v in f["params"].items())
            best = " (best)" if study["best_law"].get(lang) == name else ""
            loo = f["leave_one_size_out"]
            rows.append([lang, name + best, params, _g(f["r2"]), _g(loo["mae"]), _g(loo["largest_size_error"])])
    img = plot_scaling(study, out_dir / "scaling.png")
    method = next(iter(next(iter(study["fits"].values())).values())).get("bootstrap", {}).get("method", "residuals")
    note = (f"Metric {study['metric']} against data size ({study['size_unit']}; the base model is size 0), one fit "
            f"per language and law (docs/analysis.md): log is the study's law a + b·ln(x + c), power a saturating "
            f"alternative e − k·(1 + x)^−p. Intervals: {method} bootstrap; leave-one-size-out: refit without each "
            f"size and predict it (the largest size alone is pure extrapolation).")
    out: list[Section] = [("Scaling laws", note, header, rows, img)]
    out += _allocation(study)
    return out


def _allocation(study: dict[str, Any]) -> list[Section]:
    from polyinstruct.analysis.allocate import allocate
    from polyinstruct.analysis.scaling import curves_from_study

    try:
        curves, concave = curves_from_study(study, "log")
    except Exception:
        return []
    largest = max(int(p[0]) for pts in study["points"].values() for p in pts)
    budget = largest * len(curves)
    if budget <= 0:
        return []
    res = allocate(curves, budget, concave=concave, step=max(1, budget // 2000)).to_dict()
    header = ["language", "allocated", "predicted", "uniform", "predicted (uniform)"]
    rows = [[lang, str(res["amounts"][lang]), f"{res['predicted'][lang]:.3f}", str(res["uniform"]["amounts"][lang]),
             f"{res['uniform']['predicted'][lang]:.3f}"] for lang in res["amounts"]]
    gain = res["gain_over_uniform"]
    note = (f"The split of {budget} examples (the largest size for every language) that maximises the summed "
            f"predicted {study['metric']} under the fitted log laws ({res['method']}); predicted gain over the "
            f"uniform split: {'n/a' if gain is None else f'{gain:+.3f}'}. Write it as a mixture with "
            f"`polyinstruct analyze allocate ... --budget {budget} --out mix.yaml` to train and check it.")
    return [("Budget allocation from the fitted laws", note, header, rows, None)]


def _alignment(data: ExperimentData, out_dir: Path) -> list[Section]:
    from polyinstruct.analysis.alignment import MEASURES, mean_curve, plot_alignment

    path = data.root / "analysis" / "alignment" / "alignment.json"
    if not path.is_file():
        return []
    results = json.loads(path.read_text(encoding="utf-8"))["models"]
    header = ["model", "measure", "embeddings", "best layer (value)", "middle layer", "last layer"]
    rows = []
    for res in results:
        for m in MEASURES:
            ys = mean_curve(res, m)
            best = max(range(len(ys)), key=lambda i: ys[i])
            mid = len(ys) // 2
            rows.append([res.get("label") or res["model"], m, f"{ys[0]:.3f}", f"{best} ({ys[best]:.3f})",
                         f"{mid} ({ys[mid]:.3f})", f"{ys[-1]:.3f}"])
    img = plot_alignment(results, out_dir / "alignment.png")
    note = ("Hidden states of every layer mean-pooled over each sentence's tokens, for English-X translation "
            "pairs; mean over languages. cos gap: cosine of translations minus cosine of mismatched pairs; "
            "retrieval: share of sentences whose nearest neighbour is their translation (chance 1/n); CKA: "
            "linear CKA. The study finds multilingual alignment in the middle layers (docs/analysis.md).")
    return [("Layer-wise cross-lingual alignment", note, header, rows, img)]


def _fertility(data: ExperimentData) -> list[Section]:
    if data.config.get("downsample_by", "tokens") != "tokens" or not data.config.get("model"):
        return []
    from polyinstruct.analysis.fertility import parallel_fertility
    from polyinstruct.data import embedded

    langs = [lang for lang in data.languages if lang in embedded.parallel_languages()]
    if not langs:
        return []
    try:
        from transformers import AutoTokenizer

        from polyinstruct.models.resolve import resolve_model_path

        tok = AutoTokenizer.from_pretrained(resolve_model_path(data.config["model"], prepare=False))
    except Exception as e:  # the model is gone or was a hub id offline: the section says why
        return [("Tokenizer fertility", f"Not computed: the base model's tokenizer could not be loaded ({e}).",
                 [], None, None)]
    rows_d = parallel_fertility(tok, langs)
    header = ["language", "sentences", "tokens", "tokens/word", "tokens/char"]
    rows = [[lang, str(r["texts"]), str(r["tokens"]), _g(r["tokens_per_word"]), _g(r["tokens_per_char"])]
            for lang, r in rows_d.items()]
    note = ("Tokens the base model's tokenizer spends on the same sentences in each language (the embedded "
            "parallel set): a token-matched budget buys fewer sentences in a language with high fertility.")
    return [("Tokenizer fertility", note, header, rows, None)]
