"""Named registries with loud "did you mean" errors.

One ``Registry`` per extensible kind (formats, templates, methods, backends,
identifiers, judges, tasks). A registry is an ordinary object owned by the
module that defines the kind, so there is no global mutable state beyond
module-level constants that are filled at import time.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from polyinstruct.errors import UnknownNameError

T = TypeVar("T")


def suggest(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> str:
    """Return a ' Did you mean: a, b?' suffix (or '') for error messages."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [c for c in choices if lowered in c.lower() or c.lower() in lowered][:n]
    return f" Did you mean: {', '.join(close)}?" if close else ""


class Registry(Generic[T]):
    """Maps names to objects of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; usable as a decorator when obj is None."""

        def add(o: T) -> T:
            if name in self._items and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            return o

        if obj is None:
            return add
        return add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = sorted(self._items)
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{suggest(name, known)} Known: {', '.join(known)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())
