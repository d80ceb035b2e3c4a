"""Readers from every common instruction format into the canonical record.

``read_records`` streams a file, folder or glob, converts each row with the
named (or detected) format, validates it and yields ``Conversation`` objects.
Formats live in the ``FORMATS`` registry: add one with
``FORMATS.register("name", Format(...))``.

Decisions where sources disagree (documented in docs/data.md): Alpaca ``input``
and Dolly ``context`` are appended to the instruction after a blank line
(open-instruct's convention); ShareGPT ``human``/``gpt``/``system`` map to
user/assistant/system; Dolly ``category`` and FLAN task names become tags.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from polyinstruct.data import oasst
from polyinstruct.data.records import Conversation
from polyinstruct.data.sources import iter_raw
from polyinstruct.data.validate import ErrorSink, RecordError, check_record
from polyinstruct.data.writers import write_records  # noqa: F401  (public API: formats.write_records)
from polyinstruct.registry import Registry

log = logging.getLogger(__name__)

Converter = Callable[[dict[str, Any]], "dict[str, Any] | list[dict[str, Any]]"]


@dataclass(frozen=True)
class Format:
    """A source format: how to spot it from a row's fields and how to convert a row."""

    name: str
    detect: Callable[[dict[str, Any]], bool]
    convert: Converter
    description: str = ""


FORMATS: Registry[Format] = Registry("data format")


def _req(row: dict[str, Any], field: str, kind: type | tuple = str) -> Any:
    v = row.get(field)
    if v is None:
        raise RecordError("missing-field", f"missing field {field!r}", field=field)
    if not isinstance(v, kind):
        raise RecordError("bad-type", f"{field} must be {getattr(kind, '__name__', kind)}, got {type(v).__name__}",
                          field=field)
    return v


def _opt_str(row: dict[str, Any], field: str) -> str:
    v = row.get(field)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise RecordError("bad-type", f"{field} must be a string, got {type(v).__name__}", field=field)
    return v


def _join(instruction: str, extra: str) -> str:
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction


def _content_text(content: Any, field: str) -> Any:
    """OpenAI content may be a list of parts; keep the text parts."""
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise RecordError("bad-type", "only text content parts are supported", field=f"{field}[{j}]")
        return "".join(texts)
    return content


_MESSAGE_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _messages(row: dict[str, Any], field: str = "messages") -> list[dict[str, Any]]:
    msgs = _req(row, field, list)
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise RecordError("bad-type", "message must be an object", field=f"{field}[{i}]")
        role = m.get("role")
        if role is None:
            raise RecordError("missing-field", "message has no role", field=f"{field}[{i}].role")
        if role not in _MESSAGE_ROLES:
            raise RecordError("unknown-role", f"unknown role {role!r} (expected system, user or assistant)",
                              field=f"{field}[{i}].role")
        content = _content_text(m.get("content"), f"{field}[{i}].content")
        if content is None:
            raise RecordError("missing-field", "message has no content", field=f"{field}[{i}].content")
        msg = {"role": _MESSAGE_ROLES[role], "content": content}
        if m.get("language"):
            msg["language"] = m["language"]
        out.append(msg)
    return out


def convert_messages(row: dict[str, Any]) -> dict[str, Any]:
    """OpenAI ``messages`` (also the canonical on-disk record, metadata included)."""
    return {"messages": _messages(row)}


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant",
                  "bing": "assistant", "assistant": "assistant", "model": "assistant", "system": "system"}


def convert_sharegpt(row: dict[str, Any]) -> dict[str, Any]:
    turns = _req(row, "conversations", list)
    msgs = []
    if isinstance(row.get("system"), str) and row["system"].strip():  # LLaMA-Factory's system column
        msgs.append({"role": "system", "content": row["system"]})
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise RecordError("bad-type", "turn must be an object", field=f"conversations[{i}]")
        who = t.get("from")
        if who is None:
            raise RecordError("missing-field", "turn has no 'from'", field=f"conversations[{i}].from")
        if who not in SHAREGPT_ROLES:
            raise RecordError("unknown-role", f"unknown role {who!r} (expected human, gpt or system)",
                              field=f"conversations[{i}].from")
        value = t.get("value")
        if not isinstance(value, str):
            raise RecordError("missing-field", "turn has no string 'value'", field=f"conversations[{i}].value")
        msgs.append({"role": SHAREGPT_ROLES[who], "content": value})
    return {"messages": msgs}


def _history(row: dict[str, Any]) -> list[dict[str, Any]]:
    hist = row.get("history") or []
    msgs = []
    for i, pair in enumerate(hist):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise RecordError("bad-type", "history items must be [user, assistant] string pairs", field=f"history[{i}]")
        msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return msgs


def convert_alpaca(row: dict[str, Any]) -> dict[str, Any]:
    user = _join(_req(row, "instruction"), _opt_str(row, "input"))
    msgs = [{"role": "system", "content": row["system"]}] if isinstance(row.get("system"), str) and row["system"] else []
    msgs += _history(row)
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": _req(row, "output")}]
    return {"messages": msgs}


def convert_dolly(row: dict[str, Any]) -> dict[str, Any]:
    user = _join(_req(row, "instruction"), _opt_str(row, "context"))
    rec: dict[str, Any] = {"messages": [{"role": "user", "content": user},
                                        {"role": "assistant", "content": _req(row, "response")}]}
    if row.get("category"):
        rec["tags"] = [str(row["category"])]
    return rec


def convert_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    """TRL's prompt/completion pairs, plain strings or conversational lists."""
    prompt, completion = row.get("prompt"), row.get("completion")
    if prompt is None:
        raise RecordError("missing-field", "missing field 'prompt'", field="prompt")
    if completion is None:
        raise RecordError("missing-field", "missing field 'completion'", field="completion")
    if isinstance(prompt, list) or isinstance(completion, list):
        p = _messages({"prompt": prompt}, "prompt") if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        c = (_messages({"completion": completion}, "completion") if isinstance(completion, list)
             else [{"role": "assistant", "content": completion}])
        return {"messages": p + c}
    return {"messages": [{"role": "user", "content": _req(row, "prompt")},
                         {"role": "assistant", "content": _req(row, "completion")}]}


def convert_flan(row: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {"messages": [{"role": "user", "content": _req(row, "inputs")},
                                        {"role": "assistant", "content": _req(row, "targets")}]}
    task = row.get("task_name") or row.get("_task_name") or row.get("task")
    if task:
        rec["tags"] = [str(task)]
    return rec


def _oasst_placeholder(row: dict[str, Any]) -> list[dict[str, Any]]:  # handled statefully in read_records
    raise RecordError("internal", "OASST rows are converted by read_records")


FORMATS.register("messages", Format("messages", lambda r: isinstance(r.get("messages"), list), convert_messages,
                                    "OpenAI messages [{role, content}]; also the canonical polyinstruct JSONL"))
FORMATS.register("sharegpt", Format("sharegpt", lambda r: isinstance(r.get("conversations"), list), convert_sharegpt,
                                    "ShareGPT conversations [{from: human|gpt|system, value}]"))
FORMATS.register("oasst1", Format("oasst1", lambda r: oasst.is_flat_row(r) or isinstance(r.get("prompt"), dict)
                                  and "replies" in r["prompt"], _oasst_placeholder,
                                  "OpenAssistant OASST1 message table or *.trees.jsonl; top-ranked path or all paths"))
FORMATS.register("dolly", Format("dolly", lambda r: "instruction" in r and "response" in r, convert_dolly,
                                 "Dolly instruction/context/response/category"))
FORMATS.register("alpaca", Format("alpaca", lambda r: "instruction" in r and "output" in r, convert_alpaca,
                                  "Alpaca instruction/input/output (optional system, history)"))
FORMATS.register("flan", Format("flan", lambda r: "inputs" in r and "targets" in r, convert_flan,
                                "FLAN-style inputs/targets"))
FORMATS.register("prompt_completion", Format("prompt_completion", lambda r: "prompt" in r and "completion" in r,
                                             convert_prompt_completion, "prompt/completion pairs (TRL)"))
# Detection order: most specific first.
DETECT_ORDER = ("messages", "sharegpt", "oasst1", "dolly", "alpaca", "flan", "prompt_completion")
ALIASES = {"openai": "messages", "canonical": "messages", "oasst": "oasst1", "prompt-completion": "prompt_completion"}


def get_format(name: str) -> Format:
    return FORMATS.get(ALIASES.get(name, name))


def detect_format(row: dict[str, Any]) -> str:
    """Name of the first format whose fields ``row`` has; ``RecordError`` when none fits."""
    for name in DETECT_ORDER:
        if FORMATS.get(name).detect(row):
            return name
    for name in FORMATS.names():
        if name not in DETECT_ORDER and FORMATS.get(name).detect(row):
            return name
    raise RecordError("unknown-format", f"cannot detect the format from fields {sorted(row)[:12]}; pass format= "
                      f"(one of {', '.join(FORMATS.names())})")


_META = ("language", "source", "license")


def _finish(rec: dict[str, Any], row: dict[str, Any], default_id: str, source: str | None,
            language: str | None) -> dict[str, Any]:
    """Fill id and metadata from the row, then from the caller's defaults."""
    if "id" not in rec:
        rid = row.get("id")
        rec["id"] = str(rid) if rid not in (None, "") else default_id
    for k in _META:
        if rec.get(k) is None and row.get(k) not in (None, ""):
            rec[k] = row[k]
    if rec.get("language") is None:
        lang = row.get("lang") or language
        if lang:
            rec["language"] = lang
    if rec.get("source") is None and source:
        rec["source"] = source
    if "tags" not in rec and isinstance(row.get("tags"), list):
        rec["tags"] = [str(t) for t in row["tags"]]
    if "meta" in row and isinstance(row["meta"], (dict, str)) and "meta" not in rec:
        meta = row["meta"]
        if isinstance(meta, str):
            try:
                meta = json.loads(meta) if meta else {}
            except ValueError:
                meta = {"raw": meta}
        if meta:
            rec["meta"] = meta
    return rec


class RecordStream:
    """Iterator of validated ``Conversation`` records that also reports what it rejected.

    ``stream.rejected`` is a ``Counter`` of reason -> count (filled as you
    iterate); ``stream.read`` is the number of records yielded.
    """

    def __init__(self, path: str | os.PathLike, format: str | None, on_error: str, rejects_path, source, language,
                 oasst_paths: str = "top", as_dicts: bool = False, raw_rows: Iterator[Any] | None = None,
                 require_answer: bool = True):
        self.path = Path(path)
        self.raw_rows = raw_rows
        self.format = format
        self.sink = ErrorSink(on_error, rejects_path)
        self.source = source
        self.language = language
        self.oasst_paths = oasst_paths
        self.as_dicts = as_dicts
        self.require_answer = require_answer
        self.read = 0
        self._it = self._generate()

    @property
    def rejected(self):
        return self.sink.counts

    def __iter__(self) -> "RecordStream":
        return self

    def __next__(self) -> Conversation:
        return next(self._it)

    def close(self) -> None:
        self._it.close()
        self.sink.close()

    def _generate(self) -> Iterator[Any]:
        fmt: Format | None = get_format(self.format) if self.format else None
        sink, source, language = self.sink, self.source, self.language
        finish, require_answer = _finish, self.require_answer

        def check(rec: dict[str, Any]) -> None:
            check_record(rec, require_answer)
        make = (lambda d: d) if self.as_dicts else Conversation.from_dict
        grouper: oasst.FlatTreeGrouper | None = None
        current_path = None
        try:
            for rr in (self.raw_rows if self.raw_rows is not None else iter_raw(self.path)):
                row = rr.row
                if rr.path != current_path:
                    current_path, stem = rr.path, Path(rr.path).stem
                if isinstance(row, RecordError):
                    sink.reject(row, rr.raw)
                    continue
                # A flat OASST row completes the *previous* tree: its records belong to that
                # tree's first line, not to this row.
                line, src_row = rr.line, row
                try:
                    if fmt is None:
                        fmt = FORMATS.get(detect_format(row))
                        log.debug("%s: detected format %s", self.path, fmt.name)
                    if fmt.name == "oasst1":
                        if oasst.is_flat_row(row):
                            grouper = grouper or oasst.FlatTreeGrouper(self.oasst_paths)
                            done = grouper.add(row, rr.line)
                            line, recs, src_row = (done[0], done[1], {}) if done else (rr.line, [], row)
                        else:
                            recs = oasst.nested_tree_records(row, self.oasst_paths)
                    else:
                        recs = fmt.convert(row)
                    if isinstance(recs, dict):
                        recs = [recs]
                    for rec in recs:
                        rec = finish(rec, src_row, f"{stem}-{line}", source or stem, language)
                        check(rec)
                        self.read += 1
                        yield make(rec)
                except RecordError as e:
                    sink.reject(e.located(rr.path, line), rr.raw if rr.raw is not None else row)
            if grouper is not None:
                line = grouper.first_line
                try:
                    done = grouper.flush()
                    for rec in (done[1] if done else []):
                        rec = finish(rec, {}, "", source or self.path.stem, language)
                        check(rec)
                        self.read += 1
                        yield make(rec)
                except RecordError as e:
                    sink.reject(e.located(current_path or str(self.path), line), None)
        finally:
            sink.close()
        if sink.counts:
            log.debug("%s: %s", self.path, sink.summary())


def read_records(path: str | os.PathLike, format: str | None = None, *, on_error: str = "raise",
                 rejects_path: str | os.PathLike | None = None, source: str | None = None,
                 language: str | None = None, oasst_paths: str = "top", require_answer: bool = True) -> RecordStream:
    """Stream validated ``Conversation`` records from a file, folder, glob or save_to_disk folder.

    ``format=None`` detects the format from the first row's fields. Bad rows
    raise ``RecordError`` (``path:line: field: reason``) or, with
    ``on_error="skip"``, go to ``rejects_path`` and are counted in
    ``stream.rejected``. ``source``/``language`` fill records that lack them.
    ``require_answer=False`` accepts prompt-only records (no final assistant turn).
    """
    if format is not None:
        get_format(format)  # fail early with a did-you-mean
    return RecordStream(path, format, on_error, rejects_path, source, language, oasst_paths,
                        require_answer=require_answer)
