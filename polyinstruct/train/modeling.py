"""Load any ``AutoModelForCausalLM`` and its tokenizer ready for training.

No per-architecture code: the pad token, added template tokens, dtype,
quantization and attention kernel are handled the same way for every model.
"""

from __future__ import annotations

import logging
from typing import Any

from polyinstruct.errors import ConfigError, MissingDependencyError, PolyinstructError
from polyinstruct.models.resolve import resolve_model_path
from polyinstruct.train.config import TrainConfig

log = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def load_tokenizer(model_path: str, extra_tokens: list[str] | tuple[str, ...] = ()):
    """Tokenizer with a pad token and any extra (template) special tokens.

    A missing pad token is set to the EOS (or UNK) token rather than adding a new
    one: labels are masked by position, never by pad id, so reusing EOS is safe
    and avoids growing the vocabulary (what LLaMA-Factory and TRL do).
    Returns (tokenizer, number of tokens added).
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as e:
        raise PolyinstructError(f"cannot load a tokenizer from {model_path!r}: {e}") from None
    added = 0
    if tok.pad_token is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
        else:
            added += tok.add_special_tokens({"pad_token": "<pad>"})
    vocab = tok.get_vocab()
    new = [t for t in extra_tokens if t not in vocab]
    if new:
        added += tok.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False) \
            if _accepts_replace(tok) else tok.add_special_tokens({"additional_special_tokens": new})
        log.info("added %d special tokens to the tokenizer: %s", len(new), new)
    tok.padding_side = "right"
    return tok, added


def _accepts_replace(tok: Any) -> bool:
    import inspect

    try:
        return "replace_extra_special_tokens" in inspect.signature(tok.add_special_tokens).parameters
    except (TypeError, ValueError):
        return False


def _quantization_config(cfg: TrainConfig):
    four = cfg.load_in_4bit or cfg.method == "qlora"
    if not (four or cfg.load_in_8bit):
        return None
    import torch

    what = "4-bit (QLoRA)" if four else "8-bit"
    if not torch.cuda.is_available():
        raise ConfigError(f"{what} loading needs a CUDA GPU (bitsandbytes); none is available here. "
                          "Use method: lora without load_in_4bit/load_in_8bit on CPU.",
                          field="load_in_4bit" if four else "load_in_8bit")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"{what} loading needs bitsandbytes: pip install 'polyinstruct[gpu]'") from None
    from transformers import BitsAndBytesConfig

    if four:
        compute = torch.bfloat16 if cfg.mixed_precision == "bf16" or cfg.dtype == "bfloat16" else torch.float16
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_model(cfg: TrainConfig, tokenizer, n_added: int, *, device_map: Any = None):
    """Load the base model, resize embeddings for added tokens, enable kernels."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(cfg.model)
    kwargs: dict[str, Any] = {}
    kwargs["dtype"] = "auto" if cfg.dtype == "auto" else getattr(torch, _DTYPES[cfg.dtype])
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    elif cfg.packing:
        # per-example attention inside packed rows (no dense block-diagonal mask): train/attention.py
        from polyinstruct.train.attention import register

        kwargs["attn_implementation"] = register()
    q = _quantization_config(cfg)
    if q is not None:
        kwargs["quantization_config"] = q
        kwargs["device_map"] = device_map if device_map is not None else {"": torch.cuda.current_device()}
    if cfg.attn_implementation == "flash_attention_2":
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            raise MissingDependencyError("attn_implementation flash_attention_2 needs flash-attn "
                                         "(pip install flash-attn, CUDA only)") from None
    if cfg.use_liger:
        _apply_liger(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except ValueError as e:
        if kwargs.get("attn_implementation") != "polyinstruct_packed":
            raise PolyinstructError(f"cannot load model {cfg.model!r} (resolved to {path!r}): {e}") from None
        # A model class without transformers' attention interface: packed rows still stay exact through
        # the restarted position_ids (a block-diagonal mask), only slower.
        log.warning("%s does not take custom attention (%s); packed rows use transformers' own masks", path, e)
        kwargs.pop("attn_implementation")
        try:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as e2:
            raise PolyinstructError(f"cannot load model {cfg.model!r} (resolved to {path!r}): {e2}") from None
    except OSError as e:
        raise PolyinstructError(f"cannot load model {cfg.model!r} (resolved to {path!r}): {e}") from None
    if n_added or len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
        log.info("resized embeddings to %d tokens", len(tokenizer))
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if q is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.is_peft:
            model.enable_input_require_grads()
    model.config.use_cache = False
    return model, path


def _apply_liger(path: str) -> None:
    """Patch the model class with Liger kernels when the package is installed."""
    try:
        from liger_kernel.transformers import _apply_liger_kernel
    except ImportError:
        raise MissingDependencyError("use_liger needs liger-kernel (pip install liger-kernel, GPU)") from None
    from transformers import AutoConfig

    _apply_liger_kernel(AutoConfig.from_pretrained(path).model_type)


def cast_frozen_linears(model, dtype) -> int:
    """Store the weights of frozen ``nn.Linear`` layers in ``dtype`` (bf16 under bf16 autocast).

    Autocast casts every fp32 weight to bf16 at every forward, and caches the cast only for
    weights that require grad, so an adapter run recasts the whole frozen base at each step
    (Gemma-3-270m: a fifth of the step, its 168M-parameter tied LM head included). Autocast would
    multiply by exactly these bf16 values, so casting once gives the same matmuls; embeddings,
    norms and trainable weights stay fp32. A frozen LM head tied to the input embedding gets its
    own bf16 copy (the embedding lookup keeps fp32). Returns the number of layers cast."""
    import torch

    n = 0
    for module in model.modules():
        w = getattr(module, "weight", None)
        if (not isinstance(module, torch.nn.Linear) or not isinstance(w, torch.nn.Parameter) or w.requires_grad
                or w.dtype != torch.float32 or type(w) is not torch.nn.Parameter):
            continue
        module.weight = torch.nn.Parameter(w.detach().to(dtype), requires_grad=False)
        n += 1
    return n


def count_parameters(model) -> tuple[int, int]:
    """(total, trainable) parameter counts, excluding nothing."""
    total = trainable = 0
    for p in model.parameters():
        n = p.numel()
        if hasattr(p, "quant_state") or p.__class__.__name__ == "Params4bit":
            n *= 2  # 4-bit packs two values per byte
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable
