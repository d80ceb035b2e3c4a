"""Run an experiment grid cell by cell, resumably, then write the report.

Each cell folder (``cells/<name>/``) moves through stages whose outputs mark
them finished: ``run/budget.json`` (trained), ``predictions.jsonl`` plus
``predicted.json`` (generated), ``scores.json`` (scored), ``done.json``. A rerun
skips finished cells and finished stages; an interrupted stage resumes through
the stage's own resume (training checkpoints, predictions by id). Where the cells run (this
process, Ray tasks, a Slurm job array) is the ``executor:`` section's choice
(experiment/executors.py, docs/clusters.md); the folder layout is the same for all.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from polyinstruct.config import apply_overrides, load_yaml, validate_config
from polyinstruct.errors import ConfigError, output_error
from polyinstruct.experiment.arms import build_arms, load_eval_prompts
from polyinstruct.experiment.cell import StagePrinter, data_root, sft_run_dir
from polyinstruct.experiment.config import ExperimentConfig
from polyinstruct.fileio import atomic_open, iter_jsonl, read_json, write_json, write_jsonl

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def load_experiment_config(config: str | os.PathLike | dict | ExperimentConfig,
                           overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load and validate, including the ``train:``/``judge:`` sections (experiment/checks.py).
    Input paths in a YAML file resolve against its folder; command-line values against the
    working directory."""
    from polyinstruct.experiment.checks import check_sections

    if isinstance(config, ExperimentConfig):
        return config if not overrides else load_experiment_config(config.model_dump(), overrides)
    if isinstance(config, dict):
        data, file = apply_overrides(config, list(overrides)), "<experiment config>"
    else:
        data = apply_overrides(_resolve_paths(load_yaml(config), Path(config).parent), list(overrides))
        file = str(config)
    cfg = validate_config(ExperimentConfig, data, file=file)
    check_sections(cfg, file)
    return cfg


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    from polyinstruct.config import resolve_input_path
    from polyinstruct.train.config import resolve_config_paths

    out = dict(data)
    for key in ("data", "eval_data"):
        if isinstance(out.get(key), dict):
            out[key] = {k: resolve_input_path(v, base) for k, v in out[key].items()}
    if "model" in out:
        out["model"] = resolve_input_path(out["model"], base, by_suffix=False)
    if "template" in out:
        out["template"] = resolve_input_path(out["template"], base)
    bench = (out.get("eval") or {}).get("benchmarks") if isinstance(out.get("eval"), dict) else None
    if isinstance(bench, dict) and bench.get("data_dir"):
        out["eval"] = {**out["eval"], "benchmarks": {**bench, "data_dir": resolve_input_path(bench["data_dir"], base)}}
    if isinstance(out.get("train"), dict):
        out["train"] = resolve_config_paths(out["train"], base)
    ex = out.get("executor")
    if isinstance(ex, dict) and isinstance(ex.get("accelerate_config"), str):  # docs/clusters.md
        out["executor"] = {**ex, "accelerate_config": resolve_input_path(ex["accelerate_config"], base)}
    return out


def run_experiment(config: str | os.PathLike | dict | ExperimentConfig, overrides: list[str] | tuple[str, ...] = (),
                   *, progress: bool = False, report: bool = True) -> Path:
    """Run every cell of the grid (skipping finished ones); return the experiment directory."""
    cfg = load_experiment_config(config, overrides)
    root = Path(cfg.output_dir)
    try:
        return _run(cfg, root, str(config) if isinstance(config, (str, os.PathLike)) else None, progress, report)
    except OSError as e:
        err = output_error(e, str(root))
        if err is None:
            raise
        raise err from None


def _run(cfg: ExperimentConfig, root: Path, file: str | None, progress: bool, report: bool) -> Path:
    from polyinstruct.experiment import checks

    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is a file, not a folder; choose another output_dir", file=file,
                          field="output_dir")
    checks.preflight(cfg, root, file)
    if cfg.resume == "never":
        checks.start_over(root)
    checks.check_reuse(cfg, root)  # before anything is written: a refused run changes nothing
    root.mkdir(parents=True, exist_ok=True)
    checks.write_fingerprints(cfg, root)
    started = time.time()
    load_at_start = _load_at_start()
    say = StagePrinter(progress)
    with atomic_open(root / "experiment.yaml") as f:
        yaml.safe_dump(cfg.model_dump(), f, sort_keys=False, allow_unicode=True)

    from polyinstruct.models.resolve import resolve_model_path

    say(f"[model] resolving {cfg.model}")
    model_path = resolve_model_path(cfg.model)
    counter = _token_counter(model_path)
    needs_data = any(c.kind != "base" for c in cfg.cells())
    data_budget = build_arms(cfg, root, counter) if needs_data and not cfg.sizes else {}
    for n in (cfg.sizes or []) if needs_data else []:  # size axis: one set of arms per size
        data_budget = build_arms(cfg.model_copy(update={"examples_per_language": n}), data_root(root, n), counter)
    eval_path = root / "eval_prompts.jsonl"  # rewritten each run: cells check their own prompts
    write_jsonl(eval_path, (c.to_dict() for c in load_eval_prompts(cfg)))

    # the cells, on the configured executor (experiment/executors.py, docs/clusters.md)
    from polyinstruct.experiment.executors import get_executor, new_run_id

    cells = cfg.cells()
    todo = [c.name for c in cells if not (root / "cells" / c.name / "done.json").exists()]
    for i, cell in enumerate(cells, 1):
        if cell.name not in todo:
            say(f"[{i}/{len(cells)}] {cell.name}: finished earlier, skipped")
    if todo:
        get_executor(cfg.executor).run(cfg.model_dump(), root, todo, model_path, new_run_id(), say, progress)

    _write_results(cfg, root, data_budget)
    from polyinstruct.report.provenance import write_provenance  # versions, hashes, hardware, wall time

    write_provenance(root, cfg.model_dump(), model_path=model_path, started_at=started,
                     stage_seconds=_stage_seconds(say.finish(), root, todo), load_at_start=load_at_start)
    if report:
        from polyinstruct.report import write_report

        path = write_report(root)
        say(f"[report] {path}")
    return root


def _write_results(cfg: ExperimentConfig, root: Path, data_budget: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    for cell in cfg.cells():
        cdir = root / "cells" / cell.name
        if not (cdir / "scores.json").exists():
            continue
        budget = {}
        if (cdir / "run" / "budget.json").exists():
            budget = read_json(cdir / "run" / "budget.json")
        extra: dict[str, Any] = {}
        if cell.preference:  # SFT + preference: both stages' tokens count (docs/preference.md)
            stages = _preference_stages(cfg, cell, cdir, root, budget)
            write_json(cdir / "stages.json", stages)  # the report's budget rows per stage
            sft_tokens = stages["sft"]["budget"].get("tokens_seen", 0)
            extra = {"sft_tokens": sft_tokens, "preference_tokens": budget.get("tokens_seen", 0),
                     "objective": budget.get("objective")}
            budget = {**budget, "tokens_seen": sft_tokens + budget.get("tokens_seen", 0)}
        for r in read_json(cdir / "scores.json")["rows"]:
            rows.append({"cell": cell.name, "arm": cell.kind + ("+pref" if cell.preference else ""),
                         "model": cfg.model, **r, **extra,
                         "train_tokens": budget.get("tokens_seen", 0),
                         **({"size": cell.size} if cell.size is not None else {})})
    order = {lang: i for i, lang in enumerate(cfg.eval_languages)}
    cell_order = {c.name: i for i, c in enumerate(cfg.cells())}
    rows.sort(key=lambda r: (cell_order.get(r["cell"], 99), order.get(r["language"], 99)))
    write_jsonl(root / "results.jsonl", rows)
    if data_budget:
        write_json(root / "budget_table.json", data_budget)


def _preference_stages(cfg: ExperimentConfig, cell, cdir: Path, root: Path, budget: dict[str, Any]) -> dict[str, Any]:
    """What each stage of a +pref cell cost: the SFT run (maybe the plain cell's, shared), the answers
    sampled for ``from: prefs`` (answers and generated tokens) and the preference run."""
    sft_dir = sft_run_dir(cfg, cell, cdir, root)
    sft = read_json(sft_dir / "budget.json") if (sft_dir / "budget.json").exists() else {}
    shared = sft_dir.parent.name if sft_dir.parent != cdir else None
    out: dict[str, Any] = {"sft": {"run": os.path.relpath(sft_dir, cdir), "shared_with": shared, "budget": sft}}
    samples = cdir / "prefs" / "samples.jsonl"
    if samples.exists():
        rows = list(iter_jsonl(samples))
        report = cdir / "prefs" / "report.json"
        out["prefs"] = {"answers": len(rows), "generated_tokens": sum(int(r.get("completion_tokens") or 0) for r in rows),
                        "pairs": read_json(report).get("pairs") if report.exists() else None}
    out["preference"] = {"objective": budget.get("objective"), "budget": budget}
    return out


def _token_counter(model_path: str) -> Callable[[str], int] | None:
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_path)
    except Exception as e:  # an adapter-only path or a hub id offline: fall back to words
        log.warning("no tokenizer for token budgets (%s); counting words instead", e)
        return None
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _load_at_start() -> dict[str, float | None]:
    """How busy the machine is before the run adds its own work: CPU use over half a second
    (the load average lags by minutes: a job that just ended still shows in it) and the load."""
    out: dict[str, float | None] = {"cpu_percent": None, "load_average_1m": None}
    try:
        import psutil

        out["cpu_percent"] = psutil.cpu_percent(interval=0.5)
    except Exception:  # noqa: BLE001 - an optional detail
        pass
    if hasattr(os, "getloadavg"):
        out["load_average_1m"] = round(os.getloadavg()[0], 2)
    return out


def _stage_seconds(top: dict[str, float], root: Path, ran: list[str]) -> dict[str, float]:
    """Seconds per stage of this invocation: the grid's own stages (model, ...) with the time spent
    in cells split into the cells' stages (train, predict, score, ...), summed over the cells that
    ran (each cell's ``done.json``); what the cells' stages do not cover is ``cell other``. With a
    parallel executor the cells' sums can exceed the wall time."""
    from polyinstruct.fileio import read_json

    out = dict(top)
    in_cells = out.pop("cell", 0.0) + out.pop("grid", 0.0)
    stages: dict[str, float] = {}
    for name in ran:
        done = root / "cells" / name / "done.json"
        if done.exists():
            for k, v in (read_json(done).get("stage_seconds") or {}).items():
                stages[k] = stages.get(k, 0.0) + float(v)
    if not stages:
        return {**out, **({"cell": round(in_cells, 1)} if in_cells else {})}
    out.update({k: round(v, 1) for k, v in stages.items()})
    rest = in_cells - sum(stages.values())
    if rest >= 0.5:
        out["cell other"] = round(rest, 1)
    return out
