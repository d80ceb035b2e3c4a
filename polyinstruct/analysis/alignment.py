"""Layer-wise cross-lingual alignment of a model's hidden states (docs/analysis.md).

For parallel sentences (English and a translation), every layer's hidden states
are mean-pooled over each sentence's own tokens (padding excluded by the
attention mask). Per layer and language pair:

- ``cos_parallel``: mean cosine similarity of a sentence and its translation;
  ``cos_mismatched``: mean cosine with the other sentences' translations;
  ``cos_gap``: the difference, which removes the common direction all pooled
  states share (raw cosines of decoder states are high for any pair);
- ``retrieval_en_xx`` / ``retrieval_xx_en``: bitext retrieval accuracy, the share
  of sentences whose nearest neighbour (cosine) on the other side is their
  translation (chance is 1/n);
- ``cka``: linear CKA (Kornblith et al. 2019) between the two sides' pooled states.

The pooled states come from ``polyinstruct.infer.hidden`` (batched, length-sorted,
reduced per batch), which the cross-lingual train/eval overlap check shares.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from polyinstruct.errors import PolyinstructError
from polyinstruct.lang.languages import flores_code

# The pooled states come from infer/hidden.py, shared with the cross-lingual overlap check (evalsets/overlap.py).
from polyinstruct.infer.hidden import load_model_and_tokenizer, pooled_hidden_states, resolve_dtype  # noqa: F401

log = logging.getLogger(__name__)

# ---- measures ---------------------------------------------------------------------------------

def _unit(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.where(n == 0, 1.0, n)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two ``(n, d)`` representations of the same n items."""
    x = x.astype(np.float64) - x.mean(axis=0, keepdims=True)
    y = y.astype(np.float64) - y.mean(axis=0, keepdims=True)
    hsic = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(hsic / denom) if denom > 0 else 0.0


def layer_measures(src: np.ndarray, tgt: np.ndarray) -> dict[str, float]:
    """The alignment measures of one layer for ``(n, d)`` states of n translation pairs."""
    n = src.shape[0]
    if n < 2:
        raise PolyinstructError("alignment needs at least 2 sentence pairs")
    sim = _unit(src.astype(np.float64)) @ _unit(tgt.astype(np.float64)).T
    diag = np.diag(sim)
    off = (sim.sum() - diag.sum()) / (n * n - n)
    hits_st = float(np.mean(np.argmax(sim, axis=1) == np.arange(n)))
    hits_ts = float(np.mean(np.argmax(sim, axis=0) == np.arange(n)))
    return {"cos_parallel": float(diag.mean()), "cos_mismatched": float(off), "cos_gap": float(diag.mean() - off),
            "retrieval_en_xx": hits_st, "retrieval_xx_en": hits_ts, "cka": linear_cka(src, tgt)}


def alignment_curves(src_states: np.ndarray, tgt_states: np.ndarray) -> list[dict[str, float]]:
    """One row of measures per layer for pooled states of shape ``(layers, n, d)``."""
    if src_states.shape != tgt_states.shape:
        raise PolyinstructError(f"both sides need the same shape, got {src_states.shape} and {tgt_states.shape}")
    return [{"layer": layer, **layer_measures(src_states[layer], tgt_states[layer])}
            for layer in range(src_states.shape[0])]


def load_pairs(languages: Iterable[str] | None = None, *, flores_dir: str | None = None,
               limit: int | None = None) -> dict[str, list[tuple[str, str]]]:
    """English-X sentence pairs: the embedded pairs, or Flores (``{dir}/eng_Latn.devtest`` style
    files, one sentence a line, aligned by line) when ``flores_dir`` is given."""
    from polyinstruct.data import embedded

    langs = list(languages or embedded.parallel_languages())
    out: dict[str, list[tuple[str, str]]] = {}
    for lang in langs:
        if flores_dir:
            out[lang] = _flores_pairs(Path(flores_dir), lang)
        else:
            out[lang] = [(en, xx) for _, en, xx in embedded.load_parallel_pairs(lang)]
        if limit:
            out[lang] = out[lang][:limit]
    return out


def _flores_file(folder: Path, lang: str) -> Path:
    code = flores_code(lang) or lang
    for name in (f"{code}.devtest", f"{code}.dev", f"{lang}.devtest", f"{lang}.dev", f"{lang}.txt"):
        if (folder / name).is_file():
            return folder / name
    raise PolyinstructError(f"no Flores file for {lang!r} in {folder} (looked for {code}.devtest, {code}.dev, "
                            f"{lang}.txt)")


def _flores_pairs(folder: Path, lang: str) -> list[tuple[str, str]]:
    en = _flores_file(folder, "en").read_text(encoding="utf-8").splitlines()
    xx_path = _flores_file(folder, lang)
    xx = xx_path.read_text(encoding="utf-8").splitlines()
    if len(en) != len(xx):
        raise PolyinstructError(f"{xx_path}: {len(xx)} lines but the English file has {len(en)}; Flores files "
                                "must be line-aligned")
    return list(zip(en, xx))


def measure_model(model_or_run: str, pairs: dict[str, list[tuple[str, str]]], *, batch_size: int = 32,
                  max_length: int = 128, progress: bool = False, dtype: str = "auto") -> dict[str, Any]:
    """All languages' curves for one model; English states are computed once."""
    dtype = resolve_dtype(dtype)
    model, tok, path = load_model_and_tokenizer(model_or_run, dtype=dtype)
    english = sorted({en for rows in pairs.values() for en, _ in rows})
    en_index = {s: i for i, s in enumerate(english)}
    en_states = pooled_hidden_states(model, tok, english, batch_size=batch_size, max_length=max_length,
                                     progress=progress)
    curves = {}
    for lang, rows in pairs.items():
        xx = pooled_hidden_states(model, tok, [x for _, x in rows], batch_size=batch_size, max_length=max_length,
                                  progress=progress)
        src = en_states[:, [en_index[en] for en, _ in rows]]
        curves[lang] = alignment_curves(src, xx)
    return {"model": str(model_or_run), "path": path, "layers": int(en_states.shape[0]), "dtype": dtype,
            "pairs": {lang: len(rows) for lang, rows in pairs.items()}, "curves": curves}


def mean_curve(result: dict[str, Any], measure: str) -> list[float]:
    """A model's measure per layer, averaged over languages."""
    per_lang = [[row[measure] for row in rows] for rows in result["curves"].values()]
    return np.mean(np.array(per_lang), axis=0).tolist()


MEASURES = ("cos_gap", "retrieval_en_xx", "retrieval_xx_en", "cka")


def plot_alignment(results: Sequence[dict[str, Any]], out: str | os.PathLike, *,
                   measures: Sequence[str] = MEASURES) -> Path:
    """Several models in one figure: one panel per measure, x = relative depth (0 = embeddings,
    1 = last layer) so models of different depth share an axis; the mean over languages."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polyinstruct.fileio import atomic_open

    fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.4))
    for ax, measure in zip(np.atleast_1d(axes), measures):
        for res in results:
            ys = mean_curve(res, measure)
            xs = np.linspace(0, 1, len(ys))
            ax.plot(xs, ys, marker=".", label=res.get("label") or Path(res["model"]).name)
        ax.set_title(measure.replace("_", " "))
        ax.set_xlabel("relative layer depth")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return out


def expand_models(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``(label, model)`` pairs: ``LABEL=PATH`` names a curve; an experiment directory expands
    into its base model and every trained cell's run directory."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        label, sep, model = spec.partition("=")
        if not sep or Path(spec).exists():
            label, model = "", spec
        p = Path(model)
        if (p / "experiment.yaml").is_file() and (p / "cells").is_dir():
            from polyinstruct.yamlio import load_yaml

            cfg = load_yaml(p / "experiment.yaml")
            if not cfg.get("model"):
                raise PolyinstructError(f"{p / 'experiment.yaml'}: model: missing")
            prefix = f"{label}/" if label else ""
            out.append((f"{prefix}base", str(cfg["model"])))
            for cell in sorted(c for c in (p / "cells").iterdir() if (c / "run" / "budget.json").is_file()):
                out.append((f"{prefix}{cell.name}", str(cell / "run")))
            if len(out) == 1:
                log.warning("%s has no trained cell yet: only its base model is measured", p)
        else:
            out.append((label or (p.name if p.exists() else model), model))
    return out


def alignment_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: per model, the mean over languages at the embeddings, the best layer and the last layer."""
    lines = ["Mean over languages; layer 0 = embeddings. `cos gap` = cosine of translations minus cosine of "
             "mismatched pairs; retrieval chance = 1/n.", "",
             "| model | measure | embeddings | best layer (value) | middle layer | last layer |", "|---|---|---|---|---|---|"]
    for res in results:
        for measure in MEASURES:
            ys = mean_curve(res, measure)
            best = int(np.argmax(ys))
            mid = len(ys) // 2
            lines.append(f"| {res.get('label') or res['model']} | {measure} | {ys[0]:.3f} | {best} ({ys[best]:.3f}) | "
                         f"{mid} ({ys[mid]:.3f}) | {ys[-1]:.3f} |")
    return "\n".join(lines) + "\n"
