"""Decontamination: remove training records that repeat an evaluation set or a benchmark test set.

``decontaminate(train, against, out_dir)`` compares every user and assistant turn of every
training record with every prompt and reference answer of the evaluation sets
(``evalsets/overlap.py``: normalised exact match, n-gram containment, TF-IDF character
similarity; with a cross-lingual model also translations and paraphrases) and writes

- ``kept.jsonl``: the records with no flagged turn (canonical JSONL);
- ``removed.jsonl``: the others, each with ``decontamination``: the flagged matches (evaluation
  set, item id and part, the training turn, the measure that flagged it and its score);
- ``summary.json``: records in = kept + removed (+ rejected rows when ``on_error="skip"``),
  removals per evaluation set, the thresholds and whether the cross-lingual step ran.

Evaluation sets (``against``): ``embedded`` (the project's 50 prompts in 8 languages), a
conversation file in any format ``data`` reads (prompt-only records are fine), or a benchmark
file in its publisher's layout: GSM8K ``test.jsonl`` (``question``/``answer``, English unless a
``language`` field says otherwise), MGSM
``mgsm_LANG.tsv`` (question TAB answer), BIG-Bench Hard ``TASK.json`` (``examples``:
``input``/``target``), or a folder of such files.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from polyinstruct.errors import PolyinstructError
from polyinstruct.evalsets.overlap import (CONTAINMENT_THRESHOLD, MIN_NGRAMS, SIMILARITY_THRESHOLD, Text, compare,
                                           embedded_texts, eval_texts, train_texts)

log = logging.getLogger(__name__)

_MGSM = re.compile(r"mgsm_([a-z]{2,3})\.tsv$")


def _benchmark_rows(path: Path) -> list[Text] | None:
    """A benchmark file in its publisher's layout, or None when the file is not one."""
    name = path.name
    if path.suffix == ".tsv":
        m = _MGSM.search(name)
        out = []
        with open(path, encoding="utf-8", newline="") as f:
            for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
                if not row or not row[0].strip():
                    continue
                if len(row) < 2:
                    raise PolyinstructError(f"{path}:{n}: expected question<TAB>answer, got {len(row)} column")
                rid = f"{path.stem}-{n}"
                out.append(Text(rid, row[0], m.group(1) if m else "", "prompt", name))
                out.append(Text(rid, row[1], m.group(1) if m else "", "reference", name))
        return out
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise PolyinstructError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
            return None
        out = []
        for k, ex in enumerate(data["examples"]):
            if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
                raise PolyinstructError(f"{path}: examples[{k}]: input: missing or not a string")
            out.append(Text(f"{path.stem}-{k}", ex["input"], "en", "prompt", name))
            if isinstance(ex.get("target"), str) and ex["target"].strip():
                out.append(Text(f"{path.stem}-{k}", ex["target"], "en", "reference", name))
        return out
    if path.suffix == ".jsonl":
        from polyinstruct.fileio import iter_jsonl_numbered

        rows = iter_jsonl_numbered(path)
        first = next(rows, None)
        if first is None or "question" not in first[1] or "messages" in first[1]:
            return None
        out = []
        for n, row in [first, *rows]:
            for field in ("question", "answer"):
                if not isinstance(row.get(field), str):
                    raise PolyinstructError(f"{path}:{n}: {field}: missing or not a string")
            rid = str(row.get("id", f"{path.stem}-{n}"))
            lang = str(row.get("language") or "en")  # GSM8K's layout is English
            out.append(Text(rid, row["question"], lang, "prompt", name))
            out.append(Text(rid, row["answer"], lang, "reference", name))
        return out
    return None


def load_eval_texts(spec: str) -> list[Text]:
    """The prompts and references of one evaluation set: ``embedded``, a benchmark file, a conversation
    file or a folder of them."""
    if spec == "embedded":
        return embedded_texts()[0]
    path = Path(spec)
    if not path.exists():
        raise PolyinstructError(f"--against {spec!r}: not 'embedded' and no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".json", ".tsv", ".parquet",
                                                                                ".csv")) if path.is_dir() else [path]
    out: list[Text] = []
    for f in files:
        rows = _benchmark_rows(f)
        if rows is None:
            from polyinstruct.data.formats import read_records

            rows = [t for c in read_records(f, require_answer=False, unique_ids=False)
                    for t in eval_texts(c, source=f.name)]
        out += rows
    if not out:
        raise PolyinstructError(f"--against {spec!r}: no evaluation texts found")
    return out


def _match(p: Any) -> dict[str, Any]:
    return {"eval_set": p.eval_source, "eval_id": p.eval_id, "eval_part": p.eval_part, "eval_language": p.language,
            "train_part": p.train_part, "reason": p.reason, "score": round(p.score, 4), "similarity": p.similarity,
            "containment": p.containment, "crosslingual": p.crosslingual, "eval_text": p.eval_text}


def decontaminate(train: str | os.PathLike, against: Sequence[str], out_dir: str | os.PathLike, *,
                  format: str | None = None, crosslingual: Any = None, on_error: str = "raise") -> dict[str, Any]:
    """Split ``train`` into kept and removed records (module docstring); returns the summary."""
    from polyinstruct.data.formats import read_records
    from polyinstruct.data.writers import write_records
    from polyinstruct.fileio import atomic_open, write_jsonl

    if not against:
        raise PolyinstructError("--against: name at least one evaluation set or benchmark file")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evals = [t for spec in against for t in load_eval_texts(spec)]
    stream = read_records(train, format, on_error=on_error, rejects_path=out / "rejects.jsonl" if on_error == "skip"
                          else None, require_answer=False)
    try:
        records = list(stream)
    finally:
        stream.close()
    n_rejected = sum(stream.rejected.values())
    texts = [t for k, c in enumerate(records) for t in train_texts(c, source=str(k))]
    pairs = compare("", evals, texts, crosslingual=crosslingual)
    hits: dict[int, list[Any]] = {}
    for p in pairs:
        if p.flagged:
            hits.setdefault(int(p.train_source), []).append(p)
    kept = [c for k, c in enumerate(records) if k not in hits]
    removed = [{**records[k].to_dict(), "decontamination": [_match(p) for p in ps]} for k, ps in sorted(hits.items())]
    write_records(kept, out / "kept.jsonl")
    write_jsonl(out / "removed.jsonl", removed)
    by_set = Counter(s for ps in hits.values() for s in {p.eval_source for p in ps})
    by_reason = Counter(ps[0].reason for ps in hits.values())
    summary = {
        "train": str(train), "against": list(against), "eval_texts": len(evals), "train_texts": len(texts),
        "records_in": len(records) + n_rejected, "kept": len(kept), "removed": len(removed),
        "rejected": n_rejected, "removed_by_eval_set": dict(by_set), "removed_by_reason": dict(by_reason),
        "thresholds": {"similarity": SIMILARITY_THRESHOLD, "containment": CONTAINMENT_THRESHOLD,
                       "min_ngrams": MIN_NGRAMS},
        "crosslingual": crosslingual.describe() if crosslingual is not None else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "outputs": {"kept": str(out / "kept.jsonl"), "removed": str(out / "removed.jsonl")},
    }
    assert summary["records_in"] == summary["kept"] + summary["removed"] + summary["rejected"]
    with atomic_open(out / "summary.json") as f:
        json.dump(summary, f, ensure_ascii=False, indent=1)
    return summary
