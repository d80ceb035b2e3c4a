"""Glue between ``train.run`` and the preference modules (kept here so run.py's edits stay small)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def reference_for(cfg, acc, model, train: list[dict], val: list[dict], run_dir: Path, resuming: bool, tokenizer,
                  n_added: int) -> Callable | None:
    """The loop's reference (``reference.setup_reference``), with the SFT loop's attention and
    sparse-logit settings."""
    from polyinstruct.train.attention import PACKED_ATTENTION
    from polyinstruct.train.loop import accepts_boolean_logits_to_keep
    from polyinstruct.train.methods import virtual_tokens
    from polyinstruct.train.modeling import load_model
    from polyinstruct.train.preference.reference import setup_reference

    unwrapped = acc.unwrap_model(model)
    impl = getattr(unwrapped.config, "_attn_implementation", None)
    bounds = bool(cfg.packing) and impl == PACKED_ATTENTION
    sparse = virtual_tokens(model, cfg) == 0 and accepts_boolean_logits_to_keep(unwrapped)
    return setup_reference(cfg, acc, model, train, val, run_dir, resuming=resuming,
                           load_base=lambda: load_model(cfg, tokenizer, n_added)[0], pad_id=tokenizer.pad_token_id,
                           example_bounds=bounds, sparse=sparse)
