"""The dataset catalogue: YAML files mapping a name to a location and its description.

Built-in files live in ``polyinstruct/resources/catalogue/*.yaml``; users add
their own with ``load_catalogue(extra_paths=...)``, ``--catalogue FILE`` or the
``POLYINSTRUCT_CATALOGUE`` variable (files or folders, ``os.pathsep``-separated).
A later file overrides an earlier entry of the same name. Relative paths in a
file are relative to that file. One entry::

    my-alpaca-fr:
      path: data/alpaca_fr.jsonl     # or glob: ..., hub: org/name, embedded: ..., combine: [a, b]
      format: alpaca                 # optional: detected from the fields when absent
      languages: [fr]
      task_type: multi-task          # multi-task | task-specific
      generation: self-instruct      # human | self-instruct | mixed | collection
      license: CC-BY-NC-4.0
      size: 52002

A *mixture* is an entry whose location is a list of components, read one after
another (Tulu's mixtures: ``resources/catalogue/mixtures.yaml``)::

    tulu-human:
      mixture:
        - {name: flan-v2, cap: 100000}   # a seeded random subset of 100,000 records, in file order
        - dolly
        - {name: sharegpt, chunk_tokens: 2048}  # split at turn boundaries, in training-tokenizer tokens
      seed: 42

``chunk_tokens`` counts tokens of the tokenizer passed to ``load_dataset(...,
tokenizer=...)`` (training passes its own); without one it counts words and
logs a warning. Hub entries may name ``data_files`` inside the Hub repository.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from polyinstruct.data.records import Conversation
from polyinstruct.errors import ConfigError, DataError, UnknownNameError
from polyinstruct.lang.codes import language_code_problem
from polyinstruct.registry import suggest
from polyinstruct.yamlio import load_yaml

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "resources" / "catalogue"
ENV_VAR = "POLYINSTRUCT_CATALOGUE"
TASK_TYPES = ("multi-task", "task-specific")
GENERATION = ("human", "self-instruct", "mixed", "collection", "machine-translated")
LOCATIONS = ("path", "glob", "hub", "embedded", "combine", "mixture")
_FIELDS = LOCATIONS + ("format", "languages", "task_type", "generation", "license", "size", "split", "subset",
                       "description", "tags", "cap", "data_files", "seed")
_COMPONENT_FIELDS = ("name", "cap", "chunk_tokens", "format")


@dataclass
class CatalogueEntry:
    """One named dataset. Exactly one of path / glob / hub / embedded / combine is set."""

    name: str
    path: str | None = None
    glob: str | None = None
    hub: str | None = None
    embedded: str | None = None  # "instructions[/LANG]", "eval[/LANG]", "parallel/LANG"
    combine: list[str] = field(default_factory=list)
    mixture: list[dict[str, Any]] = field(default_factory=list)  # [{name, cap?, chunk_tokens?, format?}]
    format: str | None = None
    languages: list[str] = field(default_factory=list)
    task_type: str | None = None
    generation: str | None = None
    license: str | None = None
    size: int | str | None = None
    split: str | None = None
    subset: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    cap: int | None = None
    data_files: str | list[str] | None = None  # hub only: files inside the repository
    seed: int = 0  # mixtures: the seed of every cap's random subset
    file: str | None = None  # the catalogue file that defined it

    @property
    def location(self) -> str:
        if self.mixture:
            parts = []
            for c in self.mixture:
                opts = ([f"cap {c['cap']}"] if "cap" in c else []) + (
                    [f"chunks of {c['chunk_tokens']} tokens"] if "chunk_tokens" in c else [])
                parts.append(c["name"] + (f" ({', '.join(opts)})" if opts else ""))
            return "mixture:" + ", ".join(parts)
        for k in LOCATIONS:
            v = getattr(self, k)
            if v:
                return f"{k}:{','.join(v) if isinstance(v, list) else v}"
        return "?"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], "")}


def _parse_mixture(items: Any, where: str, name: str) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not items:
        raise ConfigError("mixture must be a non-empty list of dataset names or {name, cap, chunk_tokens}",
                          file=where, field=f"{name}.mixture")
    out = []
    for i, item in enumerate(items):
        at = f"{name}.mixture[{i}]"
        comp = {"name": item} if isinstance(item, str) else item
        if not isinstance(comp, dict) or not isinstance(comp.get("name"), str):
            raise ConfigError("a component is a dataset name or a mapping with 'name'", file=where, field=at)
        for k in comp:
            if k not in _COMPONENT_FIELDS:
                raise ConfigError(f"unknown field{suggest(str(k), list(_COMPONENT_FIELDS))}", file=where,
                                  field=f"{at}.{k}")
        for k in ("cap", "chunk_tokens"):
            v = comp.get(k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ConfigError(f"{k} must be a positive integer", file=where, field=f"{at}.{k}")
        out.append(dict(comp))
    return out


def _parse_entry(name: str, spec: Any, file: Path) -> CatalogueEntry:
    where = str(file)
    if not isinstance(spec, dict):
        raise ConfigError("entry must be a mapping", file=where, field=name)
    for k in spec:
        if k not in _FIELDS:
            raise ConfigError(f"unknown field{suggest(str(k), list(_FIELDS))}", file=where, field=f"{name}.{k}")
    locs = [k for k in LOCATIONS if spec.get(k)]
    if len(locs) != 1:
        raise ConfigError(f"give exactly one of {', '.join(LOCATIONS)} (got {', '.join(locs) or 'none'})",
                          file=where, field=name)
    if spec.get("task_type") and spec["task_type"] not in TASK_TYPES:
        raise ConfigError(f"task_type must be one of {', '.join(TASK_TYPES)}", file=where, field=f"{name}.task_type")
    if spec.get("generation") and spec["generation"] not in GENERATION:
        raise ConfigError(f"generation must be one of {', '.join(GENERATION)}", file=where, field=f"{name}.generation")
    if spec.get("format"):
        from polyinstruct.data.formats import get_format

        from polyinstruct.data.preference import PREFERENCE_FORMATS

        try:
            if spec["format"] not in PREFERENCE_FORMATS:  # preference sets name a preference reader
                get_format(spec["format"])
        except UnknownNameError as e:
            raise ConfigError(str(e), file=where, field=f"{name}.format") from None
    data = dict(spec)
    if "mixture" in data:
        data["mixture"] = _parse_mixture(data["mixture"], where, name)
    for k in ("cap", "seed"):
        if k in data and (not isinstance(data[k], int) or isinstance(data[k], bool) or data[k] < 0):
            raise ConfigError(f"{k} must be a non-negative integer", file=where, field=f"{name}.{k}")
    langs = data.get("languages") or []
    if not isinstance(langs, (str, list)):
        raise ConfigError("languages must be a list of language codes", file=where, field=f"{name}.languages")
    data["languages"] = [langs] if isinstance(langs, str) else list(langs)
    for i, code in enumerate(data["languages"]):
        problem = language_code_problem(code)
        if problem:
            raise ConfigError(problem, file=where, field=f"{name}.languages[{i}]")
    data["combine"] = list(data.get("combine") or [])
    data["tags"] = list(data.get("tags") or [])
    for k in ("path", "glob"):
        if data.get(k) and not os.path.isabs(os.path.expanduser(data[k])):
            data[k] = str(file.parent / data[k])
        elif data.get(k):
            data[k] = os.path.expanduser(data[k])
    return CatalogueEntry(name=str(name), file=where, **data)


class Catalogue:
    """Named datasets; ``get`` fails with the nearest names suggested."""

    def __init__(self, entries: Iterable[CatalogueEntry] = ()):
        self.entries: dict[str, CatalogueEntry] = {}
        for e in entries:
            self.entries[e.name] = e

    def add_file(self, path: str | os.PathLike) -> None:
        path = Path(path)
        data = load_yaml(path)
        datasets = data.get("datasets", data)
        if not isinstance(datasets, dict):
            raise ConfigError("'datasets' must map names to entries", file=str(path), field="datasets")
        for name, spec in datasets.items():
            self.entries[str(name)] = _parse_entry(str(name), spec, path)

    def get(self, name: str) -> CatalogueEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownNameError(f"unknown dataset {name!r}.{suggest(name, self.names())} "
                                   f"See `polyinstruct data list`.") from None

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        return sorted(self.entries)

    def open(self, name: str, **read_kwargs: Any) -> Iterator[Conversation]:
        """Stream the records of a named dataset (``tokenizer=`` is used by mixtures' ``chunk_tokens``)."""
        return open_entry(self.get(name), self, **read_kwargs)

    def check_mixtures(self) -> None:
        """Every mixture component names a known entry, and no mixture contains itself."""
        for entry in self.entries.values():
            stack = [(entry.name, c["name"]) for c in entry.mixture]
            seen = {entry.name}
            while stack:
                parent, child = stack.pop()
                if child not in self.entries:
                    raise ConfigError(f"mixture component {child!r} of {parent!r} is not in the catalogue."
                                      f"{suggest(child, self.names())}", file=entry.file, field=f"{entry.name}.mixture")
                if child in seen:
                    raise ConfigError(f"mixture {entry.name!r} contains itself (through {parent!r})",
                                      file=entry.file, field=f"{entry.name}.mixture")
                seen.add(child)
                stack.extend((child, c["name"]) for c in self.entries[child].mixture)


def _expand(paths: Iterable[str | os.PathLike]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(os.path.expanduser(str(p)))
        if p.is_dir():
            out += sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml")))
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError("catalogue file not found", file=str(p))
    return out


def load_catalogue(extra_paths: Iterable[str | os.PathLike] = ()) -> Catalogue:
    """Built-in entries, then ``$POLYINSTRUCT_CATALOGUE``, then ``extra_paths`` (later wins)."""
    cat = Catalogue()
    env = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    for f in _expand([BUILTIN_DIR]) + _expand(env) + _expand(extra_paths):
        cat.add_file(f)
    cat.check_mixtures()
    return cat


def open_entry(entry: CatalogueEntry, catalogue: Catalogue | None = None, **read_kwargs: Any) -> Iterator[Conversation]:
    from polyinstruct.data import embedded as emb
    from polyinstruct.data.formats import read_records

    lang = entry.languages[0] if len(entry.languages) == 1 else None
    fmt = read_kwargs.pop("format", None) or entry.format
    tokenizer = read_kwargs.pop("tokenizer", None)
    if entry.mixture:
        return _open_mixture(entry, catalogue or load_catalogue(), tokenizer, read_kwargs)
    if entry.combine:
        cat = catalogue or load_catalogue()
        if fmt:
            read_kwargs["format"] = fmt
        return (r for part in entry.combine for r in cat.open(part, **read_kwargs))
    if entry.path or entry.glob:
        kwargs = {"source": entry.name, "language": lang, **read_kwargs}
        return read_records(entry.path or entry.glob, fmt, **kwargs)
    if entry.embedded:
        kind, _, code = entry.embedded.partition("/")
        if kind == "instructions":
            codes = [code] if code else emb.instruction_languages()
            return (r for c in codes for r in emb.load_instructions(c))
        if kind == "eval":
            codes = [code] if code else emb.eval_languages()
            return (r for c in codes for r in emb.load_eval_prompts(c))
        if kind == "parallel":
            from polyinstruct.data.crosslingual import translation_instructions

            return iter(translation_instructions(emb.load_parallel_pairs(code), code, source=entry.name))
        raise ConfigError(f"unknown embedded set {entry.embedded!r}", file=entry.file, field=f"{entry.name}.embedded")
    return _open_hub(entry, lang, fmt, **read_kwargs)


def _open_mixture(entry: CatalogueEntry, cat: Catalogue, tokenizer: Any,
                  read_kwargs: dict[str, Any]) -> Iterator[Conversation]:
    """Components one after another: capped ones as a seeded random subset (in order), chunked ones split."""
    from polyinstruct.data.chunking import chunk_conversations
    from polyinstruct.data.tokens import make_counter

    counter = None
    for i, comp in enumerate(entry.mixture):
        kwargs = dict(read_kwargs, tokenizer=tokenizer)
        if comp.get("format"):
            kwargs["format"] = comp["format"]

        def stream() -> Iterator[Conversation]:
            return cat.open(comp["name"], **kwargs)
        records: Iterator[Conversation] = stream()
        cap = comp.get("cap")
        if cap is not None:
            n = sum(1 for _ in records)  # first pass: how many there are
            keep = set(random.Random(f"{entry.seed}:{entry.name}:{i}").sample(range(n), cap)) if cap < n else None
            records = (r for k, r in enumerate(stream()) if keep is None or k in keep)
        if comp.get("chunk_tokens"):
            if counter is None:
                counter = make_counter(tokenizer)
                if counter.unit != "tokens":
                    log.warning("%s: chunking %s to %d words, not tokens: pass the training tokenizer "
                                "(load_dataset(..., tokenizer=...)) to count its tokens", entry.name, comp["name"],
                                comp["chunk_tokens"])
            records = chunk_conversations(records, comp["chunk_tokens"], counter)
        yield from records


def _open_hub(entry: CatalogueEntry, lang: str | None, fmt: str | None, **read_kwargs: Any) -> Iterator[Conversation]:
    """Hub datasets stream through ``datasets`` when online; offline this fails with what to do."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise DataError(f"{entry.name} is the Hub dataset {entry.hub!r} and the Hub is offline here; download its "
                        f"files and add a catalogue entry with `path:` (see docs/data.md)", path=entry.file)
    from datasets import load_dataset as hf_load

    from polyinstruct.data.formats import RecordStream
    from polyinstruct.data.sources import RawRow

    try:
        ds = hf_load(entry.hub, entry.subset, split=entry.split or "train", streaming=True,
                     data_files=entry.data_files)
    except Exception as e:  # network, auth, missing repo: all become one clear message
        raise DataError(f"cannot load Hub dataset {entry.hub!r}: {e}", path=entry.file, field=entry.name) from None
    rows = (RawRow(f"hub:{entry.hub}", i, dict(r)) for i, r in enumerate(ds, 1))
    kwargs = {"source": entry.name, "language": lang, **read_kwargs}
    return RecordStream(f"hub:{entry.hub}", fmt, kwargs.pop("on_error", "raise"), kwargs.pop("rejects_path", None),
                        kwargs.pop("source"), kwargs.pop("language"), raw_rows=rows, **kwargs)
