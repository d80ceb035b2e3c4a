"""Benchmark data without the hub: each dataset from ``--data-dir`` in its official layout.

A ``DataSource`` names a dataset, its hub id (used when online and no local copy is given),
the official files expected under ``DATA_DIR/NAME/`` and a converter to lm-eval's schema
(the hub dataset's columns). Converted copies are written once to ``OUT/_data/NAME/`` as
JSONL (one file per config and split) and lm-eval reads them with ``dataset_path: json``.

Order: a local copy under ``--data-dir`` wins; else the hub when it is reachable (no
``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE``); else one line naming what to fetch and where.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from polyinstruct.errors import DataError, PolyinstructError
from polyinstruct.fileio import iter_jsonl, write_json, write_jsonl
from polyinstruct.registry import Registry

log = logging.getLogger(__name__)


class MissingDatasetError(PolyinstructError):
    """A benchmark's data is neither under --data-dir nor reachable on the hub."""


# convert(local_dir) -> {config: {split: [rows]}}; config "" when the dataset has one.
Converter = Callable[[Path], dict[str, dict[str, list[dict[str, Any]]]]]


@dataclass
class DataSource:
    name: str
    hub: str | None             # hub dataset id (None: not on the hub)
    layout: str                 # the official files expected under DATA_DIR/NAME/
    fetch: str                  # where to get them
    convert: Converter
    hub_config: str | None = None


DATASOURCES: Registry[DataSource] = Registry("eval dataset")


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def missing_message(src: DataSource, data_dir: Path | None) -> str:
    where = f"{data_dir / src.name}/" if data_dir else f"--data-dir DIR, folder DIR/{src.name}/"
    hub = f" (or run online: hub dataset {src.hub})" if src.hub else ""
    return f"dataset {src.name} not found: fetch {src.layout} from {src.fetch} and put it in {where}{hub}"


def _signature(folder: Path) -> str:
    """Names, sizes and mtimes of the local files: a converted copy is redone when they change."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def check_sources(names: tuple[str, ...] | list[str], ctx: "BuildContext") -> None:
    """Fail with the one-line message before anything slow when a dataset is neither local nor reachable."""
    for name in names:
        src = DATASOURCES.get(name)
        if ctx.data_dir is not None and (ctx.data_dir / src.name).is_dir():
            continue
        if src.hub and not hub_offline():
            continue
        raise MissingDatasetError(missing_message(src, ctx.data_dir))


def local_copy(name: str, ctx: "BuildContext") -> dict[str, dict[str, Path]] | None:
    """{config: {split: converted JSONL path}} for a local copy, None when there is none."""
    src = DATASOURCES.get(name)
    if ctx.data_dir is None:
        return None
    folder = ctx.data_dir / src.name
    if not folder.is_dir():
        return None
    sig = _signature(folder)
    out = ctx.work_dir / src.name
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
            if m.get("signature") == sig:
                return {c: {s: out / p for s, p in splits.items()} for c, splits in m["files"].items()}
        except (OSError, ValueError, KeyError):
            pass
    log.info("converting %s from %s", src.name, folder)
    converted = src.convert(folder)
    if not converted or not any(rows for splits in converted.values() for rows in splits.values()):
        raise MissingDatasetError(f"{folder}: no items found; {missing_message(src, ctx.data_dir)}")
    files: dict[str, dict[str, str]] = {}
    for config, splits in converted.items():
        for split, rows in splits.items():
            rel = f"{config or 'default'}/{split}.jsonl"
            write_jsonl(out / rel, rows)
            files.setdefault(config, {})[split] = rel
    write_json(manifest, {"source": str(folder), "signature": sig, "files": files})
    return {c: {s: out / p for s, p in splits.items()} for c, splits in files.items()}


def apply_source(cfg: dict[str, Any], name: str, ctx: "BuildContext", *, config: str | None = None,
                 splits: dict[str, str] | None = None) -> dict[str, Any]:
    """Make lm-eval config ``cfg`` read ``name`` locally (or from the hub when allowed).

    ``splits`` maps the split names the config uses (``test_split`` etc. values) to the
    converted split names; by default each split keeps its name.
    """
    src = DATASOURCES.get(name)
    local = local_copy(name, ctx)
    if local is None:
        if hub_offline() or not src.hub:
            raise MissingDatasetError(missing_message(src, ctx.data_dir))
        if cfg.get("dataset_path") in (None, "json"):
            cfg["dataset_path"] = src.hub
            if config is not None:
                cfg["dataset_name"] = config
        return cfg
    key = config if config is not None else ""
    if key not in local:
        if len(local) == 1 and "" in local:
            key = ""
        else:
            raise MissingDatasetError(
                f"{ctx.data_dir / src.name}: no {config!r} part; found {', '.join(sorted(local)) or 'nothing'}. "
                f"{missing_message(src, ctx.data_dir)}")
    files = local[key]
    wanted = {}
    for field in ("training_split", "validation_split", "test_split", "fewshot_split"):
        split = cfg.get(field)
        if split:
            conv = (splits or {}).get(split, split)
            if conv not in files:
                if field in ("training_split", "validation_split") and field != _eval_field(cfg):
                    cfg[field] = None  # not needed (few-shot examples come from elsewhere)
                    continue
                raise MissingDatasetError(
                    f"{ctx.data_dir / src.name}: split {conv!r} missing for {config or src.name}; "
                    f"{missing_message(src, ctx.data_dir)}")
            wanted[split] = str(files[conv])
    cfg["dataset_path"] = "json"
    cfg["dataset_name"] = None
    cfg["dataset_kwargs"] = {"data_files": wanted}
    return cfg


def _eval_field(cfg: dict[str, Any]) -> str:
    if cfg.get("test_split"):
        return "test_split"
    if cfg.get("validation_split"):
        return "validation_split"
    return "training_split"


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", path=str(path)) from None
    except json.JSONDecodeError as e:
        raise DataError(f"not JSON: {e.msg}", path=str(path), line=e.lineno) from None


def read_jsonl_file(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file (the last one too, with or without a final newline)."""
    try:
        return list(iter_jsonl(path, complete_only=False))
    except OSError as e:
        raise DataError(f"cannot read: {e}", path=str(path)) from None


def squad_rows(path: Path) -> list[dict[str, Any]]:
    """SQuAD v1.1 JSON (data/paragraphs/qas/answers) -> rows in the hub datasets' schema."""
    data = read_json_file(path)
    rows = []
    try:
        for article in data["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    rows.append({"id": qa["id"], "title": article.get("title", ""), "context": para["context"],
                                 "question": qa["question"],
                                 "answers": {"text": [a["text"] for a in qa["answers"]],
                                             "answer_start": [a["answer_start"] for a in qa["answers"]]}})
    except (KeyError, TypeError) as e:
        raise DataError(f"not SQuAD-format JSON (data/paragraphs/qas/answers): missing {e}", path=str(path)) from None
    return rows


def require(row: dict[str, Any], fields: tuple[str, ...], path: Path, line: int | None) -> None:
    for f in fields:
        if f not in row:
            raise DataError(f"missing field {f!r}", path=str(path), line=line, field=f)


@dataclass
class BuildContext:
    """What a task's ``build`` needs: where data is and the run's options."""

    data_dir: Path | None
    work_dir: Path                      # OUT/_data: converted local copies live here
    limit: int | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)   # task options (--task-option KEY=VALUE)
    model: str = ""

    def use_data(self, cfg: dict[str, Any], source: str, *, config: str | None = None,
                 splits: dict[str, str] | None = None) -> dict[str, Any]:
        """Point an lm-eval config at the local copy of ``source`` (see polyinstruct.eval.data)."""
        return apply_source(cfg, source, self, config=config, splits=splits)
