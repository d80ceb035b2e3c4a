"""CLI: ``polyinstruct models {list,prepare}``."""

from __future__ import annotations

import argparse
import logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="real models from registry packages")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    lp = msub.add_parser("list", help="packaged models and whether they are prepared")
    lp.set_defaults(func=_list)
    pp = msub.add_parser("prepare", help="convert a packaged GGUF into a cached transformers checkpoint")
    pp.add_argument("name")
    pp.add_argument("--cache-dir", default=None)
    pp.add_argument("--force", action="store_true")
    pp.set_defaults(func=_prepare)


def _list(args) -> int:
    from polyinstruct.models.packaged import list_models

    for r in list_models():
        state = "prepared" if r["prepared"] else ("installed" if r["installed"] else "not installed")
        print(f"{r['name']:24} {state:14} {r['package']:26} {r['description']}")
    return 0


def _prepare(args) -> int:
    from polyinstruct.models.packaged import prepare

    logging.getLogger("transformers").setLevel(logging.ERROR)
    path = prepare(args.name, args.cache_dir, force=args.force)
    print(path)
    return 0
