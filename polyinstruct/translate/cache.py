"""The translation cache: one JSONL line per translated piece, keyed by a content hash.

``key = sha256(engine key, source language, target language, text)``; the engine key
names the engine, model, prompt version and decoding settings (``translate.engines``),
so any change there misses the cache instead of reusing a stale translation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from polyinstruct.fileio import append_jsonl, iter_jsonl, write_jsonl

log = logging.getLogger(__name__)


class TranslationCache:
    """Append-only JSONL of ``{key, engine, src, tgt, text, translation}``; thread-safe.

    ``key`` is sha256 over (engine key, source language, target language, text).
    A torn last line (a kill mid-write) is ignored on load.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mem: dict[str, str] = {}
        self._buf: list[dict[str, Any]] = []
        if self.path.exists():
            repair_jsonl(self.path)
            for d in iter_jsonl(self.path):
                self._mem[d["key"]] = d["translation"]

    @staticmethod
    def key(engine_key: str, src: str, tgt: str, text: str) -> str:
        return hashlib.sha256(json.dumps([engine_key, src, tgt, text], ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        return self._mem.get(key)

    def __len__(self) -> int:
        return len(self._mem)

    def put(self, key: str, row: dict[str, Any], *, flush: bool = False) -> None:
        with self._lock:
            self._mem[key] = row["translation"]
            self._buf.append({"key": key, **row})
            if flush:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._buf:
            append_jsonl(self.path, self._buf)
            self._buf = []


def repair_jsonl(path: Path) -> list[dict[str, Any]]:
    """Keep the complete, valid JSON lines of an append-only file (a kill can tear the last one)."""
    rows, bad = [], False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                bad = True
                break
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad = True
                break
    if bad:
        log.warning("%s: dropping a torn line left by an interrupted run", path)
        write_jsonl(path, rows)
    return rows
