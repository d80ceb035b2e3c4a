"""CLI: ``polyinstruct train | validate | merge``. Each calls one plain function."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    from polyinstruct.train.config import fields_help

    fields = {"epilog": fields_help(), "formatter_class": argparse.RawDescriptionHelpFormatter}
    p = subparsers.add_parser("train", help="fine-tune a causal LM from a YAML config (full or PEFT)", **fields)
    p.add_argument("config", help="training config YAML")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. lr=1e-4 lora.r=16")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    v = subparsers.add_parser("validate", help="check a training config, its data and model without training",
                              **fields)
    v.add_argument("config")
    v.add_argument("overrides", nargs="*")
    v.set_defaults(func=_validate)

    m = subparsers.add_parser("merge", help="fold a LoRA adapter into its base model")
    m.add_argument("adapter", help="adapter folder or run directory")
    m.add_argument("out", help="output folder for the merged model")
    m.add_argument("--base-model", default=None, help="base model (default: the adapter's)")
    m.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    m.set_defaults(func=_merge)


def _train(args) -> int:
    from polyinstruct.train.run import train

    run_dir = train(args.config, args.overrides, progress=not args.no_progress)
    print(run_dir)
    return 0


def _validate(args) -> int:
    from polyinstruct.train.validate import validate

    print(json.dumps(validate(args.config, args.overrides), indent=2, ensure_ascii=False))
    return 0


def _merge(args) -> int:
    from polyinstruct.train.merge import merge_adapter

    out = merge_adapter(args.adapter, args.out, base_model=args.base_model, dtype=args.dtype)
    print(f"merged {args.adapter} into its base model ({args.dtype}): {out}\n"
          f"load it with AutoModelForCausalLM.from_pretrained({str(out)!r}); its tokenizer carries the "
          f"training chat template (tokenizer.apply_chat_template)")
    return 0
