"""Read what an experiment wrote, into plain rows for tables and plots.

An experiment directory holds ``experiment.yaml``, ``results.jsonl`` (one row
per cell x language) and one folder per cell under ``cells/`` with
``run/metrics.jsonl``, ``run/budget.json`` and ``predictions.jsonl`` (and, when a judge
ran, ``judge/judgments.jsonl``). ``provenance.json`` says how the run was made
(see report/provenance.py). Results rows may carry ``items``: per-prompt 0/1
outcomes (experiment/scoring.py) from which the report bootstraps its intervals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from polyinstruct.yamlio import safe_load
from polyinstruct.fileio import iter_jsonl


@dataclass
class ExperimentData:
    root: Path
    config: dict[str, Any]
    results: list[dict[str, Any]]
    losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # cell -> [(step, loss)]
    val_losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # cell -> stages.json (+pref cells)
    predictions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # cell -> id -> row
    data_budget: dict[str, Any] = field(default_factory=dict)  # arms/budget.json (recipe token counts)
    judgments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # cell -> judge rows
    provenance: dict[str, Any] = field(default_factory=dict)  # provenance.json ({} when the run predates it)

    def row(self, cell: str, lang: str) -> dict[str, Any] | None:
        """The results row of one cell and language (None when that cell skipped the language)."""
        for r in self.results:
            if r["cell"] == cell and r["language"] == lang:
                return r
        return None

    def tokens(self, cell: str, key: str = "tokens_seen") -> int:
        """A cell's training tokens over all its stages (SFT + preference for a +pref arm)."""
        own = (self.budgets.get(cell) or {}).get(key, 0)
        sft = ((self.stages.get(cell) or {}).get("sft") or {}).get("budget") or {}
        return own + sft.get(key, 0)

    @property
    def cells(self) -> list[str]:
        seen: list[str] = []
        for r in self.results:
            if r["cell"] not in seen:
                seen.append(r["cell"])
        return seen

    @property
    def languages(self) -> list[str]:
        seen: list[str] = []
        for r in self.results:
            if r["language"] not in seen:
                seen.append(r["language"])
        return seen


def _read_jsonl(path: Path) -> list[dict]:
    return list(iter_jsonl(path)) if path.exists() else []


def load_experiment(root: str | Path) -> ExperimentData:
    root = Path(root)
    cfg_path = root / "experiment.yaml"
    config = safe_load(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
    data = ExperimentData(root=root, config=config or {}, results=_read_jsonl(root / "results.jsonl"))
    arms_budget = root / "arms" / "budget.json"
    if arms_budget.exists():
        data.data_budget = json.loads(arms_budget.read_text(encoding="utf-8"))
    for cell in data.cells:
        cdir = root / "cells" / cell
        metrics = _read_jsonl(cdir / "run" / "metrics.jsonl")
        data.losses[cell] = [(m["step"], m["loss"]) for m in metrics if "loss" in m and "step" in m]
        data.val_losses[cell] = [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]
        budget = cdir / "run" / "budget.json"
        if budget.exists():
            data.budgets[cell] = json.loads(budget.read_text(encoding="utf-8"))
        if (cdir / "stages.json").exists():  # SFT, then sampling and preference tuning
            data.stages[cell] = json.loads((cdir / "stages.json").read_text(encoding="utf-8"))
        data.predictions[cell] = {r["id"] + "|" + str(r.get("language")): r
                                  for r in _read_jsonl(cdir / "predictions.jsonl")}
        data.judgments[cell] = _read_jsonl(cdir / "judge" / "judgments.jsonl")
    prov = root / "provenance.json"
    if prov.exists():
        data.provenance = json.loads(prov.read_text(encoding="utf-8"))
    return data
