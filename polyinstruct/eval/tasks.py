"""The task and suite registries, and the context a task's configs are built in.

See the package docstring (``polyinstruct/eval/__init__.py``) for how to add a task or a suite.
"""

from __future__ import annotations

import copy
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from polyinstruct.errors import ConfigError, MissingDependencyError, UnknownNameError
from polyinstruct.eval.data import BuildContext  # noqa: F401 - defined with the data it locates; re-exported
from polyinstruct.registry import Registry, suggest

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'polyinstruct[eval]' (EleutherAI lm-evaluation-harness)"

# Suite modules register their tasks and suites on import (the first time a task is resolved or
# listed). A module that fails to import is a packaging mistake and fails loudly, never a
# silently missing suite.
SUITE_MODULES = [
    "polyinstruct.eval.suites.tulu",
    "polyinstruct.eval.humaneval",
    "polyinstruct.eval.suites.crosslingual",
    "polyinstruct.eval.suites.alpaca_cot",
    "polyinstruct.eval.suites.multilingual",
]


@dataclass
class EvalTask:
    """One benchmark setting (e.g. GSM8K with chain of thought), run as one or more lm-eval tasks."""

    name: str
    benchmark: str
    setting: str
    build: Callable[["BuildContext"], list[dict[str, Any]]]
    metric: str = "acc"
    metric_filter: str = "none"
    also: tuple[str, ...] = ()          # metrics reported beside ``metric`` (e.g. exact_match_strict)
    aggregate: str = "macro"            # "micro" (item-weighted) or "macro" (equal weight per subtask)
    sources: tuple[str, ...] = ()       # DataSource names (docs/evaluation.md lists their layouts)
    higher_is_better: bool = True
    in_average: bool = True             # counted in the suite's equal-weight average
    postprocess: Callable[[dict[str, list[dict]], "BuildContext"], dict[str, dict[str, float]]] | None = None
    check: Callable[["BuildContext"], None] | None = None  # fail early (a classifier, a judge) before generating
    description: str = ""

    def __post_init__(self):
        if self.aggregate not in ("micro", "macro"):
            raise ValueError(f"task {self.name}: aggregate must be micro or macro, got {self.aggregate!r}")


@dataclass
class Suite:
    name: str
    tasks: list[str]
    description: str = ""


TASKS: Registry[EvalTask] = Registry("eval task")
SUITES: Registry[Suite] = Registry("eval suite")

_loaded = False


def load_suites() -> None:
    """Import every suite module (idempotent); an import error propagates."""
    global _loaded
    if _loaded:
        return
    for name in SUITE_MODULES:
        importlib.import_module(name)
    _loaded = True


def resolve_tasks(spec: str | list[str]) -> tuple[list[EvalTask], list[str]]:
    """Comma-separated suite and task names -> (tasks in order, names of suite tasks not available).

    An unknown name fails with a did-you-mean over suites and tasks together. A suite member
    that no module of this checkout registers is returned in the second list, never silently.
    """
    load_suites()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if not names:
        raise ConfigError("no tasks given", field="--tasks")
    out: list[EvalTask] = []
    missing: list[str] = []
    for n in names:
        if n in SUITES:
            for t in SUITES.get(n).tasks:
                if t in TASKS:
                    out.append(TASKS.get(t))
                else:
                    missing.append(t)
        elif n in TASKS:
            out.append(TASKS.get(n))
        else:
            known = SUITES.names() + TASKS.names()
            raise UnknownNameError(f"unknown eval task or suite {n!r}.{suggest(n, known)} "
                                   f"Suites: {', '.join(SUITES.names())}; `polyinstruct eval --list` shows the tasks")
    seen: set[str] = set()
    uniq = [t for t in out if not (t.name in seen or seen.add(t.name))]
    return uniq, list(dict.fromkeys(missing))


# -- lm-eval configs ---------------------------------------------------------------------------

_managers: dict[str, Any] = {}


def task_manager(folder: str | None = None):
    """An lm-eval TaskManager indexing ``folder`` of lm-eval's bundled tasks (e.g. "gsm8k",
    "mmlu/default"); "" indexes nothing (enough to run inline configs); None indexes everything
    (about 15,000 configs: seconds to minutes, so tasks name their folder)."""
    key = "*" if folder is None else folder
    if key not in _managers:
        try:
            import lm_eval
            from lm_eval.tasks import TaskManager
        except ImportError as e:
            raise MissingDependencyError(f"polyinstruct eval needs lm-eval: {INSTALL_HINT} ({e})") from None
        if folder is None:
            _managers[key] = TaskManager()
        else:
            paths = [Path(lm_eval.__file__).parent / "tasks" / folder] if folder else []
            _managers[key] = TaskManager(include_defaults=False, include_path=paths or None)
    return _managers[key]


def lm_eval_config(name: str, folder: str | None = None) -> dict[str, Any]:
    """lm-eval's bundled config of task ``name`` (found under ``folder`` of lm-eval's tasks when
    given), includes resolved: a fresh copy to edit."""
    from lm_eval.tasks._yaml_loader import load_yaml

    tm = task_manager(folder)
    entry = tm.task_index.get(name)
    if entry is None or entry.yaml_path is None:
        raise UnknownNameError(f"lm-eval has no task {name!r}.{suggest(name, tm.all_subtasks)}")
    cfg = copy.deepcopy(load_yaml(entry.yaml_path, resolve_func=True))
    for key in ("tag", "group", "task_list"):
        cfg.pop(key, None)
    return cfg


def lm_eval_group_tasks(group: str, folder: str | None = None) -> list[str]:
    """Subtask names of an lm-eval group (recursively), in lm-eval's order."""
    from lm_eval.tasks._yaml_loader import load_yaml

    tm = task_manager(folder)
    entry = tm.task_index.get(group)
    if entry is None or entry.yaml_path is None:
        raise UnknownNameError(f"lm-eval has no group {group!r}.{suggest(group, tm.all_groups)}")
    cfg = load_yaml(entry.yaml_path, resolve_func=False)
    out: list[str] = []
    for item in cfg.get("task", []):
        name = item if isinstance(item, str) else item.get("task") or item.get("group")
        if name in tm.all_groups:
            out.extend(lm_eval_group_tasks(name, folder))
        elif name in tm.all_tags:
            out.extend(sorted(k for k, e in tm.task_index.items()
                              if e.yaml_path and name in (e.tags or set()) and k in tm.all_subtasks))
        else:
            out.append(name)
    return out
