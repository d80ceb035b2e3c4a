"""``train()``: config in, finished run directory out.

Sets up the accelerator, data, model and method, resumes from the newest
complete checkpoint when there is one, runs the loop, and writes the final
model (or adapter) and ``budget.json`` atomically: a run directory holding
``model/`` or ``adapter/`` and ``budget.json`` is finished.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import shutil
from pathlib import Path

import yaml

from polyinstruct.errors import ConfigError, output_error
from polyinstruct.fileio import atomic_open, write_json
from polyinstruct.train.batching import BatchPlan
from polyinstruct.train.checkpoint import list_checkpoints, load_best_weights, load_checkpoint
from polyinstruct.train.config import TrainConfig, load_train_config
from polyinstruct.train.data import load_examples, load_template
from polyinstruct.train.fingerprint import check_same_run, is_finished  # noqa: F401 - is_finished re-exported
from polyinstruct.train.loop import Loop, LoopState, lr_lambda
from polyinstruct.train.methods import apply_method, virtual_tokens
from polyinstruct.train.modeling import cast_frozen_linears, count_parameters, load_model, load_tokenizer
from polyinstruct.train.tracking import MetricsSink, flops_per_token, truncate_metrics

log = logging.getLogger(__name__)


def _accelerator(cfg: TrainConfig, grad_accum_if_engine: int):
    import torch
    from accelerate import Accelerator

    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("fp16 mixed precision needs a CUDA GPU; use bf16 or no on CPU", field="mixed_precision")
    from accelerate.state import AcceleratorState

    st = AcceleratorState._shared_state
    if st and st.get("_mixed_precision") not in (None, cfg.mixed_precision) and not deepspeed:
        # accelerate keeps one process-wide state; a second run in this process (an experiment's
        # next cell) with another precision gets a fresh one (the distributed PartialState is kept)
        AcceleratorState._reset_state(reset_partial_state=False)
    # cpu=True on CPU-only machines so torchrun/accelerate launch gives gloo DDP (MULTI_CPU).
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available(),
                      gradient_accumulation_steps=grad_accum_if_engine if deepspeed else 1)
    if deepspeed:
        ds = acc.state.deepspeed_plugin.deepspeed_config
        if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            ds["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
    return acc


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _horizon(cfg: TrainConfig, plan: BatchPlan, lengths: list[int]) -> tuple[int, int]:
    """(step limit, lr-schedule length). ``max_steps`` replaces epochs (as in HF/TRL); a token
    budget stops the run when reached and sets the schedule length from the mean step size."""
    limit = cfg.max_steps or max(1, math.ceil(cfg.epochs * plan.steps_per_epoch))
    sched = limit
    per_step = sum(lengths) / len(lengths) * min(cfg.global_batch_size, len(lengths))
    if cfg.max_tokens:
        sched = min(sched, max(1, math.ceil(cfg.max_tokens / per_step)))
    if cfg.max_loss_tokens:
        # loss tokens per step estimated from the same mean
        sched = min(sched, max(1, math.ceil(cfg.max_loss_tokens / (per_step * 0.5))))
    return limit, sched


def _optimizer(cfg: TrainConfig, model):
    import torch

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in n.lower() or n.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # torch's fused AdamW (one kernel per tensor; same update rule): 3.6x faster than the default
    # foreach kernels on one CPU core (0.07 vs 0.24 s per step for 33.7M parameters), about 3% of a
    # training step (docs/training.md, "Throughput"). DeepSpeed and FSDP manage their own parameters.
    engine = any(os.environ.get(v, "false").lower() == "true"
                 for v in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"))
    params = decay + no_decay
    fused = not engine and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_epsilon, **({"fused": True} if fused else {}))


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("polyinstruct", "torch", "transformers", "peft", "accelerate", "tokenizers", "deepspeed",
                "bitsandbytes"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def train(config: "str | os.PathLike | dict | TrainConfig", overrides: list[str] | tuple[str, ...] = (), *,
          progress: bool = False) -> Path:
    """Train as configured; return the run directory (resuming it when interrupted before)."""
    from polyinstruct.train.validate import preflight

    cfg = load_train_config(config, overrides)
    preflight(cfg, str(config) if isinstance(config, (str, os.PathLike)) else None)
    run_dir = Path(cfg.output_dir)
    try:
        return _train(cfg, run_dir, progress)
    except OSError as e:
        err = output_error(e, str(run_dir))
        if err is None:
            raise
        raise err from None


def _train(cfg: TrainConfig, run_dir: Path, progress: bool) -> Path:
    import torch
    from accelerate.utils import set_seed

    check_same_run(cfg, run_dir)
    if is_finished(run_dir) and cfg.resume != "never":
        log.info("%s is already finished (same fingerprint); nothing to do", run_dir)
        return run_dir
    world = _world_size()
    if cfg.global_batch_size % (cfg.micro_batch_size * world):
        raise ConfigError(f"must be a multiple of micro_batch_size x processes = {cfg.micro_batch_size} x {world}",
                          field="global_batch_size")
    grad_accum = cfg.global_batch_size // (cfg.micro_batch_size * world)
    acc = _accelerator(cfg, grad_accum)
    set_seed(cfg.seed)

    tokenizer, n_added = load_tokenizer(_resolved(cfg.model), list(cfg.add_special_tokens))  # once
    template = load_template(cfg, tokenizer)  # once, on the final tokenizer
    if template.spec.kind != "jinja":  # every saved tokenizer (checkpoints, adapter/, model/) prompts as trained
        from polyinstruct.templates.hf_template import attach_chat_template

        attach_chat_template(template, tokenizer)
    train_ex, val_ex, data_manifest = load_examples(cfg, tokenizer, template)
    lengths = [e["length"] for e in train_ex]
    plan = BatchPlan(len(train_ex), cfg.global_batch_size, cfg.micro_batch_size, acc.num_processes, cfg.seed,
                     group_window=cfg.group_by_length, lengths=tuple(lengths) if cfg.group_by_length else None,
                     balance=bool(cfg.packing))
    limit, sched_steps = _horizon(cfg, plan, lengths)

    set_seed(cfg.seed)
    base, base_path = load_model(cfg, tokenizer, n_added)
    model = apply_method(base, cfg, sched_steps)
    portable_base_name(model, cfg)
    n_params, n_trainable = count_parameters(model)  # before the cast below: its untied head copy is no parameter
    if cfg.mixed_precision == "bf16" and cfg.is_peft and not (cfg.load_in_4bit or cfg.load_in_8bit):
        n_cast = cast_frozen_linears(model, torch.bfloat16)  # the same matmuls, cast once (modeling.py)
        log.info("bf16 autocast: %d frozen linear layers stored in bf16", n_cast)
    log.info("%s: %d parameters, %d trainable (%.2f%%); %d train / %d validation examples; %d steps "
             "(%d per epoch, grad accumulation %d x %d processes)", cfg.method, n_params, n_trainable,
             100 * n_trainable / max(1, n_params), len(train_ex), len(val_ex), limit, plan.steps_per_epoch,
             plan.grad_accum, acc.num_processes)
    optimizer = _optimizer(cfg, model)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(cfg.warmup_ratio * sched_steps)
    model, optimizer = acc.prepare(model, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.lr_scheduler, warmup, sched_steps))

    ckpt_root = run_dir / "checkpoints"
    state = LoopState()
    resume_from = _resume_point(cfg, ckpt_root)
    if acc.is_main_process:
        if resume_from is None:  # a fresh start: nothing of an earlier run may look current
            shutil.rmtree(ckpt_root, ignore_errors=True)
            for stale in ("metrics.jsonl", "budget.json"):
                (run_dir / stale).unlink(missing_ok=True)
            for stale in ("model", "adapter"):
                shutil.rmtree(run_dir / stale, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_run_files(cfg, run_dir, template, data_manifest, base_path)
    acc.wait_for_everyone()
    reference = None
    if cfg.objective != "sft":  # before a checkpoint is loaded: the weights are still the base's
        from polyinstruct.train.preference.run import reference_for

        reference = reference_for(cfg, acc, model, train_ex, val_ex, run_dir, resume_from is not None, tokenizer,
                                  n_added)
    if resume_from is not None:
        saved = load_checkpoint(acc, model, optimizer, scheduler, resume_from)
        state = LoopState(**saved)
        if acc.is_main_process:
            truncate_metrics(run_dir / "metrics.jsonl", state.step)
        log.info("resumed from %s (step %d)", resume_from, state.step)

    cfg_model = acc.unwrap_model(model).config
    layers = getattr(cfg_model, "num_hidden_layers", 0) or getattr(cfg_model, "n_layer", 0) or 0
    hidden = getattr(cfg_model, "hidden_size", 0) or getattr(cfg_model, "n_embd", 0) or 0
    fpt = lambda seq: flops_per_token(n_params, n_trainable, layers, hidden, seq)  # noqa: E731
    sink = MetricsSink(run_dir, list(cfg.report_to), cfg.run_name or run_dir.name, cfg.dump(),
                       enabled=acc.is_main_process)
    loop_cls, extra = Loop, {}
    if cfg.objective != "sft":
        from polyinstruct.train.preference.loop import PreferenceLoop

        loop_cls, extra = PreferenceLoop, {"reference": reference}
    loop = loop_cls(cfg, acc, model, optimizer, scheduler, train_ex, val_ex, plan, limit, run_dir, sink,
                    tokenizer.pad_token_id, virtual_tokens(model, cfg), fpt, progress=progress,
                    export=lambda folder: export_weights(cfg, acc.unwrap_model(model), tokenizer, folder, n_added),
                    **extra)
    try:
        state = loop.run(state)
    finally:
        sink.close()

    best = None
    if cfg.select_best and state.best_step is not None:
        best = load_best_weights(acc.unwrap_model(model), ckpt_root)
    _save_final(cfg, acc, model, tokenizer, run_dir, n_added)
    if acc.is_main_process:
        write_json(run_dir / "budget.json", {
            "objective": cfg.objective,
            "tokens_seen": state.tokens, "loss_tokens": state.loss_tokens, "steps": state.step,
            "epochs": round(state.step / plan.steps_per_epoch, 4), "wall_time_s": round(state.wall_time_s, 3),
            "flops_estimate": state.flops, "global_batch": cfg.global_batch_size,
            "micro_batch": cfg.micro_batch_size, "grad_accum": plan.grad_accum, "processes": acc.num_processes,
            "parameters": n_params, "trainable_parameters": n_trainable, "stopped_by": state.finished_reason,
            "best_step": best["step"] if best else None, "best_val_loss": best["val_loss"] if best else None,
        })
        from polyinstruct.train.card import push_to_hub, write_model_card

        write_model_card(cfg, run_dir, data_manifest, train_ex)
    acc.wait_for_everyone()
    if cfg.push_to_hub and acc.is_main_process:
        push_to_hub(cfg, run_dir)
    return run_dir


def _resolved(name: str) -> str:
    from polyinstruct.models.resolve import resolve_model_path

    return resolve_model_path(name)


def _resume_point(cfg: TrainConfig, ckpt_root: Path) -> Path | None:
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        found = list_checkpoints(ckpt_root)
        return found[-1][1] if found else None
    p = Path(cfg.resume)
    if not (p / "state.json").exists():
        raise ConfigError(f"{p} is not a checkpoint folder (no state.json)", field="resume")
    return p


def _write_run_files(cfg: TrainConfig, run_dir: Path, template, data_manifest: list[dict], base_path: str) -> None:
    with atomic_open(run_dir / "config.yaml") as f:
        yaml.safe_dump(cfg.dump(), f, sort_keys=False, allow_unicode=True)
    template.save(run_dir / "template.yaml")
    write_json(run_dir / "manifest.json", {"data": data_manifest, "versions": _versions(),
                                           "base_model": base_path, "method": cfg.method})
    from polyinstruct.train.fingerprint import FINGERPRINT_FILE, fingerprint

    write_json(run_dir / FINGERPRINT_FILE, fingerprint(cfg, data_manifest))


def _save_final(cfg: TrainConfig, acc, model, tokenizer, run_dir: Path, n_added: int) -> None:
    """Write ``model/`` (safetensors) or ``adapter/`` (PEFT format) via a temp folder + rename."""
    target = run_dir / ("adapter" if cfg.is_peft else "model")
    tmp = run_dir / f".tmp-{target.name}"
    state_dict = acc.get_state_dict(model)  # collective under ZeRO-3/FSDP: every process calls it
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        export_weights(cfg, acc.unwrap_model(model), tokenizer, tmp, n_added, state_dict=state_dict)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    acc.wait_for_everyone()


def export_weights(cfg: TrainConfig, unwrapped, tokenizer, folder: Path, n_added: int, state_dict=None) -> None:
    """The weights as peers load them: a PEFT adapter folder (``PeftModel.from_pretrained``) or a
    ``save_pretrained`` model folder (``AutoModelForCausalLM.from_pretrained``), plus the tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.is_peft:
        unwrapped.save_pretrained(str(folder), save_embedding_layers=bool(n_added) or "auto")
    else:
        kw = {"state_dict": state_dict} if state_dict is not None else {}
        unwrapped.save_pretrained(str(folder), safe_serialization=True, **kw)
    tokenizer.save_pretrained(str(folder))


def portable_base_name(model, cfg: TrainConfig) -> None:
    """Record the base model in adapter configs as the user named it (a hub id, a packaged model
    name or the path given), never the resolved cache folder, so an adapter loads on another machine
    (``polyinstruct.models.resolve`` resolves the name there)."""
    confs = getattr(model, "peft_config", None)
    if not confs:
        return
    name = cfg.model
    p = Path(name).expanduser()
    if p.exists():  # a local folder (or run dir): keep the path the user gave, made absolute only if needed
        name = str(p)
    for conf in confs.values():
        conf.base_model_name_or_path = name
