"""What decides a training run's result, stored in the run directory and compared before reuse.

A run directory is reused (a finished run returned as is, an interrupted one
resumed) only when its fingerprint equals the current one: every config field
that changes the weights (model, method, hyperparameters, template, seed,
lengths, ...), the content hash of every dataset, and a signature of the
template and the local model files. Fields that only change logging, output
places or resumability (``output_dir``, ``resume``, ``report_to``,
``save_every``, ...) are left out, so changing them never blocks a reuse.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError, PolyinstructError
from polyinstruct.fileio import read_json, sha256_file
from polyinstruct.train.config import TrainConfig

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
VERSION = 1

# Config fields that never change the trained weights. ``preset`` is left out because its
# values are already in the resolved fields.
NOT_RESULT_FIELDS = frozenset({
    "output_dir", "resume", "run_name", "report_to", "log_every", "save_every", "keep_last",
    "eval_batch_size", "gradient_checkpointing", "preset", "tokenize_cache", "tokenize_num_proc", "push_to_hub",
})
DATA_FIELDS = ("data", "validation_data")
# Result fields added after runs were fingerprinted: counted only when set away from their default,
# so a run trained before they existed (which behaved as the default) is still recognised.
ADDED_LATER: dict[str, Any] = {"group_by_length": 0, "objective": "sft"}


def _default_preference() -> dict[str, Any]:
    from polyinstruct.train.preference.config import PreferenceOptions

    return PreferenceOptions().model_dump(mode="json")


def config_fields(cfg: TrainConfig) -> dict[str, Any]:
    """The result-deciding config fields (datasets excluded: they are compared by content)."""
    return {k: v for k, v in cfg.dump().items() if k not in NOT_RESULT_FIELDS and k not in DATA_FIELDS
            and not (k in ADDED_LATER and v == ADDED_LATER[k])
            and not (k == "preference" and v == _default_preference())}


def template_signature(name: str) -> str:
    """sha256 of the template's YAML (built-in or a file); the name itself otherwise
    (``tokenizer`` uses the model's own template, covered by the model signature)."""
    from polyinstruct.templates.library import resource_dir

    builtin = resource_dir() / f"{name}.yaml"
    if "/" not in name and builtin.is_file():
        return sha256_file(builtin)
    if Path(name).is_file():
        return sha256_file(Path(name))
    return name


def model_signature(model: str) -> dict[str, Any] | None:
    """For a local model folder: sha256 of its config.json and the names and sizes of its weight
    files (cheap, without reading gigabytes). None for a hub id or packaged name (the name is the
    identity, and it is among the config fields)."""
    from polyinstruct.models.resolve import resolve_model_path

    p = Path(model).expanduser()
    if not p.is_dir():
        return None
    p = Path(resolve_model_path(str(p), prepare=False))
    out: dict[str, Any] = {}
    for name in ("config.json", "adapter_config.json"):
        if (p / name).is_file():
            out[name] = sha256_file(p / name)
    out["weights"] = sorted([f.name, f.stat().st_size] for f in p.iterdir()
                            if f.suffix in (".safetensors", ".bin", ".pt", ".gguf") and f.is_file())
    return out


def data_identity(cfg: TrainConfig) -> list[dict[str, Any]]:
    """(split, name, spec, sha256) of every configured dataset; sha256 is None when the dataset
    cannot be read (then ``error`` says why)."""
    from polyinstruct.train.sources import content_hash

    rows = []
    for which in DATA_FIELDS:
        for name, spec in cfg.named_data(which):
            row: dict[str, Any] = {"split": "train" if which == "data" else "validation", "name": name,
                                   "spec": spec, "sha256": None}
            try:
                row["sha256"] = content_hash(spec)
            except (PolyinstructError, OSError) as e:
                row["error"] = str(e).splitlines()[0]
            rows.append(row)
    return rows


def fingerprint(cfg: TrainConfig, data: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The run's fingerprint; ``data`` rows (split, name, spec, sha256) are computed when not given."""
    rows = data if data is not None else data_identity(cfg)
    return {
        "version": VERSION,
        "config": config_fields(cfg),
        "template_sha256": template_signature(cfg.template),
        "model_files": model_signature(cfg.model),
        "data": [{k: r.get(k) for k in ("split", "name", "spec", "sha256")} for r in rows],
    }


def stored_fingerprint(run_dir: str | Path) -> dict[str, Any] | None:
    """The fingerprint a run directory was trained under; for run directories written before
    fingerprints existed, rebuilt from its ``config.yaml`` and ``manifest.json``."""
    run_dir = Path(run_dir)
    if (run_dir / FINGERPRINT_FILE).is_file():
        return read_json(run_dir / FINGERPRINT_FILE)
    if not (run_dir / "config.yaml").is_file():
        return None
    from polyinstruct.yamlio import load_yaml

    old = load_yaml(run_dir / "config.yaml")
    manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    return {
        "version": 0,
        "config": {k: v for k, v in old.items() if k not in NOT_RESULT_FIELDS and k not in DATA_FIELDS
                   and not (k in ADDED_LATER and v == ADDED_LATER[k])
                   and not (k == "preference" and v == _default_preference())},
        "data": [{k: m.get(k) for k in ("split", "name", "spec", "sha256")} for m in manifest.get("data", [])],
    }


def _short(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False, sort_keys=True) if not isinstance(v, str) else v
    return s if len(s) <= 80 else s[:77] + "..."


def _data_label(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r.get('spec')} ({(r.get('sha256') or 'unreadable')[:12]})" for r in rows) or "none"


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable ``field: old -> new`` lines; empty when the fingerprints agree.

    A legacy fingerprint (version 0) only compares what it recorded: config fields and data.
    """
    out = []
    oc, nc = old.get("config", {}), new.get("config", {})
    for k in sorted(set(oc) | set(nc)):
        if oc.get(k) != nc.get(k):
            out.append(f"{k}: {_short(oc.get(k))} -> {_short(nc.get(k))}")
    if old.get("version", 0) >= 1:
        if old.get("template_sha256") != new.get("template_sha256") and oc.get("template") == nc.get("template"):
            out.append(f"template {nc.get('template')}: its file changed ({str(old.get('template_sha256'))[:12]} -> "
                       f"{str(new.get('template_sha256'))[:12]})")
        if old.get("model_files") != new.get("model_files") and oc.get("model") == nc.get("model"):
            out.append(f"model {nc.get('model')}: its files changed (config.json or weight files)")
    for split in ("train", "validation"):
        o = [r for r in old.get("data", []) if r.get("split") == split]
        n = [dict(r) for r in new.get("data", []) if r.get("split") == split]
        for i, r in enumerate(n):  # the same file, gone since: trust the recorded hash, say so
            if r.get("sha256") is None and i < len(o) and o[i].get("spec") == r.get("spec"):
                log.warning("cannot re-read %s to check it is unchanged; trusting the hash recorded at training",
                            r.get("spec"))
                r["sha256"] = o[i].get("sha256")
        key = lambda rows: [(r.get("name"), r.get("sha256")) for r in rows]  # noqa: E731
        if key(o) != key(n) or any(r.get("sha256") is None for r in n):
            field = "data" if split == "train" else "validation_data"
            out.append(f"{field}: {_data_label(o)} -> {_data_label(n)}")
    return out


def is_finished(run_dir: str | os.PathLike) -> bool:
    d = Path(run_dir)
    return (d / "budget.json").exists() and ((d / "model").is_dir() or (d / "adapter").is_dir())


def check_same_run(cfg: TrainConfig, run_dir: Path) -> None:
    """Refuse to reuse ``run_dir`` (return it finished, or resume it) when it was trained under a
    different fingerprint (docs/training.md, "Reusing a run directory"). ``resume: never`` starts
    over and needs no check; resuming from a named checkpoint folder only warns."""
    from polyinstruct.train.checkpoint import list_checkpoints

    if cfg.resume == "never":
        return
    finished = is_finished(run_dir)
    if not finished and not (cfg.resume != "auto" or list_checkpoints(run_dir / "checkpoints")):
        return  # nothing to reuse: a fresh start
    old = stored_fingerprint(run_dir)
    if old is None:
        return
    diffs = differences(old, fingerprint(cfg))
    if not diffs:
        return
    if cfg.resume != "auto":
        log.warning("resuming from %s with changed settings (%s); the result will not equal an uninterrupted run",
                    cfg.resume, "; ".join(diffs))
        return
    state = "a finished run" if finished else "an interrupted run"
    raise ConfigError(f"{run_dir} holds {state} trained with different settings:\n  " + "\n  ".join(diffs)
                      + "\nTo keep it, set a new output_dir; to train here again from scratch (deleting it), "
                      "add resume=never.", field="output_dir")
