"""Resumable checkpoints: written to a temp folder and renamed, so SIGKILL-safe.

A checkpoint holds the weights in the format peers load (a PEFT adapter folder,
``adapter_config.json`` + ``adapter_model.safetensors``, or a ``save_pretrained``
model folder; docs/training.md, "Checkpoints"), the trainable weights by parameter
name for exact resuming (``trainable.safetensors``; a full model's
``model.safetensors`` serves both), the optimizer and
scheduler states, every process's RNG states and ``state.json`` (step, epoch,
token counters, best validation loss). The data order needs no saved state: it
is a function of (seed, epoch, step) (see ``batching``). Under DeepSpeed or FSDP
the engine's own ``save_state`` writes the sharded model/optimizer instead.

Nothing read from a checkpoint executes code (docs/training.md, "Resuming"):
optimizer, scheduler and RNG states hold only tensors, numbers, strings and
containers and are read with ``torch.load(weights_only=True)``; a file that
needs anything else (a planted pickle) is refused with a ``CheckpointError``
naming it. Engine-managed folders are scanned without unpickling before the
engine loads them (``scan_engine_folder``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from polyinstruct.errors import PolyinstructError
from polyinstruct.fileio import write_json

log = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"^step-(\d+)$")


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Trainable parameters by name (shared/tied weights appear once)."""
    return {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


class CheckpointError(PolyinstructError):
    """A checkpoint file is unreadable or holds something other than plain state (refused, never executed)."""


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors, numbers and lists only (loadable with ``weights_only=True``)."""
    import numpy as np

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    s: dict[str, Any] = {"python": [version, list(internal), gauss],
                         "numpy": [str(kind), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
                                   int(has_gauss), float(cached)],
                         "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict[str, Any]) -> None:
    import numpy as np

    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = s["numpy"]
    if isinstance(keys, torch.Tensor):
        keys = keys.numpy()
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints, oldest first (temp folders are ignored; an ``.old-step-N`` left by a
    kill while ``step-N`` was being re-saved stands in for it)."""
    if not ckpt_root.is_dir():
        return []
    out: dict[int, Path] = {}
    for p in ckpt_root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / "state.json").exists():
            out[int(m.group(1))] = p
    for p in ckpt_root.glob(".old-step-*"):  # a re-save of the same step killed between its renames
        m = _STEP_DIR.match(p.name[len(".old-"):])
        if m and int(m.group(1)) not in out and (p / "state.json").exists():
            out[int(m.group(1))] = p
    return sorted(out.items())


def _engine_managed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)


def save_checkpoint(accelerator, model, optimizer, scheduler, state: dict[str, Any], ckpt_root: Path,
                    keep_last: int, export: Callable[[Path], None] | None = None) -> Path:
    """Write ``step-N`` atomically on every process's behalf; prune to ``keep_last``.

    ``export(folder)`` (main process) writes the weights in the format peers load: a PEFT
    adapter folder or a ``save_pretrained`` model folder. A full model saved there as one
    ``model.safetensors`` is also what resuming reads, so its weights are stored once.
    """
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
        if export is not None:
            export(tmp)
        if not _full_export(tmp):
            save_file(trainable_state(accelerator.unwrap_model(model)), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / f"rng_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        write_json(tmp / "state.json", state)
        _fsync_dir(tmp)
        prev = ckpt_root / f".old-{name}"
        if final.exists():  # the same step saved again: keep a complete copy on disk at every instant
            shutil.rmtree(prev, ignore_errors=True)
            os.replace(final, prev)
        os.replace(tmp, final)
        _fsync_dir(ckpt_root)
        shutil.rmtree(prev, ignore_errors=True)
        for _, old in list_checkpoints(ckpt_root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, model, optimizer, scheduler, path: Path) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` wrote; returns the saved ``state``."""
    from safetensors.torch import load_file

    if _engine_managed(accelerator):
        scan_engine_folder(path / "engine")
        accelerator.load_state(str(path / "engine"))
    else:
        params = dict(accelerator.unwrap_model(model).named_parameters())
        if (path / "trainable.safetensors").is_file():
            weights = load_file(str(path / "trainable.safetensors"))
        else:  # a full model exported once as model.safetensors (save_pretrained drops tied copies)
            weights = load_file(str(path / "model.safetensors"))
            missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
            if missing:
                raise CheckpointError(f"{path / 'model.safetensors'}: no weights for {', '.join(missing[:3])}; "
                                      "delete the checkpoint folder or train with resume=never")
            weights = {n: t for n, t in weights.items() if n in params and params[n].requires_grad}
        with torch.no_grad():
            for n, t in weights.items():
                params[n].copy_(t.to(params[n].device, params[n].dtype))
        optimizer.load_state_dict(safe_load(path / "optimizer.pt"))
    scheduler.load_state_dict(safe_load(path / "scheduler.pt"))
    rng_file = path / f"rng_{accelerator.process_index}.pt"
    if rng_file.exists():
        set_rng_state(safe_load(rng_file))
    with open(path / "state.json", encoding="utf-8") as f:
        return json.load(f)


def _numpy_safe_globals() -> list[Any]:
    """What checkpoints written before RNG states became tensors need: plain numpy arrays (no code)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    out: list[Any] = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    if hasattr(np, "dtypes"):
        out.append(np.dtypes.UInt32DType)
    return out


def safe_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors, numbers, strings and containers only.

    Anything else (a class, a function: what a planted pickle needs to run code) is
    refused before it is called, with an error naming the file.
    """
    import pickle

    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if m is None:
            detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", str(e))
            why = detail.group(1) if detail else "not a torch checkpoint"
            raise CheckpointError(f"{path}: unreadable checkpoint file ({why}); delete the checkpoint folder "
                                  "or train with resume=never") from None
        raise CheckpointError(
            f"{path}: refused to load: it would import {m.group(1)} (code, not state). polyinstruct never "
            "unpickles code from a checkpoint; if this file was not written by polyinstruct, delete the "
            "checkpoint folder (or train with resume=never)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint file ({type(e).__name__}: {e}); "
                              "delete the checkpoint folder or train with resume=never") from None


def save_best(accelerator, model, state: dict[str, Any], ckpt_root: Path) -> Path:
    """Replace ``checkpoints/best`` with the current trainable weights, crash-safe.

    The new copy is written completely into ``.tmp-best`` (``state.json`` last), then
    ``best`` -> ``.old-best`` and ``.tmp-best`` -> ``best`` are renamed. A kill at any
    point leaves a complete copy in ``best``, ``.tmp-best`` or ``.old-best``;
    ``recover_best`` (run here and by ``load_best_weights``) puts it back at ``best``.
    """
    from safetensors.torch import save_file

    best, tmp, old = ckpt_root / "best", ckpt_root / ".tmp-best", ckpt_root / ".old-best"
    sd = gather_state_dict(accelerator, model, trainable_only=True)
    if accelerator.is_main_process:
        recover_best(ckpt_root)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(sd, str(tmp / "trainable.safetensors"))
        _fsync_file(tmp / "trainable.safetensors")
        write_json(tmp / "state.json", state)  # written last: its presence marks the copy complete
        _fsync_dir(tmp)
        if best.exists():
            os.replace(best, old)
        os.replace(tmp, best)
        _fsync_dir(ckpt_root)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return best


def _full_export(folder: Path) -> bool:
    """True when ``folder`` holds a whole model as one ``model.safetensors`` (not an adapter)."""
    return (folder / "model.safetensors").is_file() and not (folder / "adapter_config.json").is_file()


def _complete(folder: Path) -> bool:
    return (folder / "state.json").is_file() and (folder / "trainable.safetensors").is_file()


def recover_best(ckpt_root: Path) -> None:
    """Finish or undo a ``save_best`` that a crash interrupted, so ``best`` is a complete copy."""
    best, tmp, old = ckpt_root / "best", ckpt_root / ".tmp-best", ckpt_root / ".old-best"
    if not best.exists():
        for candidate in (tmp, old):  # the newer complete copy first
            if candidate.is_dir() and _complete(candidate):
                log.warning("%s: restoring the best checkpoint from %s (an earlier run was interrupted while "
                            "replacing it)", best, candidate.name)
                os.replace(candidate, best)
                _fsync_dir(ckpt_root)
                break
    if best.exists():
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def load_best_weights(model, ckpt_root: Path) -> dict[str, Any] | None:
    """Load ``checkpoints/best`` into ``model`` (unwrapped); None when there is none."""
    from safetensors.torch import load_file

    recover_best(ckpt_root)
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


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_ENGINE_EXTRA_GLOBALS = frozenset({
    # accelerate's own weights-only allowlist (numpy RNG arrays)
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
    "numpy.dtypes.UInt32DType",
})
_ENGINE_EXTRA_PREFIXES = ("torch.distributed.checkpoint.metadata.",)  # FSDP/DCP metadata dataclasses
_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".bin", ".metadata"})


def _pickle_globals(data: bytes) -> set[str]:
    """``module.name`` of every global a pickle would import, read without unpickling it."""
    import pickletools

    found: set[str] = set()
    strings: list[str] = []
    memo: dict[int, Any] = {}
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("GLOBAL", "INST"):
            mod, _, attr = str(arg).partition(" ")
            found.add(f"{mod}.{attr}")
        elif name == "STACK_GLOBAL":
            found.add(f"{strings[-2]}.{strings[-1]}" if len(strings) >= 2 else "<unknown>.<unknown>")
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                      "SHORT_BINSTRING"):
            strings.append(str(arg))
        elif name in ("MEMOIZE",):
            memo[len(memo)] = strings[-1] if strings else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = strings[-1] if strings else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            v = memo.get(int(arg))
            if isinstance(v, str):
                strings.append(v)
    return found


def scan_engine_folder(folder: Path) -> None:
    """Refuse an engine (DeepSpeed/FSDP) checkpoint whose pickles would import code.

    The engines load their own files, some with full unpickling; this reads every
    pickle in ``folder`` first (opcodes only, nothing runs) and allows only the
    globals ``torch.load(weights_only=True)`` allows plus plain numpy arrays and
    torch.distributed.checkpoint metadata. A folder you wrote yourself and trust
    can be named in ``$POLYINSTRUCT_TRUSTED_CHECKPOINTS`` (os.pathsep-separated).
    """
    import zipfile

    from torch._weights_only_unpickler import _get_allowed_globals

    trusted = [Path(p).resolve() for p in os.environ.get("POLYINSTRUCT_TRUSTED_CHECKPOINTS", "").split(os.pathsep) if p]
    here = folder.resolve()
    if any(here == t or t in here.parents for t in trusted):
        log.warning("%s: loading without the pickle scan ($POLYINSTRUCT_TRUSTED_CHECKPOINTS)", folder)
        return
    allowed = set(_get_allowed_globals()) | _ENGINE_EXTRA_GLOBALS
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(f, "rb") as fh:
            head = fh.read(4)
        blobs: list[bytes] = []
        if head[:2] == b"PK" and zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as z:
                blobs = [z.read(n) for n in z.namelist() if n.endswith(".pkl")]
        elif head[:1] == b"\x80" or f.suffix in _PICKLE_SUFFIXES or f.name == ".metadata":
            blobs = [f.read_bytes()]  # a raw pickle (any protocol) or a file an engine unpickles
        for blob in blobs:
            try:
                names = _pickle_globals(blob)
            except Exception:  # noqa: BLE001 - not a pickle at all: an unpickler would fail on it too
                continue
            bad = sorted(n for n in names if n not in allowed and not n.startswith(_ENGINE_EXTRA_PREFIXES))
            if bad:
                raise CheckpointError(
                    f"{f}: refused to load: it would import {', '.join(bad[:5])} when unpickled (code, not state). "
                    "If you wrote this checkpoint and trust it, add its folder to $POLYINSTRUCT_TRUSTED_CHECKPOINTS; "
                    "otherwise delete it or train with resume=never")
