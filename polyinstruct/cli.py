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

# Subcommands an upper area adds to a lower area's group, so that the lower area never imports
# the upper one (layers point down, docs/architecture.md): (group, "module:function(subparsers)").
# A module's register() returns its groups as {name: subparsers}.
GROUP_EXTENSIONS = [
    ("data", "polyinstruct.translate.commands:register_translate"),
    ("analyze", "polyinstruct.experiment.commands:register_refscore"),
    ("data", "polyinstruct.evalsets.commands:register"),  # data decontaminate
    ("data", "polyinstruct.prefs.commands:register_prefs"),  # data prefs
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyinstruct", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict = {}
    for name in COMMAND_MODULES:  # an import error is a packaging mistake: it fails here, loudly
        groups.update(importlib.import_module(name).register(sub) or {})
    for group, target in GROUP_EXTENSIONS:
        module, _, func = target.partition(":")
        getattr(importlib.import_module(module), func)(groups[group])
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse like ``parser.parse_args``, also accepting ``key=value`` overrides after options.

    argparse stops filling a ``nargs="*"`` positional at the first option, so
    ``experiment c.yaml --executor slurm k=v`` would be refused; overrides are
    collected wherever they stand on the line.
    """
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.parse_args(argv)  # the usual "unrecognized arguments" error and exit 2
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parse_args(parser, argv)
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
