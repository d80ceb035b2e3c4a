"""Resumable checkpoints: written to a temp folder and renamed, so SIGKILL-safe.

A checkpoint holds the trainable weights (safetensors), the optimizer and
scheduler states, every process's RNG states and ``state.json`` (step, epoch,
token counters, best validation loss). The data order needs no saved state: it
is a function of (seed, epoch, step) (see ``batching``). Under DeepSpeed or FSDP
the engine's own ``save_state`` writes the sharded model/optimizer instead.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from polyinstruct.fileio import write_json

log = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"^step-(\d+)$")


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Trainable parameters by name (shared/tied weights appear once)."""
    return {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    import numpy as np

    s: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints, oldest first (temp folders are ignored)."""
    if not ckpt_root.is_dir():
        return []
    out = []
    for p in ckpt_root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / "state.json").exists():
            out.append((int(m.group(1)), p))
    return sorted(out)


def _engine_managed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)


def save_checkpoint(accelerator, model, optimizer, scheduler, state: dict[str, Any], ckpt_root: Path,
                    keep_last: int) -> Path:
    """Write ``step-N`` atomically on every process's behalf; prune to ``keep_last``."""
    from safetensors.torch import save_file

    name = f"step-{state['step']:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".tmp-{name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if _engine_managed(accelerator):
        accelerator.save_state(str(tmp / "engine"))
    elif accelerator.is_main_process:
        save_file(trainable_state(accelerator.unwrap_model(model)), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / f"rng_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        write_json(tmp / "state.json", state)
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(ckpt_root)
        for _, old in list_checkpoints(ckpt_root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, model, optimizer, scheduler, path: Path) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` wrote; returns the saved ``state``."""
    from safetensors.torch import load_file

    if _engine_managed(accelerator):
        accelerator.load_state(str(path / "engine"))
    else:
        weights = load_file(str(path / "trainable.safetensors"))
        params = dict(accelerator.unwrap_model(model).named_parameters())
        with torch.no_grad():
            for n, t in weights.items():
                params[n].copy_(t.to(params[n].device, params[n].dtype))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_file = path / f"rng_{accelerator.process_index}.pt"
    if rng_file.exists():
        set_rng_state(torch.load(rng_file, weights_only=False))
    with open(path / "state.json", encoding="utf-8") as f:
        return json.load(f)


def save_best(accelerator, model, state: dict[str, Any], ckpt_root: Path) -> Path:
    """Replace ``checkpoints/best`` with the current trainable weights (atomic swap)."""
    from safetensors.torch import save_file

    best, tmp, old = ckpt_root / "best", ckpt_root / ".tmp-best", ckpt_root / ".old-best"
    sd = gather_state_dict(accelerator, model, trainable_only=True)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(sd, str(tmp / "trainable.safetensors"))
        write_json(tmp / "state.json", state)
        if best.exists():
            os.replace(best, old)
        os.replace(tmp, best)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return best


def load_best_weights(model, ckpt_root: Path) -> dict[str, Any] | None:
    """Load ``checkpoints/best`` into ``model`` (unwrapped); None when there is none."""
    from safetensors.torch import load_file

    best = ckpt_root / "best"
    if not (best / "trainable.safetensors").exists():
        return None
    weights = load_file(str(best / "trainable.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))
    with open(best / "state.json", encoding="utf-8") as f:
        return json.load(f)


def gather_state_dict(accelerator, model, *, trainable_only: bool) -> dict[str, torch.Tensor]:
    """Full (gathered) weights on the main process, whatever engine sharded them."""
    if _engine_managed(accelerator):
        full = accelerator.get_state_dict(model)
        if not trainable_only:
            return full
        names = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
        return {k: v for k, v in (full or {}).items() if k in names}
    return trainable_state(accelerator.unwrap_model(model))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
