"""On-disk judgment cache: one JSONL line per finished judgment, keyed by content hash.

The key covers everything that changes a verdict (judge model, template name,
version and language variant, the rendered judge conversation), so a rerun
costs nothing, an interrupted run resumes where it stopped, and editing a
template (bumping its version) invalidates exactly its entries. Lines are
appended with one write + fsync; a torn last line from a kill is ignored, and a
corrupt line elsewhere is skipped with a warning naming ``path:line`` (its item is
asked again).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from polyinstruct.fileio import append_jsonl, iter_jsonl


def judgment_key(judge_model: str, template: str, version: int, variant: str,
                 messages: list[dict[str, str]]) -> str:
    """sha256 over the judge identity and the exact conversation sent to it."""
    payload = json.dumps([judge_model, template, version, variant, messages], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    from polyinstruct.config import cache_dir

    return cache_dir("judge")


class JudgmentCache:
    """Thread-safe append-only cache; later lines win over earlier ones for the same key."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, Any]] = {}
        if self.path and self.path.is_file():
            for row in iter_jsonl(self.path, skip_bad=True):
                if "key" in row:
                    self._items[row["key"]] = row

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        row = dict(record, key=key)
        with self._lock:
            self._items[key] = row
            if self.path is not None:
                append_jsonl(self.path, [row])

    def __len__(self) -> int:
        return len(self._items)
