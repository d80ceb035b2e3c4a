"""Structural checks on canonical records, and the raise/skip error policy.

Nothing is dropped silently: a bad record raises a ``RecordError`` naming
``file:line``, the field and the reason, or (with ``on_error="skip"``) goes to
a rejects file and is counted under a short reason key such as
``empty-assistant-turn``.
"""

from __future__ import annotations

import json
import math
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


def _surrogate_at(text: str) -> int:
    """Index of the first lone surrogate in ``text`` (not encodable as UTF-8), or -1."""
    try:
        text.encode("utf-8")
        return -1
    except UnicodeEncodeError as e:
        return e.start


def _check_text(value: str, field: str, rid: Any) -> None:
    if value.isascii():  # O(1) in CPython: an ASCII string holds no surrogate
        return
    pos = _surrogate_at(value)
    if pos >= 0:
        raise RecordError("lone-surrogate", f"lone surrogate U+{ord(value[pos]):04X} at character {pos}: not valid "
                          "Unicode text (the file was probably cut inside a UTF-16 pair); fix or drop the record",
                          field=field, record_id=rid)


_MAX_META_DEPTH = 64


def _check_json_value(value: Any, field: str, rid: Any) -> None:
    """``meta`` must survive a JSON round trip unchanged: finite numbers, valid text, string keys, bounded depth."""
    stack = [(value, field, 0)]
    while stack:
        v, where, depth = stack.pop()
        if depth > _MAX_META_DEPTH:
            raise RecordError("too-deep", f"nested deeper than {_MAX_META_DEPTH} levels", field=where, record_id=rid)
        if isinstance(v, str):
            _check_text(v, where, rid)
        elif isinstance(v, bool) or v is None or isinstance(v, int):
            continue
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise RecordError("bad-number", f"{v!r} is not a JSON number (write null or a string)",
                                  field=where, record_id=rid)
        elif isinstance(v, dict):
            for k, x in v.items():
                if not isinstance(k, str):
                    raise RecordError("bad-type", f"keys must be strings, got {type(k).__name__}", field=where,
                                      record_id=rid)
                _check_text(k, where, rid)
                stack.append((x, f"{where}.{k}", depth + 1))
        elif isinstance(v, (list, tuple)):
            stack.extend((x, f"{where}[{j}]", depth + 1) for j, x in enumerate(v))
        else:
            raise RecordError("bad-type", f"{type(v).__name__} is not a JSON value", field=where, record_id=rid)


def check_record(d: dict[str, Any], require_answer: bool = True) -> None:
    """Raise ``RecordError`` (without location) when a canonical dict breaks the schema.

    Rules: ``id`` is a non-empty string; ``messages`` is a non-empty list of
    ``{role, content}`` with role system|user|assistant and string content;
    system only first; the first other turn is a user turn; user and assistant
    turns alternate (two user or two assistant turns in a row are an error:
    merge them explicitly with ``merge_consecutive``); no empty turn; the last
    turn is an assistant turn (unless ``require_answer=False``, for prompt-only
    sets such as inference inputs); ``input`` only on user turns; language codes
    look like ISO 639 codes; ``source``/``license`` are strings, ``tags`` a list
    of strings, ``meta`` an object of JSON values (finite numbers); no text holds
    a lone surrogate.
    """
    rid = d.get("id")
    if not isinstance(rid, str) or not rid:
        raise RecordError("missing-field" if not rid else "bad-type",
                          "missing record id" if not rid else f"id must be a string, got {type(rid).__name__}",
                          field="id")
    if not rid.isascii():
        _check_text(rid, "id", rid)
    msgs = d.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise RecordError("missing-field", "no messages", field="messages", record_id=rid)
    seen_other = False
    prev_role = None
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise RecordError("bad-type", "message must be an object", field=f"messages[{i}]", record_id=rid)
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            if role is None:
                raise RecordError("missing-field", "message has no role", field=f"messages[{i}].role", record_id=rid)
            raise RecordError("unknown-role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})",
                              field=f"messages[{i}].role", record_id=rid)
        content = m.get("content")
        if not isinstance(content, str):
            kind = "missing-field" if content is None else "bad-type"
            raise RecordError(kind, "content must be a string" if content is not None else "message has no content",
                              field=f"messages[{i}].content", record_id=rid)
        if not content.isascii():
            _check_text(content, f"messages[{i}].content", rid)
        inp = m.get("input")
        if inp is not None:
            if not isinstance(inp, str):
                raise RecordError("bad-type", f"input must be a string, got {type(inp).__name__}",
                                  field=f"messages[{i}].input", record_id=rid)
            if role != "user":
                raise RecordError("misplaced-input", "only a user turn may carry an input",
                                  field=f"messages[{i}].input", record_id=rid)
            _check_text(inp, f"messages[{i}].input", rid)
        if role == "system":
            if seen_other:
                raise RecordError("misplaced-system", "a system message may only come first",
                                  field=f"messages[{i}].role", record_id=rid)
        else:
            if not seen_other and role != "user":
                raise RecordError("no-user-turn", "the first non-system turn must be a user turn",
                                  field=f"messages[{i}].role", record_id=rid)
            if role == prev_role:
                raise RecordError("consecutive-turns", f"two {role} turns in a row (messages[{i - 1}] and "
                                  f"messages[{i}]); fix the data or merge them explicitly (--merge-consecutive)",
                                  field=f"messages[{i}].role", record_id=rid)
            seen_other = True
            if not content.strip():
                raise RecordError(f"empty-{role}-turn", f"empty {role} turn", field=f"messages[{i}].content",
                                  record_id=rid)
        prev_role = role
        lang = m.get("language")
        if lang is not None and not (isinstance(lang, str) and _LANG_RE.match(lang)):
            raise RecordError("bad-language", f"language {lang!r} is not an ISO 639 code",
                              field=f"messages[{i}].language", record_id=rid)
    if require_answer and msgs[-1].get("role") != "assistant":
        raise RecordError("no-final-assistant", "conversation does not end with an assistant turn",
                          field=f"messages[{len(msgs) - 1}].role", record_id=rid)
    lang = d.get("language")
    if lang is not None and not (isinstance(lang, str) and _LANG_RE.match(lang)):
        raise RecordError("bad-language", f"language {lang!r} is not an ISO 639 code", field="language",
                          record_id=rid)
    for key in ("source", "license"):
        v = d.get(key)
        if v is not None and not (type(v) is str and v.isascii()):
            if not isinstance(v, str):
                raise RecordError("bad-type", f"{key} must be a string, got {type(v).__name__} {v!r}", field=key,
                                  record_id=rid)
            _check_text(v, key, rid)
    tags = d.get("tags")
    if tags is not None:
        if not isinstance(tags, list):
            raise RecordError("bad-type", f"tags must be a list of strings, got {type(tags).__name__}", field="tags",
                              record_id=rid)
        for j, t in enumerate(tags):
            if not isinstance(t, str):
                raise RecordError("bad-type", f"tags must be strings, got {type(t).__name__} {t!r}",
                                  field=f"tags[{j}]", record_id=rid)
            _check_text(t, f"tags[{j}]", rid)
    meta = d.get("meta")
    if meta is not None:
        if not isinstance(meta, dict):
            raise RecordError("bad-type", f"meta must be an object, got {type(meta).__name__}", field="meta",
                              record_id=rid)
        _check_json_value(meta, "meta", rid)


def _json_line(row: dict[str, Any]) -> str:
    """One valid JSON line for a rejects file, whatever ``raw`` holds (NaN, lone surrogates, deep nesting)."""
    try:
        line = json.dumps(row, ensure_ascii=False, default=str, allow_nan=False)
        line.encode("utf-8")
        return line
    except (ValueError, RecursionError, UnicodeEncodeError):
        pass
    try:  # surrogates escaped as \udXXXX (valid JSON); NaN stays invalid, so fall back to text
        return json.dumps(row, ensure_ascii=True, default=str, allow_nan=False)
    except (ValueError, RecursionError):
        raw = row.get("raw")
        text = raw if isinstance(raw, str) else f"<{type(raw).__name__} not representable as JSON>"
        return json.dumps({**row, "raw": text[:10_000]}, ensure_ascii=True)


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
            self._fh.write(_json_line(row) + "\n")

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
