"""Small file helpers shared by every stage: atomic writes and JSONL I/O.

Outputs are written to a temporary file in the same folder and renamed, so an
interrupted run never leaves a half-written file behind. Replaced files keep their
permissions; new ones get the usual ``0666 & ~umask`` (0644 under the common umask
022), never the private 0600 of a raw temp file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from polyinstruct.errors import DataError

log = logging.getLogger(__name__)
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777  # replacing a file keeps its permissions
    except OSError:
        return 0o666 & ~current_umask()


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temp file next to ``path``; rename over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _target_mode(path))
        with os.fdopen(fd, mode, **({} if binary else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks (the one file hash of polyinstruct)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows atomically; returns the number written."""
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


def iter_jsonl(path: str | os.PathLike, *, skip_bad: bool = False, complete_only: bool = True) -> Iterator[dict]:
    """Yield the JSON objects of a JSONL file (see ``iter_jsonl_numbered``)."""
    for _line, row in iter_jsonl_numbered(path, skip_bad=skip_bad, complete_only=complete_only):
        yield row


def iter_jsonl_numbered(path: str | os.PathLike, *, skip_bad: bool = False,
                        complete_only: bool = True) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each line of a JSONL file.

    A trailing partial line (a crash mid-append) is ignored; with ``complete_only=False``
    (files people write, whose last line may lack its newline) it is read like the others.
    Any other line that is not a JSON object is a ``DataError`` naming ``path:line``; with
    ``skip_bad`` (caches, where a lost line only costs a recomputation) it is logged and
    skipped instead. A UTF-8 byte-order mark before the first line is ignored.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n") and complete_only:
                break
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
                problem = None if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"
            except UnicodeDecodeError as e:
                problem = f"not valid UTF-8 ({e.reason} at byte {e.start})"
            except ValueError as e:
                problem = f"invalid JSON ({e})"
            if problem is None:
                yield lineno, row
            elif skip_bad:
                log.warning("%s:%d: skipping a corrupt line: %s", path, lineno, problem)
            else:
                raise DataError(problem, path=str(path), line=lineno)


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Append whole lines with one write + fsync, so a kill never leaves half a line."""
    buf = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not buf:
        return 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(buf)
        f.flush()
        os.fsync(f.fileno())
    return buf.count("\n")
