"""Dataset mixtures: concatenation, weighted sampling, caps and language temperature.

``mix`` reads each component twice (first only lengths and languages, then the
chosen records), so memory holds two small integers per source record, not the
records, unless ``shuffle=True``. The output folder gets ``data.jsonl`` and a
``manifest.json`` (sources, counts, seed, content hashes) so a run can prove
which data it saw.

Strategies:
- ``concat``: every (capped) component in order: Tulu's mixtures.
- ``examples``: ``total`` examples split by ``weight``.
- ``tokens``: ``total`` content tokens split by ``weight``.
- ``languages``: ``total`` examples split over languages with probability
  proportional to ``n_lang ** (1 / temperature)`` (1 = proportional, large =
  uniform), the XLM/mT5 recipe.
A component asked for more than it holds is repeated whole, then sampled for
the rest (upsampling), and the manifest records it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from polyinstruct.data.records import Conversation
from polyinstruct.data.tokens import conversation_tokens, make_counter
from polyinstruct.errors import ConfigError
from polyinstruct.fileio import sha256_file, write_json

STRATEGIES = ("concat", "examples", "tokens", "languages")


@dataclass
class MixComponent:
    """One source of a mixture: a catalogue name or a path, with weight and optional cap."""

    dataset: str
    weight: float = 1.0
    cap: int | None = None
    format: str | None = None


def _open(comp: MixComponent, catalogue: Any, tokenizer: Any = None) -> Iterator[Conversation]:
    from polyinstruct.data import load_dataset

    # the tokenizer also sizes a catalogue mixture's chunks (Tulu's 2,048-token ShareGPT chunks)
    return load_dataset(comp.dataset, catalogue=catalogue, format=comp.format, tokenizer=tokenizer)


def _repeat_sample(indices: list[int], k: int, rng: random.Random) -> list[int]:
    """``k`` picks from ``indices``: whole copies while k exceeds the pool, then a random subset."""
    if not indices or k <= 0:
        return []
    full, rest = divmod(k, len(indices))
    return indices * full + rng.sample(indices, rest)


def _take_tokens(indices: list[int], lengths: list[int], target: int, rng: random.Random) -> list[int]:
    """Random records whose lengths add up to just under ``target`` (repeating the pool if needed)."""
    out, total = [], 0
    if not indices:
        return out
    pool_tokens = sum(lengths[i] for i in indices)
    while pool_tokens and target - total >= pool_tokens:
        out += indices
        total += pool_tokens
    order = indices[:]
    rng.shuffle(order)
    for i in order:
        if total + lengths[i] <= target:
            out.append(i)
            total += lengths[i]
    return out


def _normalize(components: Sequence[MixComponent | dict | str]) -> list[MixComponent]:
    out = []
    for i, c in enumerate(components):
        if isinstance(c, MixComponent):
            out.append(c)
        elif isinstance(c, str):
            out.append(MixComponent(c))
        elif isinstance(c, dict):
            d = dict(c)
            if "name" in d:
                d["dataset"] = d.pop("name")
            unknown = set(d) - {"dataset", "weight", "cap", "format"}
            if unknown or "dataset" not in d:
                raise ConfigError(f"a component needs 'name' and may have weight, cap, format (got {sorted(c)})",
                                  field=f"datasets[{i}]")
            out.append(MixComponent(**d))
        else:
            raise ConfigError("a component is a name or a mapping", field=f"datasets[{i}]")
        if out[-1].weight < 0 or (out[-1].cap is not None and out[-1].cap < 0):
            raise ConfigError("weight and cap must not be negative", field=f"datasets[{i}]")
    return out


def mix(components: Sequence[MixComponent | dict | str], out_dir: str | os.PathLike, *, strategy: str = "concat",
        total: int | None = None, temperature: float = 1.0, seed: int = 0, catalogue: Any = None,
        tokenizer: Any = None, shuffle: bool = False) -> dict[str, Any]:
    """Materialize a mixture into ``out_dir/data.jsonl`` + ``out_dir/manifest.json``; returns the manifest."""
    from polyinstruct.data.formats import write_records

    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}", field="strategy")
    if strategy in ("examples", "tokens") and not total:
        raise ConfigError(f"strategy {strategy!r} needs total (examples or tokens)", field="total")
    if temperature <= 0:
        raise ConfigError("temperature must be positive", field="temperature")
    comps = _normalize(components)
    if not comps:
        raise ConfigError("no datasets to mix", field="datasets")
    count = make_counter(tokenizer)
    rng = random.Random(seed)

    # Pass 1: lengths, languages and a content hash per source.
    infos = []
    for c in comps:
        lengths, langs, h = [], [], hashlib.sha256()
        for conv in _open(c, catalogue, tokenizer):
            lengths.append(conversation_tokens(conv, count))
            langs.append(conv.language or "unknown")
            h.update(json.dumps(conv.to_dict(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
            h.update(b"\n")
        pool = list(range(len(lengths)))
        if c.cap is not None and c.cap < len(pool):
            pool = sorted(rng.sample(pool, c.cap))
        infos.append({"lengths": lengths, "langs": langs, "pool": pool, "sha256": h.hexdigest()})

    weights = [c.weight for c in comps]
    wsum = sum(weights) or 1.0
    picks: list[list[int]] = []
    if strategy == "concat":
        picks = [info["pool"] for info in infos]
    elif strategy == "examples":
        targets = _largest_remainder([total * w / wsum for w in weights])
        picks = [sorted(_repeat_sample(info["pool"], t, rng)) for info, t in zip(infos, targets)]
    elif strategy == "tokens":
        picks = [sorted(_take_tokens(info["pool"], info["lengths"], int(total * w / wsum), rng))
                 for info, w in zip(infos, weights)]
    else:  # languages
        by_lang: dict[str, list[tuple[int, int]]] = {}
        for ci, info in enumerate(infos):
            for i in info["pool"]:
                by_lang.setdefault(info["langs"][i], []).append((ci, i))
        sizes = {lang: len(v) for lang, v in sorted(by_lang.items())}
        n_total = total or sum(sizes.values())
        probs = {lang: n ** (1.0 / temperature) for lang, n in sizes.items()}
        z = sum(probs.values())
        targets = dict(zip(sizes, _largest_remainder([n_total * p / z for p in probs.values()])))
        picks = [[] for _ in comps]
        for lang, members in by_lang.items():
            for ci, i in _repeat_sample(members, targets[lang], rng):
                picks[ci].append(i)
        picks = [sorted(p) for p in picks]

    # Pass 2: stream the chosen records (a record picked k times is written k times).
    out_dir = Path(out_dir)
    manifest_sources = []
    langs_out: Counter[str] = Counter()
    tokens_out = 0

    def chosen() -> Iterator[Conversation]:
        nonlocal tokens_out
        for c, info, pick in zip(comps, infos, picks):
            times = Counter(pick)
            for i, conv in enumerate(_open(c, catalogue, tokenizer)):
                for _ in range(times.get(i, 0)):
                    langs_out[conv.language or "unknown"] += 1
                    tokens_out += info["lengths"][i]
                    yield conv
            manifest_sources.append({
                **asdict(c), "available": len(info["lengths"]), "after_cap": len(info["pool"]),
                "selected": len(pick), "unique_selected": len(times),
                "tokens": sum(info["lengths"][i] for i in pick), "sha256": info["sha256"]})

    data_path = out_dir / "data.jsonl"
    if shuffle:
        records = list(chosen())
        random.Random(seed + 1).shuffle(records)
        n = write_records(records, data_path)
    else:
        n = write_records(chosen(), data_path)
    manifest = {
        "strategy": strategy, "seed": seed, "total": total, "temperature": temperature, "shuffle": shuffle,
        "unit": count.unit, "output": {"path": data_path.name, "records": n, "tokens": tokens_out,
                                       "sha256": _file_sha256(data_path)},
        "languages": dict(sorted(langs_out.items())), "sources": manifest_sources}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def _largest_remainder(shares: list[float]) -> list[int]:
    """Round shares to integers that add up to round(sum(shares))."""
    floors = [int(s) for s in shares]
    left = round(sum(shares)) - sum(floors)
    for i in sorted(range(len(shares)), key=lambda i: shares[i] - floors[i], reverse=True)[:max(left, 0)]:
        floors[i] += 1
    return floors


def _file_sha256(path: Path) -> str:
    return sha256_file(path)
