"""The training config: one pydantic schema, source presets, YAML + ``key=value`` overrides.

A preset supplies defaults that any field written in the file or on the command
line overrides, so ``preset: seed1_lora`` plus ``lr=1e-4`` means "seed 1's LoRA
recipe with a different learning rate".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from polyinstruct.config import apply_overrides, load_yaml, resolve_input_path, validate_config
from polyinstruct.errors import ConfigError
from polyinstruct.registry import suggest
from polyinstruct.train.methods import get_method, method_names
from polyinstruct.train.preference.config import PreferenceOptions

METHODS = method_names()  # the method registry's names (polyinstruct.train.methods)

# Studies 1 and 3 (docs/studies.md). Values are defaults; explicit fields win.
PRESETS: dict[str, dict[str, Any]] = {
    # Chen, Ji et al.: LoRA on q,k,v; r 8, alpha 16, dropout 0.05; batch 128; 5 epochs;
    # lr 3e-4; best checkpoint by validation cross-entropy.
    "seed1_lora": {
        "method": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "qkv"},
        "global_batch_size": 128, "epochs": 5, "lr": 3e-4, "select_best": True,
        "lr_scheduler": "linear", "warmup_ratio": 0.0, "weight_decay": 0.0,
    },
    # Alpaca full fine-tuning (Stanford Alpaca's train.py): 3 epochs, lr 2e-5, warmup 3%,
    # cosine decay, no weight decay, global batch 256.
    "alpaca_fft": {
        "method": "full", "epochs": 3, "lr": 2e-5, "warmup_ratio": 0.03,
        "lr_scheduler": "cosine", "weight_decay": 0.0, "global_batch_size": 256,
    },
    # Tulu (Wang, Ivison et al.): 2 epochs, lr 2e-5, no weight decay, linear warmup 3% then
    # linear decay, max length 2048. open-instruct used global batch 128.
    "tulu": {
        "method": "full", "epochs": 2, "lr": 2e-5, "weight_decay": 0.0, "warmup_ratio": 0.03,
        "lr_scheduler": "linear", "max_length": 2048, "global_batch_size": 128, "template": "tulu",
    },
}


class LoraOptions(BaseModel):
    """LoRA/QLoRA/AdaLoRA options. ``target_modules``: names, "all-linear", or "qkv"."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(8, gt=0)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Union[str, list[str]] = "qkv"
    modules_to_save: list[str] | None = None
    # AdaLoRA only: rank budget schedule (peft's AdaLoraConfig names).
    init_r: int = 12
    target_r: int = 8


class PromptOptions(BaseModel):
    """Prefix/prompt/P-tuning options (virtual tokens)."""

    model_config = ConfigDict(extra="forbid")
    num_virtual_tokens: int = Field(20, gt=0)
    encoder_hidden_size: int | None = None  # P-tuning's prompt encoder width
    prompt_init_text: str | None = None  # prompt tuning: initialise from this text


class TrainConfig(BaseModel):
    """Everything a training run needs; see docs/training.md for each field."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # Hugging Face TrainingArguments / TRL SFTConfig names typed by habit -> (our field, hint).
    HABIT_NAMES: ClassVar[dict[str, tuple[str, str]]] = {
        "learning_rate": ("lr", ""),
        "num_train_epochs": ("epochs", ""), "num_epochs": ("epochs", ""),
        "per_device_train_batch_size": ("micro_batch_size", "the global batch is set by global_batch_size"),
        "train_batch_size": ("global_batch_size", ""), "batch_size": ("global_batch_size", ""),
        "gradient_accumulation_steps": ("global_batch_size", "accumulation = global_batch_size / "
                                        "(micro_batch_size x processes), so set global_batch_size instead"),
        "bf16": ("mixed_precision", "write mixed_precision: bf16"),
        "fp16": ("mixed_precision", "write mixed_precision: fp16"),
        "max_seq_length": ("max_length", ""), "model_max_length": ("max_length", ""),
        "lr_scheduler_type": ("lr_scheduler", ""),
        "per_device_eval_batch_size": ("eval_batch_size", ""),
        "save_steps": ("save_every", ""), "eval_steps": ("eval_every", ""), "logging_steps": ("log_every", ""),
        "save_total_limit": ("keep_last", ""), "load_best_model_at_end": ("select_best", ""),
        "model_name_or_path": ("model", ""), "torch_dtype": ("dtype", ""),
        "resume_from_checkpoint": ("resume", "a checkpoints/step-N folder, auto or never"),
        "dataset": ("data", ""), "dataset_name": ("data", ""), "train_file": ("data", ""),
        "validation_file": ("validation_data", ""), "eval_dataset": ("validation_data", ""),
        "chat_template": ("template", ""),
        "lora_r": ("lora.r", ""), "lora_alpha": ("lora.alpha", ""), "lora_dropout": ("lora.dropout", ""),
        "lora_target_modules": ("lora.target_modules", ""), "target_modules": ("lora.target_modules", ""),
        "r": ("lora.r", ""),
    }

    model: str
    template: str = "tulu"
    data: Union[list[str], dict[str, str]]
    validation_data: Union[list[str], dict[str, str], None] = None
    validation_split: float = Field(0.0, ge=0, lt=1)
    max_examples: int | None = Field(None, gt=0)
    output_dir: str
    preset: Literal["seed1_lora", "alpaca_fft", "tulu"] | None = None

    method: str = "lora"
    # What the run minimises (docs/preference.md): sft, or a preference objective on preference data
    # (dpo with preference.loss sigmoid|ipo|hinge|robust, orpo, simpo, kto); independent of ``method``.
    objective: Literal["sft", "dpo", "orpo", "simpo", "kto"] = "sft"
    preference: PreferenceOptions = Field(default_factory=PreferenceOptions)
    lora: LoraOptions = Field(default_factory=LoraOptions)
    prompt: PromptOptions = Field(default_factory=PromptOptions)
    ia3_target_modules: Union[str, list[str], None] = None
    ia3_feedforward_modules: Union[str, list[str], None] = None
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    add_special_tokens: list[str] = Field(default_factory=list)

    global_batch_size: int = Field(16, gt=0)
    micro_batch_size: int = Field(4, gt=0)
    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_loss_tokens: int | None = Field(None, gt=0)
    lr: float = Field(2e-4, gt=0)
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    warmup_steps: int | None = Field(None, ge=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float | None = 1.0

    max_length: int = Field(2048, gt=1)
    truncation: Literal["turn", "drop"] = "turn"  # over-long: keep whole turns that fit, or drop
    # Concatenate each micro-batch into one row with per-example attention (exact; docs/training.md,
    # "Speed"). auto = on for every method that can pack (not prompt-learning methods).
    packing: Union[bool, Literal["auto"]] = "auto"
    # Length grouping (docs/training.md, "Speed"): sort each window of this many global batches by
    # length, cut it into global batches and shuffle their order; 0 = off (batches are uniform samples).
    group_by_length: int = Field(0, ge=0)
    tokenize_cache: bool = True  # reuse tokenized datasets from <cache>/tokenized (content-addressed)
    tokenize_num_proc: int = Field(1, ge=1)  # datasets.map worker processes for tokenization
    train_on: Literal["all", "last"] = "all"
    train_on_inputs: bool = False  # loss on the whole sequence (prompt too), as alpaca-lora / study 1's authors
    seed: int = 42

    save_every: int = Field(0, ge=0)  # optimizer steps; 0 = only at the end of each epoch
    keep_last: int = Field(2, ge=1)
    eval_every: int = Field(0, ge=0)  # optimizer steps; 0 = at the end of each epoch
    eval_batch_size: int = Field(8, gt=0)
    select_best: bool = False
    log_every: int = Field(1, gt=0)

    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    # auto = bf16 where the device computes it natively (CUDA with bf16, CPUs with AMX/AVX512-BF16),
    # else no; resolved when the config is read, so budget.json and the fingerprint hold the choice.
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = "no"
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None  # "sdpa", "eager", "flash_attention_2", ...
    use_liger: bool = False
    report_to: list[Literal["jsonl", "tensorboard", "wandb", "mlflow"]] = Field(default_factory=lambda: ["jsonl"])
    run_name: str | None = None
    resume: Union[Literal["auto", "never"], str] = "auto"
    push_to_hub: str | None = None  # a Hub repo id ("you/name"): upload the final adapter/model folder

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("packing", mode="before")
    @classmethod
    def _packing(cls, v: Any) -> Any:
        if v == "auto":
            return v
        try:  # what pydantic reads as a boolean elsewhere (true/false, yes/no, on/off, 1/0)
            return TypeAdapter(bool).validate_python(v)
        except ValidationError:
            raise ValueError(f"must be true, false or auto, got {v!r}") from None

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in method_names():
            raise ValueError(f"unknown method {v!r}.{suggest(v, method_names())} Known: {', '.join(method_names())}")
        return v

    @field_validator("data")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if not v:
            raise ValueError("at least one dataset is needed")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.micro_batch_size > self.global_batch_size:
            raise ValueError(f"micro_batch_size ({self.micro_batch_size}) exceeds global_batch_size "
                             f"({self.global_batch_size})")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(f"global_batch_size ({self.global_batch_size}) must be a multiple of "
                             f"micro_batch_size ({self.micro_batch_size})")
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("choose one of load_in_4bit and load_in_8bit")
        if self.method == "full" and (self.load_in_4bit or self.load_in_8bit):
            raise ValueError("quantized weights cannot be fully fine-tuned; use method lora or qlora")
        if self.validation_data and self.validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        if self.select_best and not (self.validation_data or self.validation_split):
            raise ValueError("select_best needs validation_data or validation_split")
        if self.packing == "auto":
            self.packing = get_method(self.method).packable
        elif self.packing and not get_method(self.method).packable:
            raise ValueError(f"packing is not supported with {self.method} (virtual tokens are per sequence)")
        if self.objective != "sft":
            if self.train_on_inputs:
                raise ValueError(f"train_on_inputs does not apply to objective {self.objective} (the loss is on the "
                                 "answers)")
            p = self.preference
            if self.objective == "kto" and p.kto_kl == "batch":
                if self.micro_batch_size < 2:
                    raise ValueError("objective kto estimates its KL term from mismatched pairs in a micro-batch: "
                                     "micro_batch_size must be at least 2 (or set preference.kto_kl: none)")
                if p.reference == "precompute":
                    raise ValueError("preference.reference: precompute cannot serve kto's batch KL term (its pairs "
                                     "depend on the batch); use reference auto or kto_kl none")
        if self.mixed_precision == "auto":
            from polyinstruct.models.hardware import auto_dtype

            self.mixed_precision = "bf16" if auto_dtype() == "bfloat16" else "no"
        return self

    @property
    def is_peft(self) -> bool:
        return self.method != "full"

    def named_data(self, which: str = "data") -> list[tuple[str, str]]:
        """(source name, path or catalogue name) pairs for ``data`` or ``validation_data``."""
        v = getattr(self, which)
        if not v:
            return []
        if isinstance(v, dict):
            return list(v.items())
        return [(Path(str(x)).stem if os.sep in str(x) or "." in str(x) else str(x), str(x)) for x in v]

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve the input paths of a training config read from a YAML file against its folder
    (``data``, ``validation_data``, ``model``, ``template``, ``resume``). ``output_dir`` stays
    relative to the working directory, like every output path of the command line."""
    out = dict(data)
    for key in ("data", "validation_data"):
        v = out.get(key)
        if isinstance(v, list):
            out[key] = [resolve_input_path(x, base) for x in v]
        elif isinstance(v, dict):
            out[key] = {k: resolve_input_path(x, base) for k, x in v.items()}
        elif isinstance(v, str):
            out[key] = resolve_input_path(v, base)
    if "model" in out:
        out["model"] = resolve_input_path(out["model"], base, by_suffix=False)
    if "template" in out:
        out["template"] = resolve_input_path(out["template"], base)
    if out.get("resume") not in (None, "auto", "never"):
        out["resume"] = resolve_input_path(out["resume"], base, by_suffix=False)
    return out


def fields_help() -> str:
    """Every config field with its default, for ``train --help`` (details: docs/training.md)."""
    import typing

    from pydantic_core import PydanticUndefined

    def rows(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, info in model.model_fields.items():
            sub = info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) \
                else None
            if sub is not None:
                out += rows(sub, f"{prefix}{name}.")
                continue
            if info.default is PydanticUndefined and info.default_factory is None:
                default = "(required)"
            else:
                default = info.default_factory() if info.default_factory is not None else info.default
                default = "none" if default is None else str(default).lower() if isinstance(default, bool) \
                    else default
            choices = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is Literal else ()
            out.append(f"  {prefix}{name} = {default}" + (f"  ({' | '.join(map(str, choices))})" if choices else ""))
        return out

    return "config fields (YAML or key=value; docs/training.md):\n" + "\n".join(rows(TrainConfig))


def load_train_config(config: "str | os.PathLike | dict | TrainConfig",
                      overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Load, apply preset defaults and overrides, validate. Errors name the file and field."""
    if isinstance(config, TrainConfig):
        if not overrides:
            return config
        data, file = config.dump(), "<config>"
        data.pop("preset", None)
    elif isinstance(config, dict):
        data, file = dict(config), "<config>"
    else:
        data, file = resolve_config_paths(load_yaml(config), Path(config).parent), str(config)
    data = apply_overrides(data, list(overrides))
    preset = data.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}.{suggest(str(preset), list(PRESETS))} "
                              f"Known: {', '.join(PRESETS)}", file=file, field="preset")
        data = _deep_merge(PRESETS[preset], data)
    return validate_config(TrainConfig, data, file=file)
