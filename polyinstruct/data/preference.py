"""Preference data: readers from the public shapes into ``records.Preference``, checks and statistics.

Shapes read (``PREFERENCE_FORMATS``; detected from the first row, or named):

- ``preference``: the project's own record (``messages`` = the prefix, ``chosen``/``rejected`` objects).
- ``ultrafeedback``: UltraFeedback-binarized and TRL's *implicit prompt* form: ``chosen`` and
  ``rejected`` are whole conversations (message lists) that share everything but the last assistant turn.
- ``hh_rlhf``: Anthropic HH-RLHF transcripts (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) in ``chosen`` and
  ``rejected``; the turns before the last assistant turn must agree.
- ``trl``: TRL's explicit prompt form, ``prompt``/``chosen``/``rejected`` as strings (standard) or as
  message lists (conversational: ``prompt`` the prefix, ``chosen``/``rejected`` one assistant turn).
- ``trl_unpaired``: TRL's unpaired form for KTO, ``prompt``/``completion``/``label`` (true = desirable).

Every bad row is a located ``RecordError`` (``file:line: field: reason``) or, with ``on_error="skip"``,
a counted reject: records in = records out + rejects.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from polyinstruct.data.formats import _finish, _messages, _req, _unexpected
from polyinstruct.data.records import Preference
from polyinstruct.data.sources import iter_raw_recovering
from polyinstruct.data.validate import _LANG_RE, ErrorSink, RecordError, _check_text, check_record
from polyinstruct.registry import Registry

TURNS = ("chosen", "rejected")


@dataclass(frozen=True)
class PreferenceFormat:
    name: str
    detect: Callable[[dict[str, Any]], bool]
    convert: Callable[[dict[str, Any]], dict[str, Any]]
    description: str = ""


PREFERENCE_FORMATS: Registry[PreferenceFormat] = Registry("preference format")


def _turn(content: Any, field: str) -> dict[str, Any]:
    if content is None:
        raise RecordError("missing-field", f"missing field {field!r}", field=field)
    if not isinstance(content, str):
        raise RecordError("bad-type", f"{field} must be a string, got {type(content).__name__}", field=field)
    return {"content": content}


def _split_last_assistant(msgs: list[dict[str, Any]], field: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if not msgs:
        raise RecordError("missing-field", "empty conversation", field=field)
    last = msgs[-1]
    if last["role"] != "assistant":
        raise RecordError("no-final-assistant", f"the last turn is a {last['role']} turn, not an assistant turn",
                          field=f"{field}[{len(msgs) - 1}].role")
    turn = {"content": last["content"]}
    if last.get("language"):
        turn["language"] = last["language"]
    return msgs[:-1], turn


def _same_prefix(a: list[dict[str, Any]], b: list[dict[str, Any]], what: str) -> None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x["role"] != y["role"] or x["content"] != y["content"]:
            raise RecordError("prefix-mismatch", f"chosen and rejected {what} differ at turn {i} (only the final "
                              "assistant turn may differ)", field=f"rejected[{i}]")
    if len(a) != len(b):
        raise RecordError("prefix-mismatch", f"chosen has {len(a)} turns before its answer, rejected {len(b)}",
                          field="rejected")


def convert_canonical(row: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {"messages": _messages(row)}
    for key in TURNS:
        t = row.get(key)
        if t is None:
            continue
        if not isinstance(t, dict):
            raise RecordError("bad-type", f"{key} must be an object with content, got {type(t).__name__}", field=key)
        rec[key] = dict(t)
    return rec


def convert_ultrafeedback(row: dict[str, Any]) -> dict[str, Any]:
    chosen = _messages(row, "chosen")
    rejected = _messages(row, "rejected")
    pre_c, turn_c = _split_last_assistant(chosen, "chosen")
    pre_r, turn_r = _split_last_assistant(rejected, "rejected")
    _same_prefix(pre_c, pre_r, "conversations")
    prompt = row.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise RecordError("bad-type", f"prompt must be a string, got {type(prompt).__name__}", field="prompt")
        users = [m for m in pre_c if m["role"] == "user"]
        if users and users[-1]["content"] != prompt:
            raise RecordError("prefix-mismatch", "prompt differs from the conversation's last user turn",
                              field="prompt")
    meta = {k: row[k] for k in ("score_chosen", "score_rejected") if isinstance(row.get(k), (int, float))
            and not isinstance(row.get(k), bool)}
    rec = {"messages": pre_c, "chosen": turn_c, "rejected": turn_r}
    if row.get("prompt_id") not in (None, "") and row.get("id") in (None, ""):
        rec["id"] = _req(row, "prompt_id")
    if meta:
        rec["meta"] = meta
    return rec


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def parse_hh(text: str, field: str) -> list[dict[str, Any]]:
    """An HH-RLHF transcript as messages. It must start with a Human turn; roles must alternate."""
    if not text.startswith("\n\nHuman:"):
        if text.startswith("Human:"):
            text = "\n\n" + text
        else:
            raise RecordError("bad-transcript", "an HH-RLHF transcript starts with '\\n\\nHuman:'", field=field)
    parts = _HH_TURN.split(text)
    msgs = []
    for k in range(1, len(parts) - 1, 2):
        role = "user" if parts[k] == "Human" else "assistant"
        msgs.append({"role": role, "content": parts[k + 1].strip()})
    return msgs


def convert_hh(row: dict[str, Any]) -> dict[str, Any]:
    chosen = parse_hh(_req(row, "chosen"), "chosen")
    rejected = parse_hh(_req(row, "rejected"), "rejected")
    pre_c, turn_c = _split_last_assistant(chosen, "chosen")
    pre_r, turn_r = _split_last_assistant(rejected, "rejected")
    _same_prefix(pre_c, pre_r, "transcripts")
    return {"messages": pre_c, "chosen": turn_c, "rejected": turn_r}


def _prompt(row: dict[str, Any]) -> list[dict[str, Any]]:
    p = row.get("prompt")
    if p is None:
        raise RecordError("missing-field", "missing field 'prompt'", field="prompt")
    if isinstance(p, str):
        return [{"role": "user", "content": p}]
    if isinstance(p, list):
        return _messages(row, "prompt")
    raise RecordError("bad-type", f"prompt must be a string or a list of messages, got {type(p).__name__}",
                      field="prompt")


def _completion(row: dict[str, Any], key: str) -> dict[str, Any]:
    v = row.get(key)
    if isinstance(v, list):
        msgs = _messages(row, key)
        if len(msgs) != 1 or msgs[0]["role"] != "assistant":
            raise RecordError("bad-completion", "a conversational completion is one assistant message",
                              field=key)
        out = {"content": msgs[0]["content"]}
        if msgs[0].get("language"):
            out["language"] = msgs[0]["language"]
        return out
    return _turn(v, key)


def convert_trl(row: dict[str, Any]) -> dict[str, Any]:
    return {"messages": _prompt(row), "chosen": _completion(row, "chosen"), "rejected": _completion(row, "rejected")}


def convert_trl_unpaired(row: dict[str, Any]) -> dict[str, Any]:
    label = row.get("label")
    if not isinstance(label, bool):
        raise RecordError("bad-type" if label is not None else "missing-field",
                          "label must be true (desirable) or false (undesirable)", field="label")
    return {"messages": _prompt(row), ("chosen" if label else "rejected"): _completion(row, "completion")}


def _is_hh(r: dict[str, Any]) -> bool:
    c = r.get("chosen")
    return isinstance(c, str) and ("\n\nHuman:" in c[:20] or c.startswith("Human:"))


PREFERENCE_FORMATS.register("preference", PreferenceFormat(
    "preference", lambda r: isinstance(r.get("messages"), list) and any(isinstance(r.get(k), dict) for k in TURNS),
    convert_canonical, "polyinstruct's record: messages (prefix), chosen/rejected objects"))
PREFERENCE_FORMATS.register("trl_unpaired", PreferenceFormat(
    "trl_unpaired", lambda r: "completion" in r and "label" in r, convert_trl_unpaired,
    "TRL unpaired preference (KTO): prompt, completion, label"))
PREFERENCE_FORMATS.register("hh_rlhf", PreferenceFormat(
    "hh_rlhf", _is_hh, convert_hh, "Anthropic HH-RLHF transcripts in chosen/rejected"))
PREFERENCE_FORMATS.register("ultrafeedback", PreferenceFormat(
    "ultrafeedback", lambda r: isinstance(r.get("chosen"), list) and not isinstance(r.get("prompt"), list)
    and any(isinstance(m, dict) and m.get("role") == "user" for m in r["chosen"]), convert_ultrafeedback,
    "UltraFeedback-binarized / TRL implicit prompt: chosen and rejected whole conversations"))
PREFERENCE_FORMATS.register("trl", PreferenceFormat(
    "trl", lambda r: "prompt" in r and "chosen" in r and "rejected" in r, convert_trl,
    "TRL explicit prompt: prompt/chosen/rejected, strings or message lists"))


# Detection order: the most specific shape first (Registry.names() is alphabetical).
DETECT_ORDER = ("preference", "trl_unpaired", "hh_rlhf", "ultrafeedback", "trl")


def detect_preference_format(row: dict[str, Any]) -> str:
    for name in DETECT_ORDER:
        if PREFERENCE_FORMATS.get(name).detect(row):
            return name
    raise RecordError("unknown-format", f"cannot tell the preference format from fields {sorted(row)[:8]}; "
                      f"name it (one of {', '.join(PREFERENCE_FORMATS.names())})")


def check_preference(d: dict[str, Any]) -> None:
    """Raise ``RecordError`` when a canonical preference dict breaks the schema: the prefix follows the
    conversation rules (``data.validate.check_record``) and ends with a user turn; ``chosen`` and
    ``rejected`` (at least one) are objects with non-empty string ``content`` and an optional ISO 639
    ``language``."""
    base = {k: v for k, v in d.items() if k not in TURNS}
    check_record(base, require_answer=False)
    rid = d["id"]
    msgs = d["messages"]
    if msgs[-1]["role"] != "user":
        raise RecordError("prefix-not-user", "the prefix must end with a user turn (the answers follow it)",
                          field=f"messages[{len(msgs) - 1}].role", record_id=rid)
    present = [k for k in TURNS if d.get(k) is not None]
    if not present:
        raise RecordError("missing-field", "a preference record needs chosen, rejected or both", field="chosen",
                          record_id=rid)
    for key in present:
        t = d[key]
        if not isinstance(t, dict):
            raise RecordError("bad-type", f"{key} must be an object", field=key, record_id=rid)
        for k in t:
            if k not in ("content", "language", "role"):
                raise RecordError("unknown-field", f"unknown field {k!r} (content, language)", field=f"{key}.{k}",
                                  record_id=rid)
        if t.get("role", "assistant") != "assistant":
            raise RecordError("unknown-role", f"{key} must be an assistant turn", field=f"{key}.role", record_id=rid)
        c = t.get("content")
        if not isinstance(c, str):
            raise RecordError("missing-field" if c is None else "bad-type", "content must be a string",
                              field=f"{key}.content", record_id=rid)
        _check_text(c, f"{key}.content", rid)
        if not c.strip():
            raise RecordError(f"empty-{key}", f"empty {key} answer", field=f"{key}.content", record_id=rid)
        lang = t.get("language")
        if lang is not None and not (isinstance(lang, str) and _LANG_RE.match(lang)):
            raise RecordError("bad-language", f"language {lang!r} is not an ISO 639 code", field=f"{key}.language",
                              record_id=rid)
    if len(present) == 2 and d["chosen"]["content"] == d["rejected"]["content"]:
        raise RecordError("identical-pair", "chosen and rejected are the same text (nothing to prefer)",
                          field="rejected.content", record_id=rid)


class PreferenceStream:
    """Iterator of ``Preference`` records; counts ``rows``, ``read`` and ``rejected`` (per reason)."""

    def __init__(self, path: str | os.PathLike, format: str | None, on_error: str, rejects_path, source: str | None,
                 language: str | None, unique_ids: bool = True):
        self.path, self.format, self.source, self.language = Path(path), format, source, language
        self.sink = ErrorSink(on_error, rejects_path)
        self.unique_ids = unique_ids
        self.rows = self.read = 0
        self._ids: set[int] = set()
        self._it = self._generate()

    @property
    def rejected(self) -> Counter:
        return self.sink.counts

    def __iter__(self) -> "PreferenceStream":
        return self

    def __next__(self) -> Preference:
        return next(self._it)

    def close(self) -> None:
        self._it.close()
        self.sink.close()

    def _generate(self) -> Iterator[Preference]:
        fmt = PREFERENCE_FORMATS.get(self.format) if self.format else None
        try:
            for rr in iter_raw_recovering(self.path):
                self.rows += 1
                if isinstance(rr.row, RecordError):
                    self.sink.reject(rr.row, rr.raw)
                    continue
                row = rr.row
                raw = rr.raw if rr.raw is not None else row
                try:
                    if fmt is None:
                        fmt = PREFERENCE_FORMATS.get(detect_preference_format(row))
                    rec = fmt.convert(row)
                    rec = _finish(rec, row, f"{Path(rr.path).stem}-{rr.line}", self.source or Path(rr.path).stem,
                                  self.language)
                    for key in TURNS:  # a turn without a language takes the record's
                        if isinstance(rec.get(key), dict) and not rec[key].get("language") and rec.get("language"):
                            rec[key]["language"] = rec["language"]
                    check_preference(rec)
                    if self.unique_ids:
                        key = hash((rec["id"], rec.get("language")))
                        if key in self._ids:
                            raise RecordError("duplicate-id", f"id {rec['id']!r} was already used earlier in this "
                                              "input", field="id", record_id=rec["id"])
                        self._ids.add(key)
                except RecordError as e:
                    self.sink.reject(e.located(rr.path, rr.line), raw)
                    continue
                except Exception as e:  # noqa: BLE001 - a hostile row is that row's error, the read goes on
                    self.sink.reject(_unexpected(e, rr.path, rr.line), raw)
                    continue
                self.read += 1
                yield Preference.from_dict(rec)
        finally:
            self.sink.close()


def read_preferences(path: str | os.PathLike, format: str | None = None, *, on_error: str = "raise",
                     rejects_path: str | os.PathLike | None = None, source: str | None = None,
                     language: str | None = None, unique_ids: bool = True) -> PreferenceStream:
    """Stream validated ``Preference`` records from a file, folder or glob (JSONL, JSON, Parquet, CSV).

    ``format=None`` detects the shape from the first row. Bad rows raise ``RecordError``
    (``path:line: field: reason``) or, with ``on_error="skip"``, go to ``rejects_path`` and are counted.
    """
    if format is not None:
        PREFERENCE_FORMATS.get(format)  # fail early with a did-you-mean
    return PreferenceStream(path, format, on_error, rejects_path, source, language, unique_ids)


def is_preference_file(path: str | os.PathLike) -> bool:
    """True when the first readable row of ``path`` has a preference shape."""
    try:
        for rr in iter_raw_recovering(path):
            if isinstance(rr.row, dict):
                try:
                    detect_preference_format(rr.row)
                    return True
                except RecordError:
                    return False
    except RecordError:
        return False
    return False


def preference_stats(records: Iterator[Preference], tokenizer: Any = None) -> dict[str, Any]:
    """``instances``, ``paired``/``chosen_only``/``rejected_only``, mean prompt/chosen/rejected lengths
    (tokens with a tokenizer, else words), the share of pairs whose answers differ in language, and the
    reasons recorded by ``data prefs`` (``meta.reasons``), overall and per prompt language."""
    from polyinstruct.data.tokens import make_counter

    count = make_counter(tokenizer)
    unit = count.unit
    acc: dict[str, Counter] = defaultdict(Counter)
    reasons: Counter[str] = Counter()
    for p in records:
        for key in ("all", p.language or "unknown"):
            a = acc[key]
            a["instances"] += 1
            a["paired" if p.paired else ("chosen_only" if p.chosen else "rejected_only")] += 1
            a["prompt"] += sum(count(m.text) for m in p.prefix if m.role == "user")
            if p.chosen:
                a["chosen"] += count(p.chosen.content)
                a["n_chosen"] += 1
            if p.rejected:
                a["rejected"] += count(p.rejected.content)
                a["n_rejected"] += 1
            if p.paired and (p.chosen.language or p.language) != (p.rejected.language or p.language):
                a["language_differs"] += 1
        for r in p.meta.get("reasons") or []:
            if isinstance(r, str):
                reasons[r] += 1

    def row(a: Counter) -> dict[str, Any]:
        n = a["instances"]
        return {"instances": n, "paired": a["paired"], "chosen_only": a["chosen_only"],
                "rejected_only": a["rejected_only"],
                "mean_prompt_length": round(a["prompt"] / n, 1) if n else 0.0,
                "mean_chosen_length": round(a["chosen"] / a["n_chosen"], 1) if a["n_chosen"] else 0.0,
                "mean_rejected_length": round(a["rejected"] / a["n_rejected"], 1) if a["n_rejected"] else 0.0,
                "language_differs": round(a["language_differs"] / a["paired"], 4) if a["paired"] else 0.0}

    overall = acc.pop("all", Counter())
    return {"kind": "preference", "unit": unit, "overall": row(overall),
            "per_language": {k: row(acc[k]) for k in sorted(acc)}, "reasons": dict(reasons.most_common())}


def format_preference_stats(stats: dict[str, Any], name: str = "") -> str:
    unit = stats["unit"]
    head = ["language", "#instances", "paired", "chosen only", "rejected only", f"prompt ({unit})",
            f"chosen ({unit})", f"rejected ({unit})", "lang differs"]
    keys = ["instances", "paired", "chosen_only", "rejected_only", "mean_prompt_length", "mean_chosen_length",
            "mean_rejected_length", "language_differs"]
    rows = [[lang] + [str(r[k]) for k in keys] for lang, r in stats["per_language"].items()]
    rows.append(["all"] + [str(stats["overall"][k]) for k in keys])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = ([name] if name else []) + ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                                  for i, (c, w) in enumerate(zip(r, widths))) for r in [head] + rows]
    if stats.get("reasons"):
        lines.append("reasons: " + ", ".join(f"{k} {n}" for k, n in stats["reasons"].items()))
    return "\n".join(lines)


def write_preferences(records: Iterator[Preference], path: str | os.PathLike) -> int:
    """Write records as JSONL (atomically); returns how many."""
    import json

    from polyinstruct.fileio import atomic_open

    n = 0
    with atomic_open(Path(path)) as f:
        for p in records:
            f.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def validate_preference_file(path: str | os.PathLike, format: str | None = None, *, on_error: str = "raise",
                             rejects_path: str | os.PathLike | None = None,
                             output: str | os.PathLike | None = None) -> dict[str, Any]:
    """``data validate`` for preference files: the same report as ``api.validate_file`` (``rows ==
    records + rejected_total``; with ``on_error="skip"`` the valid records go to ``output``)."""
    path = Path(path)
    if on_error == "skip":
        output = Path(output) if output else path.with_name(path.name.split(".")[0] + ".clean.jsonl")
        rejects_path = Path(rejects_path) if rejects_path else path.with_name(path.name.split(".")[0]
                                                                              + ".rejects.jsonl")
    stream = read_preferences(path, format, on_error="skip", rejects_path=rejects_path)
    n = write_preferences(stream, output) if output is not None else sum(1 for _ in stream)
    rejected = dict(stream.rejected)
    return {"path": str(path), "kind": "preference", "rows": stream.rows, "records": n, "rejected": rejected,
            "rejected_total": sum(rejected.values()), "errors": list(stream.sink.messages),
            "output": str(output) if output else None,
            "rejects": str(rejects_path) if rejects_path and rejected else None,
            "ok": on_error == "skip" or not rejected}


def wants_preference(path: str | os.PathLike, format: str | None) -> bool:
    """Whether a data command should read ``path`` as preference data: a preference format is named,
    or none is and the first row has a preference shape."""
    if format is not None:
        return format in PREFERENCE_FORMATS
    return is_preference_file(path)
