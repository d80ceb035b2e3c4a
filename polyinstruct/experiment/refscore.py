"""Reference log-probability per cell and language: a continuous score for scaling fits.

For each evaluation prompt the cell's model reads the prompt in its own prompt format
(the run directory's template, or the experiment's for the base model) and then the
reference answer, teacher-forced; the score is the mean log-probability per reference
token (higher is better; its negative is the per-token cross-entropy). Unlike scores of
generated answers it moves with training data even for models too small to answer, so
the scaling study can be run in miniature on a CPU. Rows are written to
``analysis/ref_logprob.jsonl`` with ``cell``, ``arm``, ``language``, ``size``, ``n`` and
``ref_logprob``: ``polyinstruct analyze scaling EXP/analysis/ref_logprob.jsonl --metric
ref_logprob`` fits them (docs/analysis.md).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from polyinstruct.errors import DataError
from polyinstruct.fileio import iter_jsonl, iter_jsonl_numbered, write_jsonl
from polyinstruct.yamlio import load_yaml

log = logging.getLogger(__name__)


def _cells(root: Path) -> list[tuple[str, str, str, int | None, Path]]:
    """(cell, arm, model, size, eval prompts) for every cell whose model exists."""
    cfg_path = root / "experiment.yaml"
    if not cfg_path.is_file():
        raise DataError("not an experiment directory (no experiment.yaml)", path=str(root))
    cfg = load_yaml(cfg_path)
    from polyinstruct.experiment.config import ExperimentConfig

    exp = ExperimentConfig.model_validate(cfg)
    out = []
    for cell in exp.cells():
        cdir = root / "cells" / cell.name
        prompts = cdir / "eval_prompts.jsonl"
        if not prompts.is_file():
            continue
        if cell.kind == "base":
            out.append((cell.name, cell.kind, exp.model, cell.size, prompts))
        elif (cdir / "run" / "budget.json").is_file():
            out.append((cell.name, cell.kind, str(cdir / "run"), cell.size, prompts))
    return out


def reference_logprobs(experiment_dir: str | os.PathLike, *, template: str | None = None,
                       progress: bool = False) -> list[dict[str, Any]]:
    """One row per cell and language (see module doc); writes ``analysis/ref_logprob.jsonl``."""
    import torch

    from polyinstruct.infer.hf import HFBackend
    from polyinstruct.models.resolve import resolve_model_path

    root = Path(experiment_dir)
    cfg = load_yaml(root / "experiment.yaml") if \
        (root / "experiment.yaml").is_file() else {}
    rows: list[dict[str, Any]] = []
    out_path = root / "analysis" / "ref_logprob.jsonl"
    earlier: dict[str, list[dict[str, Any]]] = {}
    if out_path.is_file():  # resume: a cell scored after its model was last written is not scored again
        for r in iter_jsonl(out_path):
            earlier.setdefault(r["cell"], []).append(r)
    for name, arm, model, size, prompts in _cells(root):
        marker = root / "cells" / name / ("eval_prompts.jsonl" if arm == "base" else "run/budget.json")
        if name in earlier and marker.stat().st_mtime < out_path.stat().st_mtime:
            rows += earlier[name]
            continue
        if progress:
            print(f"[ref_logprob] {name}", flush=True)
        kwargs = {"template": template or cfg.get("template", "tulu")} if arm == "base" else {}
        backend = HFBackend.from_path(resolve_model_path(model), device="cpu", dtype="float32", merge=True, **kwargs)
        per_lang: dict[str, list[float]] = {}
        for n, rec in iter_jsonl_numbered(prompts):
            msgs = rec.get("messages") or []
            if not msgs or msgs[-1].get("role") != "assistant" or not msgs[-1].get("content"):
                raise DataError("an evaluation prompt needs a reference answer as its last turn",
                                path=str(prompts), line=n, field="messages")
            ctx = backend.encode_messages([{"role": m["role"], "content": m["content"]} for m in msgs[:-1]])
            ref = backend.tokenizer(msgs[-1]["content"], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([ctx + ref])
            with torch.inference_mode():
                logits = backend.model(input_ids=ids).logits[0, len(ctx) - 1: -1].float()
            lp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ref).unsqueeze(1)).mean().item()
            per_lang.setdefault(rec.get("language") or "unknown", []).append(lp)
        for lang, vals in per_lang.items():
            rows.append({"cell": name, "arm": arm, "language": lang, "size": size, "n": len(vals),
                         "ref_logprob": sum(vals) / len(vals)})
        del backend
    if not rows:
        raise DataError("no cell with a model and evaluation prompts yet", path=str(root))
    write_jsonl(out_path, rows)
    assert all(math.isfinite(r["ref_logprob"]) for r in rows)
    return rows
