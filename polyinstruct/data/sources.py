"""Raw rows out of files: JSONL, JSON, Parquet, CSV, folders, ``save_to_disk`` folders.

Every reader yields ``RawRow(path, line, row)`` one at a time so a large file is
never loaded whole. ``row`` is a dict, or a ``RecordError`` describing why that
line could not be parsed (malformed JSON, invalid UTF-8) so the caller decides
whether to raise or skip it. ``line`` is the 1-based line of the record's start
(JSON/JSONL/CSV) or the 1-based row number (Parquet, Arrow).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from polyinstruct.data.validate import RecordError

try:  # orjson is ~3x faster in the hot path; plain json is the fallback.
    import orjson as _orjson

    def _loads(b: bytes) -> Any:
        return _orjson.loads(b)

    _JSON_ERRORS: tuple[type[Exception], ...] = (_orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

    def _loads(b: bytes) -> Any:
        return json.loads(b)

    _JSON_ERRORS = (ValueError,)

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".ndjson")
BOM = b"\xef\xbb\xbf"
# Deepest JSON nesting a row may have. orjson has no limit of its own (200,000 nested
# brackets crash the process), and no instruction record comes near this.
MAX_JSON_DEPTH = 512
# Largest CSV cell (characters). Python's default of 131,072 is smaller than many answers.
MAX_CSV_CELL = 1 << 30
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, as errors="surrogateescape" keeps them
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
_LONG_NUMBER = re.compile(rb"\d{19,}")  # may not fit 64 bits (in a string it only costs a slower parse)


def json_depth(data: bytes) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings do not count); cheap when shallow."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    depth = best = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', data)):
        if m.group() in (b"[", b"{"):
            depth += 1
            best = max(best, depth)
        else:
            depth -= 1
    return best


def _too_deep(path: str, line: int, depth: int) -> RecordError:
    return RecordError("too-deep", f"JSON nested {depth} levels deep (the limit is {MAX_JSON_DEPTH}); not an "
                       "instruction record", path=path, line=line)


@dataclass(slots=True)
class RawRow:
    path: str
    line: int
    row: dict[str, Any] | RecordError
    raw: str | None = None  # the original text of the line (JSONL/CSV), for rejects files
    index: int | None = None  # 1-based element number when several rows share a line (JSON arrays)


def is_save_to_disk_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file())


def list_data_files(path: str | os.PathLike) -> list[Path]:
    """Files a path stands for: the file itself, or the data files under a folder, sorted."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.exists():
        # A glob pattern such as data/*.jsonl
        base = Path(p.anchor) if p.is_absolute() else Path(".")
        rel = str(p.relative_to(p.anchor)) if p.is_absolute() else str(p)
        matches = sorted(x for x in base.glob(rel) if x.is_file() or is_save_to_disk_dir(x))
        if not matches:
            raise RecordError("missing-file", "no such file, folder or glob match", path=str(p))
        return matches
    if is_save_to_disk_dir(p):
        return [p]
    files = sorted(x for x in p.rglob("*") if x.is_file() and x.suffix.lower() in DATA_SUFFIXES
                   and not x.name.startswith(".") and ".rejects" not in x.name)
    subsets = sorted(x for x in p.iterdir() if is_save_to_disk_dir(x))
    if not files and not subsets:
        raise RecordError("missing-file", f"folder has no data files ({', '.join(DATA_SUFFIXES)})", path=str(p))
    return subsets + files


def iter_raw_recovering(path: str | os.PathLike) -> Iterator[RawRow]:
    """``iter_raw``, but a file that cannot be read on (a bad Parquet footer, an unreadable block) yields
    its error as a row and the next file is read: the caller's ``on_error`` policy decides."""
    for f in list_data_files(path):
        line = 0
        try:
            for rr in iter_raw(f):
                line = rr.line
                yield rr
        except RecordError as e:
            yield RawRow(str(f), e.line if e.line is not None else line + 1, e.located(str(f), line + 1))


def iter_raw(path: str | os.PathLike) -> Iterator[RawRow]:
    """Yield raw rows from a file, folder, glob or ``save_to_disk`` folder, streaming."""
    for f in list_data_files(path):
        if f.is_dir():
            yield from _iter_arrow_dir(f)
            continue
        suffix = f.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            yield from _iter_jsonl(f)
        elif suffix == ".json":
            yield from _iter_json(f)
        elif suffix == ".parquet":
            yield from _iter_parquet(f)
        elif suffix in (".csv", ".tsv"):
            yield from _iter_csv(f, delimiter="\t" if suffix == ".tsv" else ",")
        else:
            raise RecordError("unsupported-file", f"unsupported file type {suffix!r}; use one of "
                              f"{', '.join(DATA_SUFFIXES)} or a save_to_disk folder", path=str(f))


def iter_json_lines(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Strict JSONL for project files (predictions, embedded data): ``(line, object)`` pairs.

    Same parsing and messages as the dataset readers (BOM, invalid UTF-8, non-objects);
    the first bad line raises its ``RecordError`` naming ``path:line``.
    """
    f = Path(path)
    if not f.is_file():
        raise RecordError("missing-file", "no such file", path=str(f))
    for raw in _iter_jsonl(f):
        if isinstance(raw.row, RecordError):
            raise raw.row
        yield raw.line, raw.row


def _utf8_error(path: str, line: int, data: bytes, e: UnicodeDecodeError) -> RecordError:
    return RecordError("invalid-utf8", f"invalid UTF-8 at byte {e.start} of the line ({data[max(0, e.start - 8):e.start + 8]!r}); "
                       "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`", path=path, line=line)


def _iter_jsonl(f: Path) -> Iterator[RawRow]:
    path = str(f)
    with open(f, "rb") as fh:
        for lineno, data in enumerate(fh, 1):
            if lineno == 1 and data.startswith(BOM):
                data = data[3:]
            if not data.strip():
                continue
            depth = json_depth(data)
            if depth > MAX_JSON_DEPTH:
                yield RawRow(path, lineno, _too_deep(path, lineno, depth),
                             data[:200].decode("utf-8", "replace") + "...")
                continue
            try:
                # orjson reads an integer beyond 64 bits as a float (silently rounded): such lines go
                # through the standard module, which keeps it exact
                row = json.loads(data) if _LONG_NUMBER.search(data) else _loads(data)
            except _JSON_ERRORS as e:
                try:
                    text = data.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as ue:
                    yield RawRow(path, lineno, _utf8_error(path, lineno, data, ue), data.decode("utf-8", "replace").rstrip("\r\n"))
                    continue
                yield RawRow(path, lineno, RecordError("malformed-json", f"malformed JSON: {_json_msg(e)}",
                                                       path=path, line=lineno), text)
                continue
            if not isinstance(row, dict):
                yield RawRow(path, lineno, RecordError("malformed-json", f"expected a JSON object, got {type(row).__name__}",
                                                       path=path, line=lineno), data.decode("utf-8", "replace").rstrip("\r\n"))
                continue
            yield RawRow(path, lineno, row, None)


def _json_msg(e: Exception) -> str:
    msg = str(e).split(": line ")[0]
    return msg or type(e).__name__


def _iter_json(f: Path, chunk_size: int = 1 << 20) -> Iterator[RawRow]:
    """Stream the elements of a top-level JSON array (or one object) without loading the file."""
    path = str(f)
    decoder = json.JSONDecoder()
    with open(f, encoding="utf-8-sig") as fh:
        state = {"buf": "", "line": 1}

        def refill() -> bool:
            try:
                data = fh.read(chunk_size)
            except UnicodeDecodeError as e:
                raise RecordError("invalid-utf8", f"invalid UTF-8 after line {state['line']} (byte {e.start} of a "
                                  "read block); re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
                                  path=path, line=state["line"]) from None
            state["buf"] += data
            return bool(data)

        def skip(i: int, chars: str) -> int:
            # Skip separators, counting newlines; refill when the buffer runs out.
            while True:
                buf = state["buf"]
                j = i
                while j < len(buf) and buf[j] in chars:
                    j += 1
                state["line"] += buf.count("\n", i, j)
                if j < len(buf):
                    return j
                state["buf"], i = "", 0
                if not refill():
                    return -1

        refill()
        i = skip(0, " \t\r\n")
        if i < 0:
            return
        if state["buf"][i] == "{":  # a single object: one record
            rest = state["buf"][i:] + fh.read()
            try:
                obj = json.loads(rest)
            except ValueError as e:
                yield RawRow(path, state["line"], RecordError("malformed-json", f"malformed JSON: {_json_msg(e)}",
                                                              path=path, line=state["line"]))
                return
            except RecursionError:
                yield RawRow(path, state["line"], _too_deep(path, state["line"], json_depth(rest.encode("utf-8",
                                                                                                     "replace"))))
                return
            if not isinstance(obj, dict):  # pragma: no cover - a '{' always decodes to a dict
                return
            yield RawRow(path, state["line"], obj)
            return
        if state["buf"][i] != "[":
            yield RawRow(path, state["line"], RecordError("malformed-json", "a .json file must hold an array of objects "
                                                          "or one object", path=path, line=state["line"]))
            return
        i += 1
        index = 0
        while True:
            i = skip(i, " \t\r\n,")
            if i < 0:
                yield RawRow(path, state["line"], RecordError("malformed-json", "unterminated JSON array",
                                                              path=path, line=state["line"]))
                return
            if state["buf"][i] == "]":
                return
            start_line = state["line"]
            index += 1
            while True:
                try:
                    obj, end = decoder.raw_decode(state["buf"], i)
                    break
                except ValueError as e:
                    if refill():
                        continue
                    yield RawRow(path, start_line, RecordError("malformed-json", f"malformed JSON: {_json_msg(e)}",
                                                               path=path, line=start_line), index=index)
                    return
                except RecursionError:
                    while (end := _value_end(state["buf"], i)) < 0:  # skip the element, keep the rest
                        if not refill():
                            yield RawRow(path, start_line, RecordError("malformed-json", "unterminated JSON array",
                                                                       path=path, line=start_line), index=index)
                            return
                    obj = _too_deep(path, start_line, json_depth(state["buf"][i:end].encode("utf-8", "replace")))
                    break
            state["line"] += state["buf"].count("\n", i, end)
            if isinstance(obj, (dict, RecordError)):
                yield RawRow(path, start_line, obj, index=index)
            else:
                yield RawRow(path, start_line, RecordError("malformed-json", f"expected a JSON object, got "
                                                           f"{type(obj).__name__}", path=path, line=start_line),
                             index=index)
            if end > chunk_size:  # trim now and then, not per element (that would copy the buffer each time)
                state["buf"], i = state["buf"][end:], 0
            else:
                i = end


def _value_end(buf: str, i: int) -> int:
    """End of the JSON object/array starting at ``buf[i]`` (string-aware), or -1 when the buffer ends first."""
    depth, j, n = 0, i, len(buf)
    while j < n:
        c = buf[j]
        if c == '"':
            j += 1
            while j < n and buf[j] != '"':
                j += 2 if buf[j] == "\\" else 1
            if j >= n:
                return -1
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


# Columns whose cells hold JSON when a record is flattened into CSV: only those whose value
# must be a list or an object. Text columns (prompt, completion, instruction, ...) are never
# parsed, so a cell that happens to look like JSON ("[1, 2]") stays the text it is.
_JSON_COLUMNS = ("messages", "conversations", "tags", "meta")


def _iter_csv(f: Path, delimiter: str = ",") -> Iterator[RawRow]:
    path = str(f)
    if csv.field_size_limit() < MAX_CSV_CELL:
        csv.field_size_limit(MAX_CSV_CELL)
    try:
        # surrogateescape: an invalid byte becomes a lone surrogate, found below, so one bad row is one reject
        fh = open(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
        with fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            start = 2
            while True:
                lineno = start
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:  # the reader resumes at the next line
                    start = reader.line_num + 1
                    yield RawRow(path, lineno, RecordError("malformed-csv", f"unreadable CSV row: {e}", path=path,
                                                           line=lineno))
                    continue
                start = reader.line_num + 1
                if None in row:
                    yield RawRow(path, lineno, RecordError("malformed-csv", "more cells than header columns", path=path, line=lineno))
                    continue
                bad = next((k for k, v in row.items() if isinstance(v, str) and _ESCAPED.search(v)), None)
                if bad is not None:
                    yield RawRow(path, lineno, RecordError("invalid-utf8", "invalid UTF-8 in this row; re-encode the "
                                                           "file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
                                                           path=path, line=lineno, field=bad))
                    continue
                for k in _JSON_COLUMNS:
                    v = row.get(k)
                    if isinstance(v, str) and v[:1] in "[{":
                        depth = json_depth(v.encode("utf-8", "surrogatepass"))
                        if depth > MAX_JSON_DEPTH:
                            row = _too_deep(path, lineno, depth)
                            break
                        try:
                            row[k] = json.loads(v)
                        except ValueError:
                            pass  # stays text; the format's converter names the field
                if isinstance(row, RecordError):
                    yield RawRow(path, lineno, row)
                    continue
                yield RawRow(path, lineno, dict(row))
    except UnicodeDecodeError as e:
        raise RecordError("invalid-utf8", f"invalid UTF-8 near byte {e.start} of a read block; "
                          "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`", path=path) from None


def _iter_parquet(f: Path, batch_size: int = 4096) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends
        raise RecordError("malformed-parquet", f"cannot read Parquet file: {e}", path=str(f)) from None
    n = 0
    meta = pf.metadata
    for g in range(meta.num_row_groups):
        group_rows, done = meta.row_group(g).num_rows, 0
        try:
            for batch in pf.iter_batches(batch_size=batch_size, row_groups=[g]):
                for row in batch.to_pylist():
                    done += 1
                    yield RawRow(str(f), n + done, row)
        except Exception as e:  # noqa: BLE001 - a corrupt page: every row it held is a counted reject
            reason = f"unreadable Parquet data in row group {g}: {type(e).__name__}: {e}"
            for k in range(done + 1, max(group_rows, done + 1) + 1):
                yield RawRow(str(f), n + k, RecordError("malformed-parquet", reason, path=str(f), line=n + k))
            done = max(group_rows, done + 1)
        n += done


def _iter_arrow_dir(d: Path) -> Iterator[RawRow]:
    """A ``datasets`` folder from ``save_to_disk`` (memory-mapped, so it streams)."""
    try:
        from datasets import load_from_disk
    except ImportError as e:  # pragma: no cover
        from polyinstruct.errors import MissingDependencyError

        raise MissingDependencyError("reading save_to_disk folders needs `pip install datasets`") from e
    ds = load_from_disk(str(d))
    if hasattr(ds, "keys"):  # DatasetDict: the train split if present, else every split
        splits = ["train"] if "train" in ds else sorted(ds.keys())
        parts = [(f"{d}/{s}", ds[s]) for s in splits]
    else:
        parts = [(str(d), ds)]
    for name, part in parts:
        n = 0
        for batch in part.with_format("arrow").iter(batch_size=4096):
            for row in batch.to_pylist():
                n += 1
                yield RawRow(name, n, row)
