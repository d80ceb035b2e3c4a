"""Data: the canonical conversation record, readers/writers, validation, catalogue,
mixtures, budget and cross-lingual recipes, chunking, cleaning and statistics.

Start with ``load_dataset(name_or_path)``: a catalogue name (``polyinstruct data
list``) or a file/folder/glob in any supported format, streamed as
``Conversation`` records.
"""

from __future__ import annotations

import glob as _glob
import os
from pathlib import Path
from typing import Any, Iterator

from polyinstruct.data.records import Conversation, Message

__all__ = ["Conversation", "Message", "load_dataset", "is_path_like"]


def is_path_like(name: str | os.PathLike) -> bool:
    """True when ``name`` names an existing file/folder or a glob that matches something."""
    s = str(name)
    if Path(s).exists():
        return True
    return any(ch in s for ch in "*?[") and bool(_glob.glob(s))


def load_dataset(name_or_path: str | os.PathLike, catalogue: Any = None, *, tokenizer: Any = None,
                 **read_kwargs: Any) -> Iterator[Conversation]:
    """Stream a dataset by catalogue name or path.

    Paths win over names. ``read_kwargs`` go to ``formats.read_records``
    (``format``, ``on_error``, ``rejects_path``, ``source``, ``language``). An
    unknown name raises ``UnknownNameError`` with the nearest names.
    ``tokenizer`` (a tokenizer object or path) is what catalogue mixtures count
    ``chunk_tokens`` in (Tulu's ShareGPT chunks); training passes its own.
    """
    from polyinstruct.data.catalogue import load_catalogue
    from polyinstruct.data.formats import read_records

    read_kwargs = {k: v for k, v in read_kwargs.items() if v is not None or k not in ("format",)}
    if is_path_like(name_or_path):
        return read_records(name_or_path, **read_kwargs)
    cat = catalogue if catalogue is not None else load_catalogue()
    if isinstance(catalogue, (list, tuple)):
        cat = load_catalogue(catalogue)
    return cat.open(str(name_or_path), tokenizer=tokenizer, **read_kwargs)
