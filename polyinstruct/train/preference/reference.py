"""The reference model's log-probabilities, without a second copy where possible.

- Adapters (every peft method): the base model *is* the reference: the same module run inside peft's
  ``disable_adapter()`` context. No second copy.
- Full fine-tuning, ``reference: auto``: a frozen copy loaded fresh from the base model's files (so a
  resumed run gets the untrained reference, not its trained weights).
- ``reference: precompute`` (any method): one no-grad pass over the training and validation examples
  before training (before a checkpoint is loaded, so the weights are the base's), stored in the run
  directory (``reference_logps.json``) and read back on resume; no reference model is kept.
- ORPO and SimPO are reference-free.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import torch

from polyinstruct.fileio import write_json
from polyinstruct.train.preference.batch import collate, sequence_logps, sequences
from polyinstruct.train.preference.config import REFERENCE_FREE

log = logging.getLogger(__name__)
REF_FILE = "reference_logps.json"


def adapter_reference(acc, model, sparse: bool) -> Callable:
    def ref(batch: dict, n_seq: int) -> torch.Tensor:
        with acc.unwrap_model(model).disable_adapter():
            return sequence_logps(model, batch, n_seq, sparse=sparse, autocast=acc.autocast)[0]
    return ref


def frozen_reference(acc, ref_model, sparse: bool) -> Callable:
    def ref(batch: dict, n_seq: int) -> torch.Tensor:
        return sequence_logps(ref_model, batch, n_seq, sparse=sparse, autocast=acc.autocast)[0]
    return ref


def _examples_key(examples: list[dict]) -> str:
    h = hashlib.sha256()
    for e in examples:
        for side in ("chosen", "rejected", "completion"):
            if side in e:
                h.update(json.dumps(e[side]["input_ids"]).encode())
    return h.hexdigest()


def precompute(examples: list[dict], ref: Callable, *, packed: bool, pad_id: int, example_bounds: bool,
               device, batch_size: int) -> None:
    """Store each example's reference log-probabilities in ``e["ref"]`` ([chosen, rejected] or [answer])."""
    for s in range(0, len(examples), batch_size):
        exs = examples[s:s + batch_size]
        seqs = sequences(exs)
        b = {k: v.to(device) for k, v in collate(seqs, packed=packed, pad_id=pad_id,
                                                 example_bounds=example_bounds).items()}
        with torch.no_grad():
            lp = ref(b, len(seqs)).tolist()
        n = len(exs)
        for i, e in enumerate(exs):
            e["ref"] = [lp[i], lp[n + i]] if "chosen" in e else [lp[i]]


def setup_reference(cfg, acc, model, train: list[dict], val: list[dict], run_dir: Path, *, resuming: bool,
                    load_base: Callable, pad_id: int, example_bounds: bool, sparse: bool) -> Callable | None:
    """The reference callable for the loop (None when precomputed values sit in the examples or the
    objective is reference-free). Call before a checkpoint is loaded."""
    if cfg.objective in REFERENCE_FREE:
        return None
    if cfg.is_peft:
        live = adapter_reference(acc, model, sparse)
    elif cfg.preference.reference == "precompute":
        model.eval()
        live = frozen_reference(acc, model, sparse)  # not yet trained (no checkpoint loaded): the base
    else:
        base = load_base()
        base.requires_grad_(False)
        base.eval()
        base.to(acc.device)
        return frozen_reference(acc, base, sparse)
    if cfg.preference.reference != "precompute":
        return live
    path = run_dir / REF_FILE
    key = {"train": _examples_key(train), "validation": _examples_key(val)}
    if resuming and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            for e, r in zip(train, saved["train"]):
                e["ref"] = r
            for e, r in zip(val, saved["validation"]):
                e["ref"] = r
            log.info("reference log-probabilities read from %s", path)
            return None
    was_training = model.training
    model.eval()
    bs = max(1, cfg.eval_batch_size)
    packed = bool(cfg.packing)
    precompute(train, live, packed=packed, pad_id=pad_id, example_bounds=example_bounds, device=acc.device,
               batch_size=bs)
    precompute(val, live, packed=packed, pad_id=pad_id, example_bounds=example_bounds, device=acc.device,
               batch_size=bs)
    model.train(was_training)
    if acc.is_main_process:
        write_json(path, {"key": key, "train": [e["ref"] for e in train], "validation": [e["ref"] for e in val]})
    log.info("precomputed reference log-probabilities for %d + %d examples", len(train), len(val))
    return None
