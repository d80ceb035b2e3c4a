"""The one way polyinstruct reads YAML: safe, and with YAML 1.2 booleans.

PyYAML follows YAML 1.1, where ``no``, ``yes``, ``on``, ``off``, ``y`` and
``n`` are booleans, so the Norwegian language code ``no`` became ``False``
(``languages: [no]`` in a catalogue, ``train_languages: [no]`` in an
experiment). ``SafeLoader12`` is PyYAML's ``SafeLoader`` (no Python objects are
ever constructed) whose only booleans are ``true``/``false`` (also ``True``,
``TRUE``, ``False``, ``FALSE``), as in YAML 1.2's core schema; every other word
stays a string. Every YAML file the package reads goes through ``safe_load``
or ``load_yaml`` here (see docs/data.md, "YAML and language codes").
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO, Any

import yaml

from polyinstruct.errors import ConfigError

_BOOL_TAG = "tag:yaml.org,2002:bool"


class SafeLoader12(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans (``no``/``yes``/``on``/``off`` stay strings)."""


SafeLoader12.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SafeLoader12.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def safe_load(stream: str | bytes | IO[Any]) -> Any:
    """Drop-in replacement for ``yaml.safe_load`` with YAML 1.2 booleans."""
    return yaml.load(stream, Loader=SafeLoader12)  # noqa: S506 - SafeLoader12 is a SafeLoader


def load_yaml(path: str | os.PathLike, *, mapping: bool = True) -> Any:
    """Read a YAML file; errors are ``ConfigError``s naming ``file:line``.

    ``mapping=True`` (the default) requires a top-level mapping and returns
    ``{}`` for an empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("file not found", file=str(path))
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"invalid YAML: {getattr(e, 'problem', e)}", file=where) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start}); re-encode the file as UTF-8", file=str(path)) from None
    if not mapping:
        return data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of field: value", file=str(path))
    return data
