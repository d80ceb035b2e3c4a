"""The ``polyinstruct`` command.

Each area of the package contributes its subcommands from a ``commands``
module exposing ``register(subparsers)``. A subcommand parses arguments and
calls one plain Python function; nothing else lives here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from polyinstruct.errors import PolyinstructError

# One line per area; order is the order shown in --help.
COMMAND_MODULES = [
    "polyinstruct.data.commands",
    "polyinstruct.templates.commands",
    "polyinstruct.train.commands",
    "polyinstruct.infer.commands",
    "polyinstruct.judge.commands",
    "polyinstruct.eval.commands",
    "polyinstruct.models.commands",
    "polyinstruct.experiment.commands",
    "polyinstruct.report.commands",
    "polyinstruct.annotate.commands",
    "polyinstruct.analysis.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyinstruct", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # area not built yet in this checkout
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except PolyinstructError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
