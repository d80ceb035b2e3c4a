"""Where the cells of an experiment grid run: in this process (``local``), as Ray tasks
(``ray``) or as a Slurm job array through submitit (``slurm``); docs/clusters.md.

Every executor runs the same function, :func:`run_cell_task`, once per unfinished cell. It
works only through the experiment folder (a shared filesystem on a cluster), so the layout of
``cells/<name>/`` is the same whichever executor ran it. The engines schedule, place and retry
(Ray's ``max_retries``, Slurm's requeue through submitit); polyinstruct adds only

- a claim per cell (``cells/<name>/claim.json``, created with ``O_EXCL``) so two grid runs never
  work on one cell at once, and the ``done.json`` marker so a finished cell never runs again;
- resumption: a retried cell continues from its training checkpoint and finished stages;
- multi-process cells: with ``executor.processes`` > 1 the cell's training is launched with
  ``accelerate launch`` (its DDP, DeepSpeed or FSDP config); predicting and scoring stay in the
  one cell process, i.e. rank 0 only.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from polyinstruct.errors import PolyinstructError
from polyinstruct.experiment.cell import (CLAIM_FILE, CellBusyError, CellOutcome, claim,  # noqa: F401 - re-exported
                                          launch_training, run_cell_task)
from polyinstruct.experiment.config import EXECUTORS, CellResources, ExecutorSettings, SlurmSettings  # noqa: F401

Say = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# executors


class Executor:
    """Runs ``run_cell_task`` for each cell; returns the outcomes in completion order."""

    name = "base"

    def __init__(self, settings: ExecutorSettings):
        self.settings = settings

    def run(self, cfg_data: dict[str, Any], root: Path, cells: list[str], model_path: str, run_id: str,
            say: Say, progress: bool) -> list[dict[str, Any]]:
        raise NotImplementedError


class LocalExecutor(Executor):
    """One cell after another in this process (a failed cell stops the grid; rerun to resume)."""

    name = "local"

    def run(self, cfg_data, root, cells, model_path, run_id, say, progress):
        out = []
        for i, name in enumerate(cells, 1):
            say(f"[{i}/{len(cells)}] {name}")
            out.append(run_cell_task(cfg_data, str(root), name, model_path, run_id, progress,
                                     clock=getattr(say, "t0", None)))
        return out


class _Grid:
    """The one progress view of a parallel grid: a line whenever a cell starts, finishes or fails."""

    def __init__(self, cells: list[str], say: Say, where: str):
        self.cells, self.say, self.done, self.t0 = cells, say, 0, time.monotonic()
        say(f"[grid] {len(cells)} cells on {where}")

    def finished(self, outcome: dict[str, Any], running: int) -> None:
        self.done += 1
        self.say(f"[{self.done}/{len(self.cells)}] {outcome['cell']}: {outcome['status']} in {outcome['seconds']} s "
                 f"on {outcome['host']} ({running} running, {len(self.cells) - self.done - running} waiting)")

    def failed(self, cell: str, err: BaseException) -> None:
        last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        self.say(f"[grid] {cell}: failed after retries: {last}")


def _raise_failures(failures: dict[str, BaseException], executor: str) -> None:
    if failures:
        first = next(iter(failures.values()))
        raise PolyinstructError(f"{len(failures)} cell(s) failed on {executor} after retries: "
                                f"{', '.join(failures)}; rerun to resume them. First error: {first}")


class RayExecutor(Executor):
    """Each cell is a Ray task asking for the cell's resources; Ray places it on a worker and
    retries it (``max_retries``, also on application errors) when its worker dies or it fails."""

    name = "ray"

    def run(self, cfg_data, root, cells, model_path, run_id, say, progress):
        try:
            import ray
        except ImportError:
            raise PolyinstructError("executor ray needs Ray: pip install 'polyinstruct[ray]'") from None
        s = self.settings
        started_here = False
        if not ray.is_initialized():
            if s.address:
                ray.init(address=s.address, log_to_driver=progress)
            else:
                ray.init(num_cpus=s.workers or os.cpu_count(), include_dashboard=False, log_to_driver=progress)
                started_here = True
        opts: dict[str, Any] = {"num_cpus": s.resources.cpus, "num_gpus": s.resources.gpus,
                                "max_retries": s.max_retries, "retry_exceptions": True}
        if s.resources.memory_gb:
            opts["memory"] = int(s.resources.memory_gb * 2**30)
        task = ray.remote(**opts)(run_cell_task)
        grid = _Grid(cells, say, f"Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
                                f"{ray.cluster_resources().get('GPU', 0):g} GPUs)")
        pending = {task.remote(cfg_data, str(root), c, model_path, run_id, False): c for c in cells}
        out, failures = [], {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ready[0])
                try:
                    res = ray.get(ready[0])
                except Exception as e:  # RayTaskError / WorkerCrashedError after the retries
                    failures[cell] = e
                    grid.failed(cell, e)
                    continue
                out.append(res)
                grid.finished(res, min(len(pending), int(ray.cluster_resources().get("CPU", 1)
                                                         // max(1, s.resources.cpus))))
        finally:
            if started_here:
                ray.shutdown()
        _raise_failures(failures, "ray")
        return out


class _SlurmCell:
    """A submitit callable: on timeout or preemption submitit requeues it (``checkpoint``) and
    the requeued job resumes the cell from its checkpoint."""

    def __init__(self, *args: Any):
        self.args = args

    def __call__(self) -> dict[str, Any]:
        return run_cell_task(*self.args)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(_SlurmCell(*self.args))


class SlurmExecutor(Executor):
    """All cells as one Slurm job array through submitit; a job that times out or is preempted
    is requeued by submitit, a failed one resubmitted up to ``max_retries`` times."""

    name = "slurm"

    def executor(self, root: Path):
        try:
            import submitit
        except ImportError:
            raise PolyinstructError("executor slurm needs submitit: pip install 'polyinstruct[slurm]'") from None
        s, r = self.settings.slurm, self.settings.resources
        folder = Path(s.folder) if s.folder else root / "slurm"
        try:
            ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=s.cluster)
        except RuntimeError as e:  # "Could not detect srun": not on a Slurm cluster
            raise PolyinstructError(f"executor slurm: {e} (executor.slurm.cluster: local runs the jobs on this "
                                    "machine through submitit)") from None
        params: dict[str, Any] = {"timeout_min": s.time_min, "cpus_per_task": r.cpus, "nodes": 1,
                                  "tasks_per_node": 1, "name": f"polyinstruct-{root.name}"}
        if r.gpus:
            params["gpus_per_node"] = r.gpus
        if r.memory_gb:
            params["mem_gb"] = r.memory_gb
        if s.cluster == "slurm":
            if s.partition:
                params["slurm_partition"] = s.partition
            if s.account:
                params["slurm_account"] = s.account
            if s.max_parallel:
                params["slurm_array_parallelism"] = s.max_parallel
            if s.setup:
                params["slurm_setup"] = list(s.setup)
            if s.additional:
                params["slurm_additional_parameters"] = dict(s.additional)
        ex.update_parameters(**params)
        return ex

    def submit(self, ex, cfg_data, root, cells, model_path, run_id) -> list:
        with ex.batch():
            jobs = [ex.submit(_SlurmCell(cfg_data, str(root), c, model_path, run_id, False)) for c in cells]
        return jobs

    def run(self, cfg_data, root, cells, model_path, run_id, say, progress):
        ex = self.executor(root)
        jobs = dict(zip(cells, self.submit(ex, cfg_data, root, cells, model_path, run_id)))
        grid = _Grid(cells, say, f"Slurm ({self.settings.slurm.cluster}), jobs "
                                 f"{', '.join(j.job_id for j in jobs.values())}")
        tries = {c: 0 for c in cells}
        out, failures = [], {}
        while jobs:
            for cell, job in list(jobs.items()):
                if not job.done():
                    continue
                del jobs[cell]
                try:
                    res = job.result()
                except Exception as e:  # failed (not requeued): submit again, it resumes
                    if tries[cell] < self.settings.max_retries:
                        tries[cell] += 1
                        say(f"[grid] {cell}: job {job.job_id} failed; resubmitting (retry {tries[cell]})")
                        jobs[cell] = ex.submit(_SlurmCell(cfg_data, str(root), cell, model_path, run_id, False))
                    else:
                        failures[cell] = e
                        grid.failed(cell, e)
                    continue
                out.append(res)
                grid.finished(res, sum(1 for j in jobs.values() if j.state in ("RUNNING", "COMPLETING")))
            if jobs:
                time.sleep(self.settings.slurm.poll_s)
        _raise_failures(failures, "slurm")
        return out


def get_executor(settings: ExecutorSettings) -> Executor:
    return EXECUTORS.get(settings.name)(settings)


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
