"""Named registries with loud "did you mean" errors.

One ``Registry`` per extensible kind (formats, templates, methods, backends,
identifiers, judges, tasks). A registry is an ordinary object owned by the
module that defines the kind, so there is no global mutable state beyond
module-level constants that are filled at import time. An entry may be lazy,
``register_lazy(name, "package.module:object")``: the module is imported the first
time the entry is used, so listing the names costs nothing, and an entry whose module
fails to import fails loudly at that point (never a silently missing name).
"""

from __future__ import annotations

import difflib
import importlib
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

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:object"`` under ``name``, imported on first use."""
        module, sep, obj = target.partition(":")
        if not sep or not module or not obj:
            raise ValueError(f"{self.kind} {name!r}: a lazy entry is 'package.module:object', got {target!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = _Lazy(module, obj)  # type: ignore[assignment]

    def get(self, name: str) -> T:
        try:
            item = self._items[name]
        except KeyError:
            known = sorted(self._items)
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{suggest(name, known)} Known: {', '.join(known)}"
            ) from None
        if isinstance(item, _Lazy):
            item = self._items[name] = item.load()
        return item

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]


class _Lazy:
    __slots__ = ("module", "obj")

    def __init__(self, module: str, obj: str):
        self.module, self.obj = module, obj

    def load(self):
        mod = importlib.import_module(self.module)  # an import error propagates: loud, not skipped
        try:
            return getattr(mod, self.obj)
        except AttributeError:
            raise ImportError(f"{self.module} has no {self.obj!r} (a lazy registry entry)") from None
