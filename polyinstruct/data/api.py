"""The plain functions behind ``polyinstruct data ...``; each is callable from Python.

They return plain dicts (what the CLI prints as JSON) and never print.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from polyinstruct.data.catalogue import load_catalogue
from polyinstruct.data.formats import read_records, write_records
from polyinstruct.data.sources import DATA_SUFFIXES
from polyinstruct.data.validate import RecordError


def list_datasets(catalogue_paths: Sequence[str | os.PathLike] = ()) -> list[dict[str, Any]]:
    """Every catalogue entry as a dict (name, location, format, languages, task_type, ...)."""
    cat = load_catalogue(catalogue_paths)
    return [{**cat.get(n).to_dict(), "location": cat.get(n).location} for n in cat.names()]


def _default_sidecar(path: Path, suffix: str) -> Path:
    base = path.with_suffix("") if path.suffix.lower() in DATA_SUFFIXES else path
    return base.parent / f"{base.name}{suffix}"


def validate_file(path: str | os.PathLike, format: str | None = None, *, on_error: str = "raise",
                  rejects_path: str | os.PathLike | None = None, output: str | os.PathLike | None = None,
                  oasst_paths: str = "top", merge_consecutive: bool = False) -> dict[str, Any]:
    """Check every record of a file and report all problems (not just the first).

    ``on_error="raise"``: nothing is written; ``errors`` lists ``path:line:
    field: reason`` messages and ``ok`` is False when any record is bad.
    ``on_error="skip"``: the valid records go to ``output`` (default
    ``<name>.clean.jsonl``) and the rejected ones to ``rejects_path`` (default
    ``<name>.rejects.jsonl``); ``ok`` is True.

    ``rows`` counts the rows read: ``rows == records + rejected_total`` (OASST
    message tables: ``rows == oasst_used + unselected + row rejects``, see
    ``formats.RecordStream``). Duplicate ids (``1`` and ``"1"`` alike) are
    reported as ``duplicate-id``.
    """
    path = Path(path)
    if on_error == "skip":
        output = Path(output) if output else _default_sidecar(path, ".clean.jsonl")
        rejects_path = Path(rejects_path) if rejects_path else _default_sidecar(path, ".rejects.jsonl")
    stream = read_records(path, format, on_error="skip", rejects_path=rejects_path, oasst_paths=oasst_paths,
                          merge_consecutive=merge_consecutive)
    if output is not None:
        n = write_records(stream, output)
    else:
        n = sum(1 for _ in stream)
    rejected = dict(stream.rejected)
    return {"path": str(path), "rows": stream.rows, "records": n, "unselected": stream.unselected,
            "oasst_used": stream.oasst_used,
            "rejected": rejected, "rejected_total": sum(rejected.values()),
            "errors": list(stream.sink.messages), "output": str(output) if output else None,
            "rejects": str(rejects_path) if rejects_path and rejected else None,
            "ok": on_error == "skip" or not rejected}


def convert_file(src: str | os.PathLike, dst: str | os.PathLike, format: str | None = None, *,
                 on_error: str = "raise", rejects_path: str | os.PathLike | None = None,
                 source: str | None = None, language: str | None = None, oasst_paths: str = "top",
                 merge_consecutive: bool = False) -> dict[str, Any]:
    """Convert any supported input into canonical JSONL or Parquet (by ``dst`` suffix), streaming."""
    if on_error == "skip" and rejects_path is None:
        rejects_path = _default_sidecar(Path(dst), ".rejects.jsonl")
    stream = read_records(src, format, on_error=on_error, rejects_path=rejects_path, source=source,
                          language=language, oasst_paths=oasst_paths, merge_consecutive=merge_consecutive)
    n = write_records(stream, dst)
    rejected = dict(stream.rejected)
    return {"input": str(src), "output": str(dst), "rows": stream.rows, "records": n,
            "unselected": stream.unselected, "oasst_used": stream.oasst_used, "rejected": rejected,
            "rejects": str(rejects_path) if rejected else None}


def compute_stats(datasets: Sequence[str | os.PathLike], tokenizer: Any = None, *, format: str | None = None,
                  catalogue_paths: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Tulu Table 1 columns for one or more datasets (names or paths), merged, per language."""
    from itertools import chain

    from polyinstruct.data import load_dataset
    from polyinstruct.data.stats import dataset_stats

    cat = load_catalogue(catalogue_paths)
    streams = [load_dataset(d, catalogue=cat, format=format) for d in datasets]
    stats = dataset_stats(chain.from_iterable(streams), tokenizer)
    stats["datasets"] = [str(d) for d in datasets]
    return stats


def mix_from_config(config: str | os.PathLike | dict[str, Any], out_dir: str | os.PathLike,
                    overrides: Sequence[str] = (), catalogue_paths: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Run ``mixtures.mix`` from a YAML file (or dict) with keys strategy, total, temperature, seed,
    shuffle, tokenizer and datasets: ``[{name, weight, cap}]``."""
    from polyinstruct.config import apply_overrides, load_yaml
    from polyinstruct.data.mixtures import mix
    from polyinstruct.errors import ConfigError
    from polyinstruct.registry import suggest

    where = str(config) if not isinstance(config, dict) else None
    data = dict(config) if isinstance(config, dict) else load_yaml(config)
    data = apply_overrides(data, list(overrides))
    allowed = ("strategy", "total", "temperature", "seed", "shuffle", "tokenizer", "datasets")
    for k in data:
        if k not in allowed:
            raise ConfigError(f"unknown field{suggest(k, list(allowed))}", file=where, field=k)
    if not data.get("datasets"):
        raise ConfigError("list the datasets to mix under 'datasets'", file=where, field="datasets")
    return mix(data["datasets"], out_dir, strategy=data.get("strategy", "concat"), total=data.get("total"),
               temperature=float(data.get("temperature", 1.0)), seed=int(data.get("seed", 0)),
               catalogue=load_catalogue(catalogue_paths), tokenizer=data.get("tokenizer"),
               shuffle=bool(data.get("shuffle", False)))


def budget_recipe(out_dir: str | os.PathLike, *, languages: Sequence[str] | None = None,
                  dataset_pattern: str = "polyinstruct-instruct-{lang}", english: str = "en",
                  downsample_by: str = "examples", seed: int = 0, tokenizer: Any = None,
                  catalogue_paths: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Build and write the four budget arms (seed 1) from per-language datasets.

    ``dataset_pattern`` names each language's dataset (catalogue name or path)
    with ``{lang}``; the default uses the embedded parallel instructions.
    Returns ``budget.json``'s content; ``table`` holds the printable report.
    """
    from polyinstruct.data import embedded, load_dataset
    from polyinstruct.data.recipes import build_budget_arms, write_budget_arms
    from polyinstruct.data.tokens import make_counter

    langs = list(languages or embedded.instruction_languages())
    if not langs:
        raise RecordError("missing-file", "no languages given and no embedded instruction data found")
    from polyinstruct.lang.codes import language_code_problem

    for code in langs:  # before any file is read or named after it
        if language_code_problem(code):
            raise RecordError("bad-language", language_code_problem(code) or "", field="languages")
    cat = load_catalogue(catalogue_paths)
    per = {lang: list(load_dataset(dataset_pattern.format(lang=lang), catalogue=cat, language=lang))
           for lang in langs}
    arms = build_budget_arms(per, english=english, downsample_by=downsample_by, seed=seed,
                             token_counter=make_counter(tokenizer))
    report = write_budget_arms(arms, out_dir, seed=seed, downsample_by=downsample_by)
    report["table"] = arms.format_budget()
    return report


def crosslingual_recipe(lang: str, out: str | os.PathLike, *, seed: int = 0, include_general: bool = True) -> dict[str, Any]:
    """Write x-LLaMA-style cross-lingual data for ``lang`` from the embedded sets (seed 4)."""
    from collections import Counter

    from polyinstruct.data.crosslingual import coit_dataset

    records = coit_dataset(lang, seed=seed, include_general=include_general)
    n = write_records(records, out)
    kinds = Counter("translation" if "translation" in r.tags else "cross-lingual" if "cross-lingual" in r.tags
                    else "instruction" for r in records)
    return {"output": str(out), "records": n, "kinds": dict(kinds)}


def chunk_file(src: str | os.PathLike, dst: str | os.PathLike, max_tokens: int = 2048, *,
               tokenizer: Any = None, format: str | None = None) -> dict[str, Any]:
    """Split long conversations at turn boundaries (ShareGPT handling) and write the chunks."""
    from polyinstruct.data.chunking import chunk_conversations
    from polyinstruct.data.tokens import make_counter

    stream = read_records(src, format)
    n = write_records(chunk_conversations(stream, max_tokens, make_counter(tokenizer)), dst)
    return {"input": str(src), "output": str(dst), "records_in": stream.read, "records_out": n}


def clean_file(src: str | os.PathLike, dst: str | os.PathLike, *, dedup: str | None = "exact",
               min_completion: int = 1, max_total: int | None = None, tokenizer: Any = None,
               format: str | None = None) -> dict[str, Any]:
    """Deduplicate (``exact``/``normalized``/None) and length-filter a file; report counts per reason."""
    from polyinstruct.data.cleaning import CleanReport, deduplicate, length_filter

    dedup_rep, len_rep = CleanReport(), CleanReport()
    records = read_records(src, format)
    stream = deduplicate(records, dedup, dedup_rep) if dedup else records
    stream = length_filter(stream, min_completion=min_completion, max_total=max_total, tokenizer=tokenizer,
                           report=len_rep)
    n = write_records(stream, dst)
    removed = dict(dedup_rep.removed + len_rep.removed)
    return {"input": str(src), "output": str(dst), "records_in": records.read, "records_out": n, "removed": removed}
