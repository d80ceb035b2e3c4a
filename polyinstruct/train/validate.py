"""``validate``: check a training config, its datasets and its model without training."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError, MissingDependencyError, PolyinstructError
from polyinstruct.registry import suggest
from polyinstruct.train.config import TrainConfig, load_train_config
from polyinstruct.train.methods import get_method

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
    preflight(cfg, file)
    from polyinstruct.train.fingerprint import check_same_run, is_finished

    check_same_run(cfg, Path(cfg.output_dir))  # a changed config for an existing run: train would refuse it
    try:
        path = resolve_model_path(cfg.model)
    except PolyinstructError as e:
        raise ConfigError(str(e), file=file, field="model") from None
    try:
        mcfg = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load a model config from {path!r}: {e}", file=file, field="model") from None
    if get_method(cfg.method).family == "lora" or cfg.ia3_target_modules:
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
        "output_dir_state": ("finished: train returns it as is" if is_finished(cfg.output_dir) and cfg.resume != "never"
                             else "holds a run: train starts over (resume: never)" if is_finished(cfg.output_dir)
                             else "new or interrupted: train starts or resumes"),
    }


def preflight(cfg: TrainConfig, file: str | None = None) -> None:
    """Checks that need no model and no data: everything ``train`` would otherwise reject only
    after loading them. ``train`` and ``validate`` both call it."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    out = Path(cfg.output_dir)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise ConfigError(f"{p} is a file, not a folder; choose another output_dir", file=file,
                              field="output_dir")
    if cfg.mixed_precision == "fp16" and not cuda:
        raise ConfigError("fp16 mixed precision needs a CUDA GPU; use bf16 or no on CPU", file=file,
                          field="mixed_precision")
    four = cfg.load_in_4bit or cfg.method == "qlora"
    if (four or cfg.load_in_8bit) and not cuda:
        what = "4-bit (QLoRA)" if four else "8-bit"
        raise ConfigError(f"{what} loading needs a CUDA GPU (bitsandbytes); none is available here. "
                          "Use method: lora without load_in_4bit/load_in_8bit on CPU.", file=file,
                          field="method" if cfg.method == "qlora" else "load_in_4bit" if four else "load_in_8bit")
    if cfg.resume not in ("auto", "never") and not (Path(cfg.resume) / "state.json").is_file():
        raise ConfigError(f"{cfg.resume} is not a checkpoint folder (no state.json); use auto, never or a "
                          "checkpoints/step-N folder", file=file, field="resume")
    if cfg.attn_implementation:
        from transformers import AttentionInterface

        known = ["eager", *AttentionInterface().valid_keys()]
        if cfg.attn_implementation not in known and "/" not in cfg.attn_implementation:
            raise ConfigError(f"unknown attn_implementation {cfg.attn_implementation!r}."
                              f"{suggest(cfg.attn_implementation, known)} Known: {', '.join(known)}", file=file,
                              field="attn_implementation")
    needs = [("report_to", name, mod, f"pip install {pkg}") for name, mod, pkg in
             (("tensorboard", "tensorboard", "'polyinstruct[tracking]'"), ("wandb", "wandb", "wandb"),
              ("mlflow", "mlflow", "mlflow")) if name in cfg.report_to]
    if four or cfg.load_in_8bit:
        needs.append(("load_in_4bit" if four else "load_in_8bit", "bitsandbytes", "bitsandbytes",
                      "pip install 'polyinstruct[gpu]'"))
    if cfg.use_liger:
        needs.append(("use_liger", "liger-kernel", "liger_kernel", "pip install liger-kernel"))
    if cfg.attn_implementation == "flash_attention_2":
        needs.append(("attn_implementation", "flash-attn", "flash_attn", "pip install flash-attn (CUDA only)"))
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        needs.append(("<launcher>", "deepspeed", "deepspeed", "pip install 'polyinstruct[gpu]'"))
    for field, what, module, how in needs:
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(f"{file + ':' if file else ''}{field}: needs {what}, which is not "
                                         f"installed: {how}")


def _check_targets(cfg: TrainConfig, model_config, file: str | None) -> None:
    """Resolve target module names on a weightless (meta-device) copy of the model."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from polyinstruct.train.methods import resolve_targets

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(model_config)
    try:
        if get_method(cfg.method).family == "lora":
            resolve_targets(model, cfg.lora.target_modules)
        if cfg.ia3_target_modules:
            resolve_targets(model, cfg.ia3_target_modules, "ia3_target_modules")
    except ConfigError as e:
        raise ConfigError(e.reason, file=file, field=e.field) from None
