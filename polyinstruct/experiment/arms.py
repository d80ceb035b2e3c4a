"""Build the data of every arm once, from per-language parallel data (seed 1 recipes)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from polyinstruct.data.records import Conversation
from polyinstruct.experiment.config import ExperimentConfig
from polyinstruct.fileio import read_json

log = logging.getLogger(__name__)


def load_per_language(cfg: ExperimentConfig) -> dict[str, list[Conversation]]:
    """Training data per language: the config's datasets, else the embedded parallel set."""
    per: dict[str, list[Conversation]] = {}
    for lang in cfg.train_languages:
        if cfg.data and lang in cfg.data:
            from polyinstruct.data import load_dataset

            per[lang] = list(load_dataset(cfg.data[lang]))
        else:
            from polyinstruct.data.embedded import load_instructions

            per[lang] = load_instructions(lang)
        if cfg.examples_per_language:
            per[lang] = per[lang][: cfg.examples_per_language]
    return per


def load_eval_prompts(cfg: ExperimentConfig) -> list[Conversation]:
    """Evaluation prompts of every evaluation language, with ids made unique per language
    (``eval_data`` per language, else ``eval_set``: the embedded prompts or study 1's test set)."""
    from polyinstruct.evalsets.study1 import load_study1_prompts, resolve_eval_set

    out: list[Conversation] = []
    for lang in cfg.eval_languages:
        if cfg.eval_data and lang in cfg.eval_data:
            from polyinstruct.data import load_dataset

            convs = list(load_dataset(cfg.eval_data[lang]))
        elif (study1 := resolve_eval_set(cfg.eval_set)) is not None:
            convs = load_study1_prompts(lang, study1)
        else:
            from polyinstruct.data.embedded import load_eval_prompts as embedded

            convs = embedded(lang)
        if cfg.eval.prompts_per_language:
            convs = convs[: cfg.eval.prompts_per_language]
        for c in convs:
            c.meta = {**c.meta, "prompt_id": c.id}
            c.id = f"{c.id}.{lang}"
            c.language = c.language or lang
        out += convs
    return out


def build_arms(cfg: ExperimentConfig, root: Path, token_counter: Callable[[str], int] | None) -> dict[str, Any]:
    """Write ``arms/<arm>.jsonl`` and ``arms/budget.json``; reuse them when present."""
    from polyinstruct.data.recipes import build_budget_arms, write_budget_arms

    folder = root / "arms"
    budget_path = folder / "budget.json"
    if budget_path.exists():
        return read_json(budget_path)
    per = load_per_language(cfg)
    arms = build_budget_arms(per, english=cfg.english, downsample_by=cfg.downsample_by, seed=cfg.seed,
                             token_counter=token_counter)
    report = write_budget_arms(arms, folder, seed=cfg.seed, downsample_by=cfg.downsample_by)
    log.info("built arms %s", ", ".join(sorted(arms)))
    return report


def arm_file(root: Path, cell_name: str, kind: str) -> Path:
    """The data file a cell trains on (mono-XX cells use that language's monolingual arm)."""
    return root / "arms" / f"{cell_name if kind == 'mono' else kind}.jsonl"
