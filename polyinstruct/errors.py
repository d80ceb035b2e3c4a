"""The project's own exception types.

Users see these messages, so each one says *where* (file, line, field) and
*what to do*, never just a library traceback.
"""

from __future__ import annotations


class PolyinstructError(Exception):
    """Base class: every error polyinstruct raises on purpose."""


class ConfigError(PolyinstructError):
    """A config value is wrong. Names the file and the dotted field."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file, self.field, self.reason = file, field, message
        where = ":".join(p for p in (file, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class DataError(PolyinstructError):
    """A record is malformed. Formats as ``path:line: field: reason``."""

    def __init__(self, reason: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None, record_id: str | None = None):
        self.path, self.line, self.field, self.reason, self.record_id = path, line, field, reason, record_id
        loc = path or "<data>"
        if line is not None:
            loc = f"{loc}:{line}"
        parts = [loc]
        if field:
            parts.append(field)
        parts.append(reason)
        super().__init__(": ".join(parts))


class UnknownNameError(PolyinstructError, KeyError):
    """A registry or catalogue lookup failed; the message suggests near names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(PolyinstructError, ImportError):
    """An optional extra is not installed; the message says what to install."""


class SpanMismatchError(PolyinstructError):
    """Labelled tokens do not decode to the assistant text (see templates.verify)."""


# OS errors that mean "the output place cannot take the output": reported as one line naming
# the file and what to do, never as a traceback.
_OUTPUT_ERRNOS = {"ENOSPC": "no space left on device", "EDQUOT": "disk quota exceeded",
                  "EROFS": "read-only file system", "EACCES": "permission denied",
                  "ENOTDIR": "a part of the path is a file, not a folder", "EISDIR": "is a folder, not a file"}


def output_error(e: OSError, where: str) -> PolyinstructError | None:
    """A one-line ``PolyinstructError`` for an OSError writing under ``where``, or None when
    ``e`` is not one of the output-place errors (then the caller re-raises it)."""
    import errno as _errno

    for name, text in _OUTPUT_ERRNOS.items():
        if getattr(_errno, name, None) == e.errno:
            target = e.filename or where
            todo = "free space or choose" if name in ("ENOSPC", "EDQUOT") else "choose"
            return PolyinstructError(f"cannot write {target}: {text}; {todo} another output_dir "
                                     f"(what is complete in {where} is kept, and a rerun resumes from it)")
    return None
