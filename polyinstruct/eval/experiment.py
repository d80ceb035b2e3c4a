"""Benchmarks for every cell of an experiment grid (``eval.benchmarks`` in the experiment config).

After a cell is trained, predicted and scored, ``run_cell_benchmarks`` evaluates the cell's
model (the base model, or the cell's run dir in its own template) on the configured suites and
tasks into ``cells/CELL/benchmarks/`` (the ``polyinstruct eval`` output layout, resumable);
``polyinstruct report`` shows them per arm (polyinstruct.report.benchmarks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field


class BenchmarkSettings(BaseModel):
    """``eval.benchmarks``: what ``polyinstruct eval`` runs for every cell (docs/evaluation.md)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(..., min_length=1, description="suites and/or tasks, e.g. [tulu] or [tulu_gsm8k_cot]")
    data_dir: str | None = Field(None, description="datasets in their official layouts (relative to the YAML)")
    limit: int | None = Field(None, ge=1, description="first N items per (sub)task (smoke runs)")
    batch_size: int = Field(8, ge=1)
    chat: str = Field("auto", pattern="^(auto|on|off)$")
    task_options: dict[str, str] = Field(default_factory=dict, description="--task-option KEY=VALUE pairs")


def run_cell_benchmarks(settings: BenchmarkSettings, model: str, out: Path, *, label: str,
                        say: Callable[[str], None], template: str | None = None) -> dict[str, Any]:
    from polyinstruct.eval.run import evaluate

    say(f"  benchmarks {label}: {', '.join(settings.tasks)}")
    opts: dict[str, Any] = {"batch_size": settings.batch_size, "chat": settings.chat}
    if template is not None:
        opts["template"] = template
    return evaluate(model, settings.tasks, out=out, data_dir=settings.data_dir, limit=settings.limit,
                    backend_options=opts, task_options=dict(settings.task_options), model_name=label)
