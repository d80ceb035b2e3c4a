"""Writers of canonical records: JSONL and Parquet, atomic, streaming in batches.

Also reachable as ``polyinstruct.data.formats.write_records``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from polyinstruct.data.records import Conversation
from polyinstruct.data.validate import RecordError
from polyinstruct.fileio import atomic_open


def _as_dict(r: Conversation | dict[str, Any]) -> dict[str, Any]:
    d = r if isinstance(r, dict) else r.to_dict()
    if d.get("meta"):  # NaN/Infinity would be written as null (orjson) or bare NaN: refuse instead
        from polyinstruct.data.validate import _check_json_value

        _check_json_value(d["meta"], "meta", d.get("id"))
    return d


def write_records(records: Iterable[Conversation | dict[str, Any]], path: str | os.PathLike,
                  batch_size: int = 2048) -> int:
    """Write records atomically as JSONL (``.jsonl``) or Parquet (``.parquet``); returns the count."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        if suffix == ".json":
            raise RecordError("unsupported-file", "write JSONL (.jsonl) or Parquet (.parquet), not .json", path=str(path))
        return _write_jsonl(records, path)
    if suffix == ".parquet":
        return _write_parquet(records, path, batch_size)
    raise RecordError("unsupported-file", f"cannot write {suffix!r}: use .jsonl or .parquet", path=str(path))


def _write_jsonl(records: Iterable[Any], path: Path) -> int:
    n = 0
    try:
        import orjson

        with atomic_open(path, "wb") as f:
            buf = []
            for r in records:
                d = _as_dict(r)
                try:
                    buf.append(orjson.dumps(d))
                except TypeError:  # an integer beyond 64 bits (valid JSON): the standard module writes it exactly
                    buf.append(json.dumps(d, ensure_ascii=False, allow_nan=False).encode("utf-8"))
                n += 1
                if len(buf) >= 1024:
                    buf.append(b"")
                    f.write(b"\n".join(buf))
                    buf = []
            if buf:
                buf.append(b"")
                f.write(b"\n".join(buf))
    except ImportError:  # pragma: no cover
        with atomic_open(path) as f:
            for r in records:
                f.write(json.dumps(_as_dict(r), ensure_ascii=False, allow_nan=False) + "\n")
                n += 1
    return n


def parquet_schema():
    import pyarrow as pa

    msg = pa.struct([("role", pa.string()), ("content", pa.string()), ("language", pa.string()),
                     ("input", pa.string())])
    return pa.schema([("id", pa.string()), ("messages", pa.list_(msg)), ("language", pa.string()),
                      ("source", pa.string()), ("tags", pa.list_(pa.string())), ("license", pa.string()),
                      ("meta", pa.string())])


def _write_parquet(records: Iterable[Any], path: Path, batch_size: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    n = 0
    with atomic_open(path, "wb") as f:
        writer = pq.ParquetWriter(f, schema)
        rows: list[dict[str, Any]] = []

        def flush() -> None:
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows.clear()

        for r in records:
            d = _as_dict(r)
            rows.append({"id": d["id"], "messages": [{"role": m["role"], "content": m["content"],
                                                      "language": m.get("language"), "input": m.get("input")}
                                                     for m in d["messages"]],
                         "language": d.get("language"), "source": d.get("source"), "tags": d.get("tags") or [],
                         "license": d.get("license"),
                         "meta": json.dumps(d["meta"], ensure_ascii=False) if d.get("meta") else None})
            n += 1
            if len(rows) >= batch_size:
                flush()
        flush()
        writer.close()
    return n
