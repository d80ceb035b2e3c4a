"""Training methods: full fine-tuning or one of peft's methods, one registry.

Each entry turns a loaded base model into the model to train. Target modules
are found by name in the model itself, so no architecture needs its own code:
"qkv" picks the attention query/key/value projections under whatever name the
architecture uses (q_proj/k_proj/v_proj, query_key_value, c_attn, W_pack, ...).

Bottleneck adapters (Alpaca-CoT's sequential and parallel adapters) are not
here: the maintained library for them (``adapters``, 1.3) requires
transformers ~=4.57 and does not load with transformers 5; see docs/training.md.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from polyinstruct.errors import ConfigError
from polyinstruct.registry import Registry
from polyinstruct.train.config import TrainConfig

log = logging.getLogger(__name__)

METHOD_BUILDERS: Registry[Callable[[Any, TrainConfig, int], Any]] = Registry("training method")

# Fused or separate attention input projections, across architectures.
_QKV_NAMES = ("q_proj", "k_proj", "v_proj", "query_key_value", "c_attn", "W_pack", "qkv_proj", "Wqkv",
              "query", "key", "value", "q", "k", "v", "wq", "wk", "wv")


def linear_module_names(model) -> set[str]:
    """Leaf names of the Linear (or Conv1D / quantized linear) layers, minus the LM head."""
    names = set()
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for full, mod in model.named_modules():
        cls = mod.__class__.__name__
        if mod is out_emb or full.endswith("lm_head"):
            continue
        if cls in ("Linear", "Conv1D", "Linear8bitLt", "Linear4bit", "NonDynamicallyQuantizableLinear"):
            names.add(full.rsplit(".", 1)[-1])
    return names


def resolve_targets(model, spec: str | list[str], field: str = "lora.target_modules") -> str | list[str]:
    """Turn "qkv" / "all-linear" / a list of names into what peft accepts; check names exist."""
    available = linear_module_names(model)
    if spec == "all-linear":
        return "all-linear"
    if spec == "qkv":
        found = [n for n in _QKV_NAMES if n in available]
        if not found:
            raise ConfigError(f"could not find attention q/k/v projections; linear layers are: "
                              f"{', '.join(sorted(available))}", field=field)
        return found
    names = [spec] if isinstance(spec, str) else list(spec)
    missing = [n for n in names if n not in available]
    if missing:
        raise ConfigError(f"no linear layer named {', '.join(missing)} in this model; "
                          f"available: {', '.join(sorted(available))}", field=field)
    return names


@METHOD_BUILDERS.register("full")
def _full(model, cfg: TrainConfig, total_steps: int):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _lora_kwargs(model, cfg: TrainConfig) -> dict[str, Any]:
    o = cfg.lora
    return dict(r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, bias="none", task_type="CAUSAL_LM",
                target_modules=resolve_targets(model, o.target_modules), modules_to_save=o.modules_to_save)


@METHOD_BUILDERS.register("lora")
@METHOD_BUILDERS.register("qlora")
def _lora(model, cfg: TrainConfig, total_steps: int):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(**_lora_kwargs(model, cfg)))


@METHOD_BUILDERS.register("dora")
def _dora(model, cfg: TrainConfig, total_steps: int):
    """DoRA (weight-decomposed LoRA): LoRA on the direction, a learned magnitude per output (peft's use_dora)."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(use_dora=True, **_lora_kwargs(model, cfg)))


@METHOD_BUILDERS.register("rslora")
def _rslora(model, cfg: TrainConfig, total_steps: int):
    """Rank-stabilised LoRA: scale alpha / sqrt(r) instead of alpha / r (peft's use_rslora)."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(use_rslora=True, **_lora_kwargs(model, cfg)))


@METHOD_BUILDERS.register("adalora")
def _adalora(model, cfg: TrainConfig, total_steps: int):
    from peft import AdaLoraConfig, get_peft_model

    kw = _lora_kwargs(model, cfg)
    kw.pop("r")
    t = max(int(total_steps), 2)
    # peft requires tinit < total_step - tfinal; spend 10% warm, 20% final, as in its examples.
    tinit, tfinal = max(0, t // 10), max(0, t // 5)
    if tinit + tfinal >= t:
        tinit, tfinal = 0, 0
    conf = AdaLoraConfig(init_r=cfg.lora.init_r, target_r=cfg.lora.target_r, total_step=t,
                         tinit=tinit, tfinal=tfinal, deltaT=1, **kw)
    return get_peft_model(model, conf)


@METHOD_BUILDERS.register("ia3")
def _ia3(model, cfg: TrainConfig, total_steps: int):
    from peft import IA3Config, get_peft_model

    kw: dict[str, Any] = {"task_type": "CAUSAL_LM"}
    if cfg.ia3_target_modules is not None:
        kw["target_modules"] = resolve_targets(model, cfg.ia3_target_modules, "ia3_target_modules")
        ff = cfg.ia3_feedforward_modules or []
        kw["feedforward_modules"] = [ff] if isinstance(ff, str) else list(ff)
    return get_peft_model(model, IA3Config(**kw))


@METHOD_BUILDERS.register("prefix_tuning")
def _prefix(model, cfg: TrainConfig, total_steps: int):
    from peft import PrefixTuningConfig, get_peft_model

    return get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM",
                                                    num_virtual_tokens=cfg.prompt.num_virtual_tokens))


@METHOD_BUILDERS.register("prompt_tuning")
def _prompt(model, cfg: TrainConfig, total_steps: int):
    from peft import PromptTuningConfig, get_peft_model

    kw: dict[str, Any] = {"task_type": "CAUSAL_LM", "num_virtual_tokens": cfg.prompt.num_virtual_tokens}
    if cfg.prompt.prompt_init_text:
        kw.update(prompt_tuning_init="TEXT", prompt_tuning_init_text=cfg.prompt.prompt_init_text,
                  tokenizer_name_or_path=model.name_or_path)
    return get_peft_model(model, PromptTuningConfig(**kw))


@METHOD_BUILDERS.register("p_tuning")
def _ptuning(model, cfg: TrainConfig, total_steps: int):
    from peft import PromptEncoderConfig, get_peft_model

    kw: dict[str, Any] = {"task_type": "CAUSAL_LM", "num_virtual_tokens": cfg.prompt.num_virtual_tokens}
    if cfg.prompt.encoder_hidden_size:
        kw["encoder_hidden_size"] = cfg.prompt.encoder_hidden_size
    return get_peft_model(model, PromptEncoderConfig(**kw))


def apply_method(model, cfg: TrainConfig, total_steps: int):
    """Wrap ``model`` for ``cfg.method``; returns the model whose trainable params to optimise."""
    try:
        out = METHOD_BUILDERS.get(cfg.method)(model, cfg, total_steps)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"peft could not build {cfg.method} for this model: {e}", field="method") from None
    return out


def virtual_tokens(model, cfg: TrainConfig) -> int:
    """How many virtual tokens peft prepends to the logits (prompt and P-tuning only)."""
    if cfg.method in ("prompt_tuning", "p_tuning"):
        return cfg.prompt.num_virtual_tokens
    return 0
