"""CLI: ``polyinstruct template`` (list/show) and ``polyinstruct tokenize``."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("template", help="list chat templates, or render a conversation with one (show --save writes its YAML)")
    sub = p.add_subparsers(dest="template_command", metavar="ACTION")
    ls = sub.add_parser("list", help="built-in template names")
    ls.set_defaults(func=_list)
    show = sub.add_parser("show", help="render a prompt with a template")
    show.add_argument("name", help="built-in name, 'tokenizer', or a template .yaml")
    show.add_argument("--tokenizer", help="tokenizer path (needed for 'tokenizer'; binds {eos})")
    show.add_argument("--messages", help='JSON list of {"role","content"} (default: a sample)')
    show.add_argument("--language", help="use the template's wording for this language (e.g. zh)")
    show.add_argument("--cot", action="store_true", help="append the chain-of-thought phrase")
    show.add_argument("--save", metavar="PATH", help="also write the exact template YAML here")
    show.set_defaults(func=_show)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    t = subparsers.add_parser("tokenize", help="tokenize conversations with assistant-only labels")
    t.add_argument("data", help="conversation JSONL")
    t.add_argument("--tokenizer", required=True)
    t.add_argument("--template", default="tulu")
    t.add_argument("--language")
    t.add_argument("--output-dir", help="write data/ (Arrow), template.yaml and report.json here")
    t.add_argument("--cache-dir", help="content-hash cache of tokenized datasets")
    t.add_argument("--max-length", type=int)
    t.add_argument("--train-on", choices=["all", "last"], default="all")
    t.add_argument("--truncation", choices=["turn", "drop"], default="turn")
    t.add_argument("--num-proc", type=int, default=1)
    t.set_defaults(func=_tokenize)


def _list(args: argparse.Namespace) -> int:
    from polyinstruct.templates import builtin_names

    print("\n".join(builtin_names()))
    return 0


def _show(args: argparse.Namespace) -> int:
    from polyinstruct.templates.workflows import show_template

    msgs = json.loads(args.messages) if args.messages else None
    out = show_template(args.name, tokenizer=args.tokenizer, messages=msgs, language=args.language, cot=args.cot,
                        save_to=args.save)
    print(out["prompt"], end="" if out["prompt"].endswith("\n") else "\n")
    print(f"--- stop strings: {out['stop_strings']}" + (f"; saved {out['saved']}" if "saved" in out else ""))
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    from polyinstruct.templates.workflows import tokenize_file

    report = tokenize_file(args.data, args.tokenizer, args.template, output_dir=args.output_dir,
                           cache_dir=args.cache_dir, max_length=args.max_length, train_on=args.train_on,
                           truncation=args.truncation, num_proc=args.num_proc, language=args.language, progress=True)
    print(json.dumps(report.to_dict()))
    return 0
