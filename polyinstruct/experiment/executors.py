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

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from polyinstruct.errors import ConfigError, PolyinstructError
from polyinstruct.registry import Registry

CLAIM_FILE = "claim.json"


class CellResources(BaseModel):
    """What one cell asks of its executor (ignored by ``local``)."""

    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(0, ge=0, description="GPUs per cell (Ray num_gpus, Slurm gpus_per_node)")
    cpus: int = Field(1, ge=1, description="CPU cores per cell")
    memory_gb: float | None = Field(None, gt=0, description="memory per cell (Ray memory, Slurm --mem)")


class SlurmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    time_min: int = Field(240, ge=1, description="wall time per cell job; on timeout the job is requeued")
    max_parallel: int | None = Field(None, ge=1, description="at most this many array tasks at once")
    folder: str | None = Field(None, description="submitit logs and scripts (default: <output_dir>/slurm)")
    setup: list[str] = Field(default_factory=list, description="shell lines run before the cell (module load...)")
    additional: dict[str, Any] = Field(default_factory=dict, description="other #SBATCH options by name")
    cluster: Literal["slurm", "local"] = Field("slurm", description="local: submitit's local executor (tests)")
    poll_s: float = Field(5.0, gt=0, description="how often the grid's progress is refreshed")


class ExecutorSettings(BaseModel):
    """The ``executor:`` section of an experiment config (docs/clusters.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("local", description="local | ray | slurm (polyinstruct.experiment.executors.EXECUTORS)")
    resources: CellResources = Field(default_factory=CellResources)
    max_retries: int = Field(2, ge=0, description="retries of a failed or killed cell (each resumes)")
    processes: int | None = Field(None, ge=1, description="training processes per cell (default: the cell's "
                                  "GPUs if more than one, else 1 = in-process)")
    accelerate_config: str | None = Field(None, description="accelerate config for multi-process cells "
                                          "(DDP, DeepSpeed or FSDP; examples/train/accelerate_*.yaml)")
    address: str | None = Field(None, description="ray: an existing cluster ('auto', 'ray://host:10001'); "
                                "none: a local one started for the run")
    workers: int | None = Field(None, ge=1, description="ray, local cluster: CPUs it offers (cells at once)")
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from polyinstruct.errors import UnknownNameError

        try:
            EXECUTORS.get(name)
        except UnknownNameError as e:  # a ValueError for pydantic: the error names file and field
            raise ValueError(str(e)) from None
        return name

    def train_processes(self) -> int:
        return self.processes or (self.resources.gpus if self.resources.gpus > 1 else 1)


class CellOutcome(BaseModel):
    cell: str
    status: Literal["done", "skipped"]
    seconds: float = 0.0
    host: str = ""


Say = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# the one cell task every executor runs


def run_cell_task(cfg_data: dict[str, Any], root: str, cell_name: str, model_path: str, run_id: str,
                  progress: bool = False, clock: float | None = None) -> dict[str, Any]:
    """Run (or resume) one cell in ``root/cells/<cell_name>``; return a :class:`CellOutcome` dict.
    Safe to call again after a crash: a retry of the same grid run (same ``run_id``) takes over
    its own claim and resumes; a finished cell is skipped. ``clock``: the run's start
    (``time.monotonic`` in this process) so the cell's progress lines share the run's clock."""
    from polyinstruct.experiment import checks
    from polyinstruct.experiment.config import ExperimentConfig
    from polyinstruct.experiment.runner import _printer, _run_cell
    from polyinstruct.fileio import write_json

    cfg = ExperimentConfig.model_validate(cfg_data)
    cell = next((c for c in cfg.cells() if c.name == cell_name), None)
    if cell is None:
        raise ConfigError(f"no cell named {cell_name!r} in this grid")
    rootp = Path(root)
    cdir = rootp / "cells" / cell.name
    if (cdir / "done.json").exists():
        return CellOutcome(cell=cell.name, status="skipped", host=socket.gethostname()).model_dump()
    t0 = time.time()
    cdir.mkdir(parents=True, exist_ok=True)
    claim(cdir, run_id)
    checks.write_cell_fingerprint(cfg, cell, cdir)
    say = _printer(progress, t0=clock)
    _run_cell(cfg, cell, cdir, rootp, model_path, rootp / "eval_prompts.jsonl", say, progress)
    write_json(cdir / "done.json", {"cell": cell.name, "finished_at": time.time(), "host": socket.gethostname(),
                                    "run_id": run_id, "attempts": _attempts(cdir),
                                    "stage_seconds": say.finish()})
    (cdir / CLAIM_FILE).unlink(missing_ok=True)
    return CellOutcome(cell=cell.name, status="done", seconds=round(time.time() - t0, 1),
                       host=socket.gethostname()).model_dump()


class CellBusyError(PolyinstructError):
    """Another grid run holds this cell's claim."""


def claim(cdir: Path, run_id: str) -> None:
    """Take the cell's claim (``O_EXCL``). A claim of the same run (a retry after a crash: the
    engine starts it only once the earlier attempt is gone) or of a process on this host that no
    longer exists is taken over; a live claim of another run raises :class:`CellBusyError`."""
    path = cdir / CLAIM_FILE
    me = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "claimed_at": time.time()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # vanished meanwhile or half written by a killed process
                held = {}
            stale = (held.get("run_id") == run_id or not held
                     or (held.get("host") == me["host"] and not _alive(int(held.get("pid", 0)))))
            if not stale:
                raise CellBusyError(
                    f"cell {cdir.name} is being run by another grid run (run {held.get('run_id')}, host "
                    f"{held.get('host')}, pid {held.get('pid')}); if no such run is alive, delete {path}")
            me["attempt"] = int(held.get("attempt", 1)) + 1
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"attempt": 1, **me}, f)
        _log_attempt(cdir, me)
        return
    raise CellBusyError(f"could not claim cell {cdir.name}: {path} keeps reappearing")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log_attempt(cdir: Path, me: dict[str, Any]) -> None:
    with open(cdir / "attempts.jsonl", "a", encoding="utf-8") as f:  # append-only log, one line per start
        f.write(json.dumps({k: me[k] for k in ("run_id", "host", "pid", "claimed_at")}) + "\n")


def _attempts(cdir: Path) -> int:
    try:
        return len((cdir / "attempts.jsonl").read_text(encoding="utf-8").splitlines())
    except OSError:
        return 1


# ---------------------------------------------------------------------------------------------
# multi-process training of one cell


def launch_training(train_cfg: dict[str, Any], processes: int, accelerate_config: str | None, cdir: Path) -> None:
    """Train one cell over ``processes`` processes: ``accelerate launch`` with the cell's
    accelerate config (DeepSpeed, FSDP, DDP), or torchrun (plain DDP: NCCL on GPUs, gloo on CPU)
    without one. The training loop counts every rank's tokens in ``budget.json``; only this
    (rank-0-side) process predicts and scores afterwards."""
    import yaml

    from polyinstruct.fileio import atomic_open

    path = cdir / "train.yaml"
    with atomic_open(path) as f:
        yaml.safe_dump(train_cfg, f, sort_keys=False, allow_unicode=True)
    if accelerate_config:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
               "--num_processes", str(processes), "--main_process_port", str(_free_port())]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(_free_port())]
    cmd += ["-m", "polyinstruct", "train", str(path), "--no-progress"]
    log = cdir / "train_launch.log"
    with open(log, "ab") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ}).returncode
    if rc != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:]
        raise PolyinstructError(f"cell {cdir.name}: {'accelerate launch' if accelerate_config else 'torchrun'} with "
                                f"{processes} processes exited with {rc}; log {log}:\n{tail}")
    from polyinstruct.fileio import read_json

    ran = read_json(Path(train_cfg["output_dir"]) / "budget.json").get("processes")
    if ran != processes:  # e.g. an accelerate config whose launcher ignored --num_processes
        raise PolyinstructError(f"cell {cdir.name}: training ran on {ran} process(es), not {processes}; check "
                                f"{accelerate_config or 'torchrun'} (log {log})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


EXECUTORS: Registry[type[Executor]] = Registry("executor")


@EXECUTORS.register("local")
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


@EXECUTORS.register("ray")
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


@EXECUTORS.register("slurm")
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
