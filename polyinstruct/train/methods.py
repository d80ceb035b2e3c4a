"""Training methods: full fine-tuning or one of peft's methods, one registry of records.

A method is one :class:`Method` record, registered with the ``@method(...)`` decorator on its
builder (a function turning the loaded base model into the model to train). The record says
everything the rest of polyinstruct asks about a method: its family (``lora`` methods share the
``lora:`` options and target-module checks), the peft adapter type it saves, whether that adapter
merges into the base weights, whether examples can be packed, and the config section it reads.
The config's method check, packing default, ``train validate``'s target check, merging and bf16
inference all derive from these records, so a new method is this one file (plus its options
section in ``TrainConfig`` if it needs new options). Target modules
are found by name in the model itself, so no architecture needs its own code:
"qkv" picks the attention query/key/value projections under whatever name the
architecture uses (q_proj/k_proj/v_proj, query_key_value, c_attn, W_pack, ...).

Bottleneck adapters (Alpaca-CoT's sequential and parallel adapters) are not
here: the maintained library for them (``adapters``, 1.3) requires
transformers ~=4.57 and does not load with transformers 5; see docs/training.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from polyinstruct.errors import ConfigError
from polyinstruct.registry import Registry

if TYPE_CHECKING:  # the config validates method names against this registry: no import back at run time
    from polyinstruct.train.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Method:
    """One training method."""

    name: str
    build: Callable[[Any, "TrainConfig", int], Any]  # (base model, config, total steps) -> model to train
    family: Literal["full", "lora", "ia3", "prompt"]
    peft_type: str | None = None     # peft's PeftType of the saved adapter (None: full weights are saved)
    mergeable: bool = False          # the adapter folds into the base weights (merge_adapter, bf16 inference)
    packable: bool = True            # examples may be packed (not with per-sequence virtual tokens)
    options: str | None = None       # the TrainConfig section it reads ("lora", "prompt")
    virtual_tokens: bool = False     # peft prepends num_virtual_tokens positions to the logits


TRAINING_METHODS: Registry[Method] = Registry("training method")


def method(name: str, **record: Any) -> Callable[[Callable], Callable]:
    """Register the decorated builder as training method ``name`` with the :class:`Method` fields."""

    def add(build: Callable) -> Callable:
        TRAINING_METHODS.register(name, Method(name=name, build=build, **record))
        return build

    return add


def method_names() -> tuple[str, ...]:
    return tuple(TRAINING_METHODS.names())


def get_method(name: str) -> Method:
    return TRAINING_METHODS.get(name)


# peft adapter types polyinstruct does not train but merges when given one (trained elsewhere)
_OTHER_MERGEABLE = ("LOHA", "LOKR", "OFT", "BOFT")


def mergeable_peft_types() -> frozenset[str]:
    """peft adapter types whose weights fold into the base model; prompt-learning ones do not."""
    return frozenset({m.peft_type for _, m in TRAINING_METHODS.items() if m.mergeable and m.peft_type}
                     | set(_OTHER_MERGEABLE))

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


@method("full", family="full")
def _full(model, cfg: TrainConfig, total_steps: int):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _lora_kwargs(model, cfg: TrainConfig) -> dict[str, Any]:
    o = cfg.lora
    return dict(r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, bias="none", task_type="CAUSAL_LM",
                target_modules=resolve_targets(model, o.target_modules), modules_to_save=o.modules_to_save)


@method("lora", family="lora", peft_type="LORA", mergeable=True, options="lora")
@method("qlora", family="lora", peft_type="LORA", mergeable=True, options="lora")
def _lora(model, cfg: TrainConfig, total_steps: int):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(**_lora_kwargs(model, cfg)))


@method("dora", family="lora", peft_type="LORA", mergeable=True, options="lora")
def _dora(model, cfg: TrainConfig, total_steps: int):
    """DoRA (weight-decomposed LoRA): LoRA on the direction, a learned magnitude per output (peft's use_dora)."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(use_dora=True, **_lora_kwargs(model, cfg)))


@method("rslora", family="lora", peft_type="LORA", mergeable=True, options="lora")
def _rslora(model, cfg: TrainConfig, total_steps: int):
    """Rank-stabilised LoRA: scale alpha / sqrt(r) instead of alpha / r (peft's use_rslora)."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(use_rslora=True, **_lora_kwargs(model, cfg)))


@method("adalora", family="lora", peft_type="ADALORA", mergeable=True, options="lora")
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


@method("ia3", family="ia3", peft_type="IA3", mergeable=True)
def _ia3(model, cfg: TrainConfig, total_steps: int):
    from peft import IA3Config, get_peft_model

    kw: dict[str, Any] = {"task_type": "CAUSAL_LM"}
    if cfg.ia3_target_modules is not None:
        kw["target_modules"] = resolve_targets(model, cfg.ia3_target_modules, "ia3_target_modules")
        ff = cfg.ia3_feedforward_modules or []
        kw["feedforward_modules"] = [ff] if isinstance(ff, str) else list(ff)
    return get_peft_model(model, IA3Config(**kw))


@method("prefix_tuning", family="prompt", peft_type="PREFIX_TUNING", packable=False, options="prompt")
def _prefix(model, cfg: TrainConfig, total_steps: int):
    from peft import PrefixTuningConfig, get_peft_model

    return get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM",
                                                    num_virtual_tokens=cfg.prompt.num_virtual_tokens))


@method("prompt_tuning", family="prompt", peft_type="PROMPT_TUNING", packable=False, options="prompt",
        virtual_tokens=True)
def _prompt(model, cfg: TrainConfig, total_steps: int):
    from peft import PromptTuningConfig, get_peft_model

    kw: dict[str, Any] = {"task_type": "CAUSAL_LM", "num_virtual_tokens": cfg.prompt.num_virtual_tokens}
    if cfg.prompt.prompt_init_text:
        kw.update(prompt_tuning_init="TEXT", prompt_tuning_init_text=cfg.prompt.prompt_init_text,
                  tokenizer_name_or_path=model.name_or_path)
    return get_peft_model(model, PromptTuningConfig(**kw))


@method("p_tuning", family="prompt", peft_type="P_TUNING", packable=False, options="prompt", virtual_tokens=True)
def _ptuning(model, cfg: TrainConfig, total_steps: int):
    from peft import PromptEncoderConfig, get_peft_model

    kw: dict[str, Any] = {"task_type": "CAUSAL_LM", "num_virtual_tokens": cfg.prompt.num_virtual_tokens}
    if cfg.prompt.encoder_hidden_size:
        kw["encoder_hidden_size"] = cfg.prompt.encoder_hidden_size
    return get_peft_model(model, PromptEncoderConfig(**kw))


def apply_method(model, cfg: TrainConfig, total_steps: int):
    """Wrap ``model`` for ``cfg.method``; returns the model whose trainable params to optimise."""
    try:
        out = get_method(cfg.method).build(model, cfg, total_steps)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"peft could not build {cfg.method} for this model: {e}", field="method") from None
    return out


def virtual_tokens(model, cfg: TrainConfig) -> int:
    """How many virtual tokens peft prepends to the logits (prompt and P-tuning only)."""
    if get_method(cfg.method).virtual_tokens:
        return cfg.prompt.num_virtual_tokens
    return 0
