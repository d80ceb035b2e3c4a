"""Structural checks on canonical records, and the raise/skip error policy.

Nothing is dropped silently: a bad record raises a ``RecordError`` naming
``file:line``, the field and the reason, or (with ``on_error="skip"``) goes to
a rejects file and is counted under a short reason key such as
``empty-assistant-turn``.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from polyinstruct.data.records import ROLES
from polyinstruct.errors import DataError

ON_ERROR = ("raise", "skip")
_LANG_RE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


class RecordError(DataError):
    """A ``DataError`` with a short ``kind`` used to count rejects per reason."""

    def __init__(self, kind: str, reason: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None, record_id: str | None = None):
        self.kind = kind
        super().__init__(reason, path=path, line=line, field=field, record_id=record_id)

    def located(self, path: str | None, line: int | None) -> "RecordError":
        """The same error with a file location filled in."""
        return RecordError(self.kind, self.reason, path=self.path or path,
                           line=self.line if self.line is not None else line,
                           field=self.field, record_id=self.record_id)


def check_record(d: dict[str, Any], require_answer: bool = True) -> None:
    """Raise ``RecordError`` (without location) when a canonical dict breaks the schema.

    Rules: ``id`` is a non-empty string; ``messages`` is a non-empty list of
    ``{role, content}`` with role system|user|assistant and string content;
    system only first; the first other turn is a user turn; no empty turn; the
    last turn is an assistant turn (unless ``require_answer=False``, for
    prompt-only sets such as inference inputs); language codes look like ISO 639-1.
    """
    if not d.get("id"):
        raise RecordError("missing-field", "missing record id", field="id")
    msgs = d.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise RecordError("missing-field", "no messages", field="messages", record_id=d["id"])
    seen_other = False
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise RecordError("bad-type", "message must be an object", field=f"messages[{i}]", record_id=d["id"])
        role = m.get("role")
        if role not in ROLES:
            if role is None:
                raise RecordError("missing-field", "message has no role", field=f"messages[{i}].role", record_id=d["id"])
            raise RecordError("unknown-role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})",
                              field=f"messages[{i}].role", record_id=d["id"])
        content = m.get("content")
        if not isinstance(content, str):
            kind = "missing-field" if content is None else "bad-type"
            raise RecordError(kind, "content must be a string" if content is not None else "message has no content",
                              field=f"messages[{i}].content", record_id=d["id"])
        if role == "system":
            if seen_other:
                raise RecordError("misplaced-system", "a system message may only come first",
                                  field=f"messages[{i}].role", record_id=d["id"])
        else:
            if not seen_other and role != "user":
                raise RecordError("no-user-turn", "the first non-system turn must be a user turn",
                                  field=f"messages[{i}].role", record_id=d["id"])
            seen_other = True
            if not content.strip():
                raise RecordError(f"empty-{role}-turn", f"empty {role} turn", field=f"messages[{i}].content",
                                  record_id=d["id"])
        lang = m.get("language")
        if lang is not None and not (isinstance(lang, str) and _LANG_RE.match(lang)):
            raise RecordError("bad-language", f"language {lang!r} is not an ISO 639-1 code",
                              field=f"messages[{i}].language", record_id=d["id"])
    if require_answer and msgs[-1].get("role") != "assistant":
        raise RecordError("no-final-assistant", "conversation does not end with an assistant turn",
                          field=f"messages[{len(msgs) - 1}].role", record_id=d["id"])
    lang = d.get("language")
    if lang is not None and not (isinstance(lang, str) and _LANG_RE.match(lang)):
        raise RecordError("bad-language", f"language {lang!r} is not an ISO 639-1 code", field="language",
                          record_id=d["id"])


class ErrorSink:
    """Applies the ``on_error`` policy: raise, or write rejects and count them per reason.

    The rejects file is JSONL, one object per rejected record: ``where``
    (``path:line``), ``kind``, ``field``, ``reason`` and ``raw`` (the original
    line text when there is one, else the parsed row).
    """

    def __init__(self, on_error: str = "raise", rejects_path: str | os.PathLike | None = None):
        if on_error not in ON_ERROR:
            raise DataError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}", field="on_error")
        self.on_error = on_error
        self.rejects_path = Path(rejects_path) if rejects_path else None
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}  # first message per reason, for the summary
        self.messages: list[str] = []  # the first ``keep_messages`` error messages, in order
        self.keep_messages = 50
        self._fh = None

    def reject(self, err: RecordError, raw: Any = None) -> None:
        if self.on_error == "raise":
            raise err
        self.counts[err.kind] += 1
        self.examples.setdefault(err.kind, str(err))
        if len(self.messages) < self.keep_messages:
            self.messages.append(str(err))
        if self.rejects_path is not None:
            if self._fh is None:
                self.rejects_path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.rejects_path, "w", encoding="utf-8")
            where = f"{err.path}:{err.line}" if err.line is not None else (err.path or "")
            row = {"where": where, "kind": err.kind, "field": err.field, "reason": err.reason, "raw": raw}
            self._fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def summary(self) -> str:
        """One line per reason: ``count  kind  (first example)``."""
        if not self.counts:
            return "no records rejected"
        lines = [f"{self.total} record(s) rejected:"]
        for kind, n in self.counts.most_common():
            lines.append(f"  {n:>7}  {kind:<22} e.g. {self.examples[kind]}")
        return "\n".join(lines)
