"""``merge``: fold a LoRA-family adapter into its base model and save a standalone model.

The result loads with plain ``AutoModelForCausalLM.from_pretrained`` and gives
the same logits as base + adapter (Alpaca-CoT's ``merge`` tool).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from polyinstruct.errors import ConfigError, PolyinstructError
from polyinstruct.train.methods import mergeable_peft_types

log = logging.getLogger(__name__)


def find_adapter(path: str | os.PathLike) -> Path:
    """An adapter folder, given it or a run directory holding ``adapter/``."""
    p = Path(path)
    if (p / "adapter" / "adapter_config.json").exists():
        return p / "adapter"
    if (p / "adapter_config.json").exists():
        return p
    raise ConfigError(f"{p} is neither an adapter folder (adapter_config.json) nor a run directory with adapter/")


def merge_adapter(adapter_dir_or_run_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                  base_model: str | None = None, dtype: str = "float32") -> Path:
    """Merge the adapter into its base (``base_model`` overrides adapter_config's) and save ``out_dir``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = find_adapter(adapter_dir_or_run_dir)
    with open(adapter / "adapter_config.json", encoding="utf-8") as f:
        acfg = json.load(f)
    kind = str(acfg.get("peft_type", "")).upper()
    if kind not in mergeable_peft_types():
        raise ConfigError(f"a {kind or 'unknown'} adapter cannot be merged into weights (only "
                          f"{', '.join(sorted(mergeable_peft_types()))}); load it with peft instead",
                          file=str(adapter / "adapter_config.json"), field="peft_type")
    from polyinstruct.models.preflight import preflight

    # the shared checks (adapter and base folders, safetensors headers, memory from the config)
    pf = (preflight(base_model, str(adapter), dtype=dtype, device="cpu") if base_model
          else preflight(str(adapter), dtype=dtype, device="cpu"))
    base_path = pf.base
    try:
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as e:
        raise PolyinstructError(f"cannot load base model {base_path!r} for merging: {e}") from None
    tok_src = adapter if (adapter / "tokenizer_config.json").exists() else Path(base_path)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    out = Path(out_dir)
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    run_template = adapter.parent / "template.yaml"
    if not getattr(tokenizer, "chat_template", None) and run_template.exists():
        # an adapter saved before tokenizers carried the training template: write it now
        from polyinstruct.templates import load_template
        from polyinstruct.templates.hf_template import attach_chat_template

        tpl = load_template(run_template, tokenizer)
        if tpl.spec.kind != "jinja":
            attach_chat_template(tpl, tokenizer)
    tokenizer.save_pretrained(str(tmp))
    if adapter.name == "adapter" and run_template.exists():
        shutil.copy2(run_template, tmp / "template.yaml")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    log.info("merged %s into %s -> %s", adapter, base_path, out)
    return out
