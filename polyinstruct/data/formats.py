"""Readers from every common instruction format into the canonical record.

``read_records`` streams a file, folder or glob, converts each row with the
named (or detected) format, validates it and yields ``Conversation`` objects.
Formats live in the ``FORMATS`` registry: add one with
``FORMATS.register("name", Format(...))``.

Decisions where sources disagree (documented in docs/data.md): Alpaca ``input``
and Dolly ``context`` stay a separate ``input`` of the user message (the Alpaca
template renders its "### Input:" block from it; chat templates append it to the
user turn after a blank line, open-instruct's convention); ShareGPT
``human``/``gpt``/``system`` map to user/assistant/system; Dolly ``category`` and
FLAN task names become tags. Nothing is altered silently: a value of the wrong
type is a located error, never converted (see ``data.validate``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from polyinstruct.data import oasst
from polyinstruct.data.records import Conversation
from polyinstruct.data.sources import iter_raw_recovering
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


def _user(instruction: str, extra: str) -> dict[str, Any]:
    """A user message; a non-empty ``extra`` (Alpaca input, Dolly context) is kept as its ``input``, as is
    (Stanford Alpaca's rule: an input is present unless it is the empty string)."""
    msg: dict[str, Any] = {"role": "user", "content": instruction}
    if extra != "":
        msg["input"] = extra
    return msg


def _answer(row: dict[str, Any], field: str) -> list[dict[str, Any]]:
    """The assistant turn from ``field``; absent, the record is prompt-only (an inference input) and
    ``_answer_field`` lets the reader name the missing field when an answer is required."""
    if row.get(field) is None:
        return []
    return [{"role": "assistant", "content": _req(row, field)}]


def _prompt_only(rec: dict[str, Any], field: str) -> dict[str, Any]:
    if rec["messages"][-1]["role"] != "assistant":
        rec["_answer_field"] = field
    return rec


def _system(row: dict[str, Any]) -> list[dict[str, Any]]:
    """An optional ``system`` column (LLaMA-Factory): a string, or absent/empty."""
    v = row.get("system")
    if v is None or v == "":
        return []
    if not isinstance(v, str):
        raise RecordError("bad-type", f"system must be a string, got {type(v).__name__}", field="system")
    return [{"role": "system", "content": v}]


def _tag(row: dict[str, Any], *fields: str) -> list[str]:
    for f in fields:
        v = row.get(f)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise RecordError("bad-type", f"{f} must be a string, got {type(v).__name__}", field=f)
        return [v]
    return []


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
        if not isinstance(role, str):
            raise RecordError("bad-type", f"role must be a string, got {type(role).__name__} {role!r}",
                              field=f"{field}[{i}].role")
        if role not in _MESSAGE_ROLES:
            raise RecordError("unknown-role", f"unknown role {role!r} (expected system, user or assistant)",
                              field=f"{field}[{i}].role")
        content = _content_text(m.get("content"), f"{field}[{i}].content")
        if content is None:
            raise RecordError("missing-field", "message has no content", field=f"{field}[{i}].content")
        msg = {"role": _MESSAGE_ROLES[role], "content": content}
        if m.get("language") is not None:
            msg["language"] = m["language"]
        if m.get("input") not in (None, ""):
            msg["input"] = m["input"]
        out.append(msg)
    return out


def convert_messages(row: dict[str, Any]) -> dict[str, Any]:
    """OpenAI ``messages`` (also the canonical on-disk record, metadata included)."""
    return {"messages": _messages(row)}


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant",
                  "bing": "assistant", "assistant": "assistant", "model": "assistant", "system": "system"}


def convert_sharegpt(row: dict[str, Any]) -> dict[str, Any]:
    turns = _req(row, "conversations", list)
    msgs = _system(row)  # LLaMA-Factory's system column
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise RecordError("bad-type", "turn must be an object", field=f"conversations[{i}]")
        who = t.get("from")
        if who is None:
            raise RecordError("missing-field", "turn has no 'from'", field=f"conversations[{i}].from")
        if not isinstance(who, str):
            raise RecordError("bad-type", f"'from' must be a string, got {type(who).__name__} {who!r}",
                              field=f"conversations[{i}].from")
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
    if not isinstance(hist, list):
        raise RecordError("bad-type", f"history must be a list of [user, assistant] pairs, got {type(hist).__name__}",
                          field="history")
    msgs = []
    for i, pair in enumerate(hist):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise RecordError("bad-type", "history items must be [user, assistant] string pairs", field=f"history[{i}]")
        msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return msgs


def convert_alpaca(row: dict[str, Any]) -> dict[str, Any]:
    user = _user(_req(row, "instruction"), _opt_str(row, "input"))
    msgs = _system(row) + _history(row)
    msgs += [user] + _answer(row, "output")
    return _prompt_only({"messages": msgs}, "output")


def convert_dolly(row: dict[str, Any]) -> dict[str, Any]:
    # Dolly's "context"; GPTeacher and others write the same columns with Alpaca's "input"
    user = _user(_req(row, "instruction"), _opt_str(row, "context") or _opt_str(row, "input"))
    rec: dict[str, Any] = {"messages": [user] + _answer(row, "response")}
    tags = _tag(row, "category")
    if tags:
        rec["tags"] = tags
    return _prompt_only(rec, "response")


def convert_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    """TRL's prompt/completion pairs, plain strings or conversational lists (``response`` is read as
    ``completion`` when there is none: GPT4All's prompt/response)."""
    if "completion" not in row and "response" in row:
        row = {**row, "completion": row["response"]}
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
    rec: dict[str, Any] = {"messages": [{"role": "user", "content": _req(row, "inputs")}] + _answer(row, "targets")}
    tags = _tag(row, "task_name", "_task_name", "task")
    if tags:
        rec["tags"] = tags
    return _prompt_only(rec, "targets")


_COT_FIELDS = {"question": ("question", "source"), "rationale": ("rationale", "chain_of_thought"),
               "answer": ("answer", "target")}
_COT_SLOT = re.compile(r"\{(question|rationale|answer)\}")
_cot_templates: list[dict[str, str]] = []


def cot_templates() -> list[dict[str, str]]:
    """The FLAN-style chain-of-thought templates (``resources/formats/cot_templates.yaml``)."""
    if not _cot_templates:
        from polyinstruct.yamlio import load_yaml

        data = load_yaml(Path(__file__).resolve().parent.parent / "resources" / "formats" / "cot_templates.yaml")
        _cot_templates.extend(data["templates"])
    return _cot_templates


def convert_cot(row: dict[str, Any]) -> dict[str, Any]:
    """A reasoning example (question/rationale/answer; CoT-Collection's source/rationale/target) rendered
    with a FLAN-style CoT template: the prompt asks to reason, the response reasons, then answers."""
    values = {}
    for slot, names in _COT_FIELDS.items():
        name = next((n for n in names if n in row), names[0])
        values[slot] = _req(row, name).strip()
    templates = cot_templates()
    key = str(row.get("id") if row.get("id") not in (None, "") else values["question"])
    k = int(hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest(), 16) % len(templates)
    fill = lambda fmt: _COT_SLOT.sub(lambda m: values[m.group(1)], fmt)  # noqa: E731 - one pass: data braces stay
    rec: dict[str, Any] = {"messages": [{"role": "user", "content": fill(templates[k]["prompt"])},
                                        {"role": "assistant", "content": fill(templates[k]["response"])}],
                           "meta": {"cot_template": k}}
    tags = _tag(row, "task", "task_name")
    if tags:
        rec["tags"] = tags
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
# prompt-only Alpaca rows (instruction/input, no output: evaluation prompts) are detected too
FORMATS.register("alpaca", Format("alpaca", lambda r: "instruction" in r and (
    "output" in r or not {"response", "context"} & set(r)), convert_alpaca,
    "Alpaca instruction/input/output (optional system, history; output optional for prompts)"))
FORMATS.register("flan", Format("flan", lambda r: "inputs" in r and "targets" in r, convert_flan,
                                "FLAN-style inputs/targets"))
FORMATS.register("prompt_completion", Format("prompt_completion", lambda r: "prompt" in r and "completion" in r,
                                             convert_prompt_completion, "prompt/completion pairs (TRL); also "
                                             "prompt/response"))
FORMATS.register("cot", Format("cot", lambda r: "rationale" in r and ("question" in r or "source" in r),
                               convert_cot, "reasoning examples question|source / rationale / answer|target, "
                               "rendered with FLAN-style CoT templates"))
# Detection order: most specific first.
DETECT_ORDER = ("messages", "sharegpt", "oasst1", "dolly", "alpaca", "flan", "cot", "prompt_completion")
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
    """Fill id and metadata from the row, then from the caller's defaults.

    Values are copied as they are: a wrong type is left for ``check_record`` to
    reject with its field, never converted (``tags: [1, null]`` is an error, not
    ``["1", "None"]``). Integer ids become strings, so ``1`` and ``"1"`` are the
    same id (and a duplicate).
    """
    if "id" not in rec:
        rid = row.get("id")
        if rid is None or rid == "":
            rec["id"] = default_id
        elif isinstance(rid, int) and not isinstance(rid, bool):
            rec["id"] = str(rid)
        elif isinstance(rid, str):
            rec["id"] = rid
        else:
            raise RecordError("bad-type", f"id must be a string or an integer, got {type(rid).__name__} {rid!r}",
                              field="id")
    for k in _META:
        if rec.get(k) is None and row.get(k) not in (None, ""):
            rec[k] = row[k]
    if rec.get("language") is None:
        lang = row.get("lang") or language
        if lang:
            rec["language"] = lang
    if rec.get("source") is None and source:
        rec["source"] = source
    if "tags" not in rec and row.get("tags") not in (None, ""):
        rec["tags"] = row["tags"]
    if row.get("meta") not in (None, "") and "meta" not in rec:
        meta = row["meta"]
        if isinstance(meta, str):  # Parquet and CSV hold meta as a JSON text (see data.writers)
            try:
                meta = json.loads(meta)
            except ValueError:
                raise RecordError("bad-type", "meta must be a JSON object (a string holding one in CSV/Parquet)",
                                  field="meta") from None
        if meta != {}:
            rec["meta"] = meta
    return rec


def merge_consecutive_turns(rec: dict[str, Any]) -> dict[str, Any]:
    """Join runs of same-role user/assistant turns with a blank line (the explicit ``merge_consecutive`` option).

    The record's ``meta.merged_turns`` counts the turns folded away, so the
    change is visible. Only string contents are merged (anything else is left
    for validation to reject).
    """
    msgs = rec.get("messages")
    if not isinstance(msgs, list):
        return rec
    out: list[Any] = []
    merged = 0
    for m in msgs:
        prev = out[-1] if out else None
        if (isinstance(m, dict) and isinstance(prev, dict) and m.get("role") == prev.get("role")
                and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
                and isinstance(prev.get("content"), str) and not m.get("input") and not prev.get("input")):
            out[-1] = {**prev, "content": f"{prev['content']}\n\n{m['content']}"}
            merged += 1
        else:
            out.append(m)
    if merged:
        meta = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
        rec = {**rec, "messages": out, "meta": {**meta, "merged_turns": merged}}
    return rec


class RecordStream:
    """Iterator of validated ``Conversation`` records that also reports what it rejected.

    ``stream.rejected`` is a ``Counter`` of reason -> count (filled as you
    iterate); ``stream.read`` is the number of records yielded; ``stream.rows``
    the rows read from the files. Every row is accounted for: ``rows == read +
    rejected total`` for every format except OASST: in message tables
    ``rows == messages on output paths + unselected + rejected`` (``unselected``:
    lower-ranked replies of valid trees; ``stream.oasst_used`` counts the former),
    and a ``*.trees.jsonl`` row in ``all`` mode gives one record per path.

    Ids are unique: a generated id (``{file stem}-{line}``, or ``-{line}-{k}``
    when several rows share a line) never repeats, and a record whose id was
    already used in the same language (``1`` and ``"1"`` are the same id) is a
    ``duplicate-id`` reject; parallel data may share an id across languages
    (``unique_ids=False`` turns the check off).
    """

    def __init__(self, path: str | os.PathLike, format: str | None, on_error: str, rejects_path, source, language,
                 oasst_paths: str = "top", as_dicts: bool = False, raw_rows: Iterator[Any] | None = None,
                 require_answer: bool = True, merge_consecutive: bool = False, unique_ids: bool = True):
        self.path = Path(path)
        self.raw_rows = raw_rows
        self.format = format
        self.sink = ErrorSink(on_error, rejects_path)
        self.source = source
        self.language = language
        self.oasst_paths = oasst_paths
        self.as_dicts = as_dicts
        self.require_answer = require_answer
        self.merge_consecutive = merge_consecutive
        self.unique_ids = unique_ids
        self.read = 0
        self.rows = 0
        self.unselected = 0
        self.oasst_used = 0
        self._ids: set[int] = set()  # hashes of (id, language) seen so far
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

    def _claim_id(self, rec: dict[str, Any], generated: bool, where: str) -> None:
        """Keep ids unique per language: parallel data shares an id across languages (``inst-001`` in en
        and fr, the project's convention), but the same id twice in one language is a duplicate."""
        if not self.unique_ids:
            return
        rid, lang = rec["id"], rec.get("language")
        key = hash((rid, lang))  # one int per record: memory stays small on millions of records
        if generated and key in self._ids:  # ours to choose: make it unique
            k = 2
            while hash((f"{rid}-{k}", lang)) in self._ids:
                k += 1
            rec["id"] = rid = f"{rid}-{k}"
            key = hash((rid, lang))
        if key in self._ids:
            in_lang = f" in language {lang!r}" if lang else ""
            raise RecordError("duplicate-id", f"id {rid!r} was already used{in_lang} earlier in this input (ids 1 "
                              "and \"1\" are the same id)", field="id", record_id=rid)
        self._ids.add(key)

    def _generate(self) -> Iterator[Any]:
        fmt: Format | None = get_format(self.format) if self.format else None
        sink, source, language = self.sink, self.source, self.language
        require_answer, merge = self.require_answer, self.merge_consecutive
        make = (lambda d: d) if self.as_dicts else Conversation.from_dict

        def finish(rec: dict[str, Any], src_row: dict[str, Any], default_id: str, src: str | None,
                   path: str, line: int | None) -> Any:
            generated = "id" not in rec and src_row.get("id") in (None, "")
            answer_field = rec.pop("_answer_field", None)
            if answer_field and require_answer:
                raise RecordError("missing-field", f"missing field {answer_field!r}", field=answer_field)
            rec = _finish(rec, src_row, default_id, src, language)
            if merge:
                rec = merge_consecutive_turns(rec)
            check_record(rec, require_answer)
            self._claim_id(rec, generated, f"{path}:{line}")
            return make(rec)

        grouper: oasst.FlatTreeGrouper | None = None
        current_path = None
        stem = self.path.stem
        last_line, same_line = None, 0

        def tree_done(tree: oasst.FlatTree | None, path: str) -> Iterator[Any]:
            if tree is None:
                return
            for err, raw in tree.rejects:
                sink.reject(err.located(path, err.line), raw)
            for rec in tree.records:
                try:
                    out = finish(rec, {}, f"{stem}-{tree.first_line}", source or stem, path, tree.first_line)
                except RecordError as e:
                    sink.reject(e.located(path, tree.first_line), None)
                    self.unselected += sum(1 for m in rec.get("messages", []))
                    continue
                self.read += 1
                yield out
            self.unselected += tree.unselected
            self.oasst_used += tree.rows - len(tree.rejects) - tree.unselected

        try:
            for rr in (self.raw_rows if self.raw_rows is not None else iter_raw_recovering(self.path)):
                row = rr.row
                self.rows += 1
                if rr.path != current_path:
                    if grouper is not None and current_path is not None:  # a tree never spans two files
                        yield from tree_done(grouper.flush(), current_path)
                    current_path, stem = rr.path, Path(rr.path).stem
                    last_line, same_line = None, 0
                same_line = same_line + 1 if rr.line == last_line else 1
                last_line = rr.line
                default_id = f"{stem}-{rr.line}" if same_line == 1 else f"{stem}-{rr.line}-{same_line}"
                if isinstance(row, RecordError):
                    sink.reject(row, rr.raw)
                    continue
                try:
                    if fmt is None:
                        fmt = FORMATS.get(detect_format(row))
                        log.debug("%s: detected format %s", self.path, fmt.name)
                    if fmt.name == "oasst1" and oasst.is_flat_row(row):
                        grouper = grouper or oasst.FlatTreeGrouper(self.oasst_paths)
                        done = grouper.add(row, rr.line)
                    elif fmt.name == "oasst1":
                        recs = oasst.nested_tree_records(row, self.oasst_paths)
                        done = None
                    else:
                        recs = fmt.convert(row)
                        done = None
                except RecordError as e:
                    sink.reject(e.located(rr.path, rr.line), rr.raw if rr.raw is not None else row)
                    continue
                except Exception as e:  # noqa: BLE001 - any other failure on a hostile row is that row's error
                    sink.reject(_unexpected(e, rr.path, rr.line), rr.raw if rr.raw is not None else row)
                    continue
                if fmt.name == "oasst1" and oasst.is_flat_row(row):
                    yield from tree_done(done, rr.path)
                    continue
                if isinstance(recs, dict):
                    recs = [recs]
                # One row, one record: a row that yields several (an OASST tree in "all" mode) is one
                # row whose records are each accounted; a rejected one counts as the row's reject.
                for k, rec in enumerate(recs):
                    rid = default_id if len(recs) == 1 else f"{default_id}-{k + 1}"
                    try:
                        out = finish(rec, row, rid, source or stem, rr.path, rr.line)
                    except RecordError as e:
                        sink.reject(e.located(rr.path, rr.line), rr.raw if rr.raw is not None else row)
                        continue
                    except Exception as e:  # noqa: BLE001
                        sink.reject(_unexpected(e, rr.path, rr.line), rr.raw if rr.raw is not None else row)
                        continue
                    self.read += 1
                    yield out
            if grouper is not None:
                yield from tree_done(grouper.flush(), current_path or str(self.path))
        finally:
            sink.close()
        if sink.counts:
            log.debug("%s: %s", self.path, sink.summary())


def _unexpected(e: BaseException, path: str, line: int | None) -> RecordError:
    """A located reject for a failure no check anticipated (the row is hostile; the run goes on)."""
    msg = str(e)
    if len(msg) > 200:
        msg = msg[:200] + "..."
    return RecordError("unreadable-row", f"cannot convert this row ({type(e).__name__}: {msg})", path=path, line=line)


def read_records(path: str | os.PathLike, format: str | None = None, *, on_error: str = "raise",
                 rejects_path: str | os.PathLike | None = None, source: str | None = None,
                 language: str | None = None, oasst_paths: str = "top", require_answer: bool = True,
                 merge_consecutive: bool = False, unique_ids: bool = True) -> RecordStream:
    """Stream validated ``Conversation`` records from a file, folder, glob or save_to_disk folder.

    ``format=None`` detects the format from the first row's fields. Bad rows
    raise ``RecordError`` (``path:line: field: reason``) or, with
    ``on_error="skip"``, go to ``rejects_path`` and are counted in
    ``stream.rejected``. ``source``/``language`` fill records that lack them.
    ``require_answer=False`` accepts prompt-only records (no final assistant turn).
    ``merge_consecutive=True`` joins two user (or assistant) turns in a row
    instead of rejecting the record. ``unique_ids=False`` allows repeated ids.
    """
    if format is not None:
        get_format(format)  # fail early with a did-you-mean
    if language is not None:
        from polyinstruct.lang.codes import language_code_problem

        problem = language_code_problem(language)
        if problem:
            raise RecordError("bad-language", problem, field="language")
    return RecordStream(path, format, on_error, rejects_path, source, language, oasst_paths,
                        require_answer=require_answer, merge_consecutive=merge_consecutive, unique_ids=unique_ids)
