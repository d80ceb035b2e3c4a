"""``validate``: check a training config, its datasets and its model without training."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError, PolyinstructError
from polyinstruct.train.config import TrainConfig, load_train_config

log = logging.getLogger(__name__)


def validate(config: "str | os.PathLike | dict | TrainConfig", overrides: list[str] | tuple[str, ...] = ()
             ) -> dict[str, Any]:
    """Load the config, tokenizer, template and data; check the model loads its config.

    Returns a summary (examples, tokens, steps per epoch, gradient accumulation)
    or raises a ConfigError/DataError naming the field or record at fault.
    """
    from transformers import AutoConfig

    from polyinstruct.train.batching import BatchPlan
    from polyinstruct.train.data import load_examples, load_template
    from polyinstruct.train.modeling import load_tokenizer
    from polyinstruct.models.resolve import resolve_model_path

    cfg = load_train_config(config, overrides)
    file = str(config) if isinstance(config, (str, os.PathLike)) else None
    try:
        path = resolve_model_path(cfg.model)
    except PolyinstructError as e:
        raise ConfigError(str(e), file=file, field="model") from None
    try:
        mcfg = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load a model config from {path!r}: {e}", file=file, field="model") from None
    if cfg.method in ("lora", "qlora", "adalora") or cfg.ia3_target_modules:
        _check_targets(cfg, mcfg, file)
    tokenizer, _ = load_tokenizer(path, list(cfg.add_special_tokens))
    template = load_template(cfg, tokenizer)
    train, val, manifest = load_examples(cfg, tokenizer, template)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.global_batch_size % (cfg.micro_batch_size * world):
        raise ConfigError(f"must be a multiple of micro_batch_size x processes = {cfg.micro_batch_size} x {world}",
                          file=file, field="global_batch_size")
    plan = BatchPlan(len(train), cfg.global_batch_size, cfg.micro_batch_size, world, cfg.seed)
    return {
        "model": path, "model_type": getattr(mcfg, "model_type", None), "method": cfg.method,
        "train_examples": len(train), "validation_examples": len(val),
        "train_tokens": sum(e["length"] for e in train), "loss_tokens": sum(e["num_loss_tokens"] for e in train),
        "steps_per_epoch": plan.steps_per_epoch, "grad_accum": plan.grad_accum, "processes": world,
        "datasets": [{k: m[k] for k in ("name", "split", "conversations")} for m in manifest],
        "output_dir": str(Path(cfg.output_dir)),
    }


def _check_targets(cfg: TrainConfig, model_config, file: str | None) -> None:
    """Resolve target module names on a weightless (meta-device) copy of the model."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from polyinstruct.train.methods import resolve_targets

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(model_config)
    try:
        if cfg.method in ("lora", "qlora", "adalora"):
            resolve_targets(model, cfg.lora.target_modules)
        if cfg.ia3_target_modules:
            resolve_targets(model, cfg.ia3_target_modules, "ia3_target_modules")
    except ConfigError as e:
        raise ConfigError(e.reason, file=file, field=e.field) from None
