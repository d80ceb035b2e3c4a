"""Checks before an experiment does any work, and the fingerprints that keep a rerun honest.

``check_sections`` types the free-form ``train:`` and ``judge:`` sections (the
training config every arm gets, the judge config) and the identifier name, so a
typo fails at once with ``file:train.learning_rate: ...`` instead of after the
base cell was predicted. ``check_reuse`` compares what each existing cell was
run under with what it would run under now (docs/experiments.md, "Reruns"): a
cell trained, predicted or scored under other settings is never mixed with new
ones; the error names the cells and fields and the ways out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError, PolyinstructError
from polyinstruct.experiment.config import Cell, ExperimentConfig
from polyinstruct.fileio import read_json, write_json

FINGERPRINT_FILE = "fingerprint.json"

# Training fields the experiment sets itself, per cell; a train: section may not set them.
RESERVED_TRAIN = {
    "model": "the experiment's top-level model", "template": "the experiment's top-level template",
    "method": "the experiment's top-level method", "seed": "the experiment's top-level seed",
    "data": "each arm's data (built from train_languages and data)", "output_dir": "each cell's run folder",
}
# Judge fields that change where and how patiently the judge is asked, not its verdicts.
JUDGE_NOT_RESULT = frozenset({"base_url", "api_key_env", "timeout", "max_retries", "backoff_base",
                              "backoff_max", "concurrency", "prices", "cache_dir"})
# Evaluation settings placed in the cell fingerprint by name, or changing no answer (batch_size).
EVAL_PLACED = frozenset({"prompts_per_language", "max_new_tokens", "decoding", "batch_size", "dtype"})
# Experiment fields the fingerprints place (or leave out: name, output_dir, resume, arms, executor).
KNOWN_FIELDS = frozenset({"name", "output_dir", "resume", "arms", "executor", "model", "template", "method",
                          "train_languages", "eval_languages", "english", "data", "eval_data", "eval_set", "examples_per_language",
                          "downsample_by", "sizes", "train", "eval", "judge", "lid", "seed"})
# What ``resume: never`` removes (only these: the experiment folder may hold other files).
OUTPUTS = ("cells", "arms", "sizes", "report", "eval_prompts.jsonl", "results.jsonl", "budget_table.json",
           FINGERPRINT_FILE)


def cell_train_config(cfg: ExperimentConfig, *, model: str, data: str, output_dir: str) -> dict[str, Any]:
    """The training config of one trained cell (the runner trains with exactly this)."""
    return {**cfg.train, "model": model, "template": cfg.template, "method": cfg.method, "data": [data],
            "output_dir": output_dir, "seed": cfg.seed}


def check_sections(cfg: ExperimentConfig, file: str | None = None) -> None:
    """Validate the ``train:`` and ``judge:`` sections and the identifier name; raise a
    ``ConfigError`` naming ``file`` and the dotted field (``train.learning_rate``)."""
    from polyinstruct.train.config import load_train_config

    for key, what in RESERVED_TRAIN.items():
        if key in cfg.train:
            raise ConfigError(f"set by {what}; remove it from train:", file=file, field=f"train.{key}")
    try:
        load_train_config(cell_train_config(cfg, model=cfg.model, data="arm.jsonl", output_dir="run"))
    except ConfigError as e:
        raise ConfigError(e.reason, file=file, field=f"train.{e.field}" if e.field else "train") from None
    _check_preference(cfg, file)
    if cfg.judge is not None:
        from polyinstruct.judge.config import resolve_judge_config

        try:
            resolve_judge_config(cfg.judge)
        except ConfigError as e:
            raise ConfigError(e.reason, file=file, field=f"judge.{e.field}" if e.field else "judge") from None
    from polyinstruct.lang.identify import IDENTIFIERS
    from polyinstruct.registry import suggest

    if cfg.lid not in IDENTIFIERS:
        raise ConfigError(f"unknown language identifier {cfg.lid!r}.{suggest(cfg.lid, IDENTIFIERS.names())} "
                          f"Known: {', '.join(IDENTIFIERS.names())}", file=file, field="lid")


def preflight(cfg: ExperimentConfig, root: Path, file: str | None = None) -> None:
    """What training would reject on this machine (fp16 or 4-bit without CUDA, missing extras),
    checked once for all trained cells before the first cell runs."""
    from polyinstruct.train.config import load_train_config
    from polyinstruct.train.validate import preflight as train_preflight

    if any(c.kind != "base" for c in cfg.cells()):
        tcfg = load_train_config(cell_train_config(cfg, model=cfg.model, data="arm.jsonl",
                                                   output_dir=str(root / "cells" / "run")))
        try:
            train_preflight(tcfg)
        except ConfigError as e:
            raise ConfigError(e.reason, file=file, field=f"train.{e.field}" if e.field else "train") from None


# ---- fingerprints ----

def _spec(spec: str) -> dict[str, Any]:
    """A dataset as written plus, for a file, its sha256 (a catalogue name is its own identity)."""
    from polyinstruct.fileio import sha256_file

    p = Path(spec)
    return {"spec": spec, "sha256": sha256_file(p) if p.is_file() else None}


def _judge_fields(cfg: ExperimentConfig) -> dict[str, Any] | None:
    if cfg.judge is None:
        return None
    from polyinstruct.judge.config import resolve_judge_config

    return {k: v for k, v in resolve_judge_config(cfg.judge).model_dump(mode="json").items()
            if k not in JUDGE_NOT_RESULT}


def arms_fingerprint(cfg: ExperimentConfig) -> dict[str, Any]:
    """Everything the arm data files are built from."""
    return {
        "model": cfg.model,  # its tokenizer counts the token budgets
        "train_languages": list(cfg.train_languages), "english": cfg.english,
        "data": {lang: _spec(s) for lang, s in sorted((cfg.data or {}).items()) if lang in cfg.train_languages},
        "examples_per_language": None if cfg.sizes else cfg.examples_per_language,
        "downsample_by": cfg.downsample_by, "seed": cfg.seed,
    }


def cell_fingerprint(cfg: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    """Everything that decides one cell's predictions and scores."""
    from polyinstruct.train.config import load_train_config
    from polyinstruct.train.fingerprint import config_fields

    fp: dict[str, Any] = {
        "model": cfg.model, "template": cfg.template,
        "eval": {"languages": list(cell.eval_languages), "prompts_per_language": cfg.eval.prompts_per_language,
                 "max_new_tokens": cfg.eval.max_new_tokens, "decoding": cfg.eval.decoding,
                 "eval_data": {lang: _spec(s) for lang, s in sorted((cfg.eval_data or {}).items())
                               if lang in cell.eval_languages},
                 **({"eval_set": cfg.eval_set} if cfg.eval_set != "embedded" else {}),
                 # the precision answers were generated in, as resolved on this machine (float32 left out);
                 # in bf16 the batch size changes some greedy answers (docs/experiments.md, "Precision")
                 **({"dtype": d, "batch_size": cfg.eval.batch_size}
                    if (d := cfg.eval.resolved_dtype()) != "float32" else {}),
                 **_set_fields(cfg.eval, EVAL_PLACED)},
        "scoring": {"lid": cfg.lid, "seen_languages": list(cfg.train_languages), "judge": _judge_fields(cfg)},
    }
    other = _set_fields(cfg, KNOWN_FIELDS)  # fields added later count as result-deciding until placed
    if other:
        fp["other"] = other
    if cell.kind != "base":
        tcfg = load_train_config(cell_train_config(cfg, model=cfg.model, data="arm.jsonl", output_dir="run"))
        fp["train"] = {k: v for k, v in config_fields(tcfg).items() if k not in ("model", "template")}
        fp["arms"] = arms_fingerprint(cfg)
        fp["size"] = cell.size
    return fp


def _set_fields(model: Any, placed: frozenset[str]) -> dict[str, Any]:
    """Fields of ``model`` not in ``placed`` whose value is not the default (so a field added to
    the schema later changes no existing fingerprint until someone sets it)."""
    out = {}
    for name, info in type(model).model_fields.items():
        if name in placed:
            continue
        value = getattr(model, name)
        if value != info.get_default(call_default_factory=True):
            out[name] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    return out


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): d}


def _show(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 70 else s[:67] + "..."


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``field: old -> new`` for every leaf that differs."""
    a, b = _flat(old), _flat(new)
    return [f"{k}: {_show(a.get(k))} -> {_show(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _previous_config(root: Path) -> ExperimentConfig | None:
    """The config an experiment folder was last run with (folders from before fingerprints)."""
    from polyinstruct.config import validate_config
    from polyinstruct.yamlio import load_yaml

    path = root / "experiment.yaml"
    if not path.is_file():
        return None
    try:
        return validate_config(ExperimentConfig, load_yaml(path), file=str(path))
    except PolyinstructError:
        return None


def _has_outputs(cdir: Path) -> bool:
    return cdir.is_dir() and any(cdir.iterdir())


def check_reuse(cfg: ExperimentConfig, root: Path) -> None:
    """Refuse to continue an experiment folder whose existing cells were run with other settings.

    Also rebuilds the arms when their settings changed and no trained cell uses them yet.
    """
    if cfg.resume == "never":
        return
    previous = None
    problems: list[str] = []
    legacy: list[Cell] = []
    for cell in cfg.cells():
        cdir = root / "cells" / cell.name
        if not _has_outputs(cdir):
            continue
        if (cdir / FINGERPRINT_FILE).is_file():
            old = read_json(cdir / FINGERPRINT_FILE)
        else:  # written before fingerprints: compare with the config the folder records
            previous = previous or _previous_config(root)
            if previous is None:
                continue
            old = cell_fingerprint(previous, cell)
            legacy.append(cell)
        problems += [f"cell {cell.name}: {d}" for d in differences(old, cell_fingerprint(cfg, cell))]
    if problems:
        raise ConfigError(f"{root} holds results made with different settings:\n  " + "\n  ".join(problems)
                          + "\nTo keep them, set a new output_dir; to run this experiment again from scratch "
                          "here (deleting its cells and arms), add resume=never.", field="output_dir")
    for cell in legacy:  # pin what they were checked against
        write_cell_fingerprint(cfg, cell, root / "cells" / cell.name)
    stored = root / FINGERPRINT_FILE
    old_arms = read_json(stored).get("arms") if stored.is_file() else (
        arms_fingerprint(previous or _previous_config(root)) if (previous or _previous_config(root)) else None)
    if old_arms is not None and old_arms != arms_fingerprint(cfg):
        # no existing trained cell depends on them (it would have been reported above)
        shutil.rmtree(root / "arms", ignore_errors=True)
        for arms in (root / "sizes").glob("*/arms"):
            shutil.rmtree(arms, ignore_errors=True)


def start_over(root: Path) -> None:
    """``resume: never``: remove what earlier runs wrote (only the experiment's own outputs)."""
    for name in OUTPUTS:
        p = root / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def write_fingerprints(cfg: ExperimentConfig, root: Path) -> None:
    write_json(root / FINGERPRINT_FILE, {"arms": arms_fingerprint(cfg)})


def write_cell_fingerprint(cfg: ExperimentConfig, cell: Cell, cdir: Path) -> None:
    cdir.mkdir(parents=True, exist_ok=True)
    write_json(cdir / FINGERPRINT_FILE, cell_fingerprint(cfg, cell))


def _check_preference(cfg: ExperimentConfig, file: str | None) -> None:
    """Arms <kind>+pref need a ``preference:`` section whose stage config is a valid preference run."""
    from polyinstruct.train.config import load_train_config

    pref_arms = [c.name for c in cfg.cells() if c.preference]
    if pref_arms and cfg.preference is None:
        raise ConfigError(f"arm {pref_arms[0]} has a preference stage: add a preference: section "
                          "(docs/preference.md)", file=file, field="preference")
    if cfg.preference is None:
        return
    st = cfg.preference
    if st.from_ == "data" and not st.data:
        raise ConfigError("from: data needs data: (a preference file)", file=file, field="preference.data")
    base = cell_train_config(cfg, model=cfg.model, data="arm.jsonl", output_dir="run")
    tcfg = st.stage_train_config(base, model=cfg.model, data="pairs.jsonl", output_dir="run")
    try:
        loaded = load_train_config(tcfg)
    except ConfigError as e:
        raise ConfigError(e.reason, file=file, field=f"preference.train.{e.field}" if e.field
                          else "preference.train") from None
    if loaded.objective == "sft":
        raise ConfigError("the preference stage needs a preference objective (dpo, orpo, simpo, kto)", file=file,
                          field="preference.train.objective")

