"""One cell of an experiment grid: the task every executor runs (:func:`run_cell_task`), its
claim and ``done.json`` marker, and the cell's stages (:func:`run_cell`: train, predict, score,
benchmarks), with multi-process training through ``accelerate launch`` (docs/clusters.md)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel

from polyinstruct.errors import ConfigError, PolyinstructError
from polyinstruct.experiment import checks
from polyinstruct.experiment.arms import arm_file
from polyinstruct.experiment.config import Cell, ExperimentConfig
from polyinstruct.experiment.scoring import score_predictions
from polyinstruct.fileio import write_json, write_jsonl

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
CLAIM_FILE = "claim.json"


class CellOutcome(BaseModel):
    cell: str
    status: Literal["done", "skipped"]
    seconds: float = 0.0
    host: str = ""




# ---------------------------------------------------------------------------------------------
# the one cell task every executor runs


def run_cell_task(cfg_data: dict[str, Any], root: str, cell_name: str, model_path: str, run_id: str,
                  progress: bool = False, clock: float | None = None) -> dict[str, Any]:
    """Run (or resume) one cell in ``root/cells/<cell_name>``; return a :class:`CellOutcome` dict.
    Safe to call again after a crash: a retry of the same grid run (same ``run_id``) takes over
    its own claim and resumes; a finished cell is skipped. ``clock``: the run's start
    (``time.monotonic`` in this process) so the cell's progress lines share the run's clock."""
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
    say = StagePrinter(progress, t0=clock)
    run_cell(cfg, cell, cdir, rootp, model_path, rootp / "eval_prompts.jsonl", say, progress)
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


def run_cell(cfg: ExperimentConfig, cell: Cell, cdir: Path, root: Path, model_path: str, eval_path: Path,
              say: Progress, progress: bool) -> None:
    """Train (unless the base cell), predict, score and benchmark one cell in ``cdir``; each stage
    skipped when its output marks it finished."""
    cdir.mkdir(parents=True, exist_ok=True)
    # 1. train (the base cell evaluates the untouched model)
    if cell.kind == "base":
        model_for_predict = model_path
    else:
        run_dir = cdir / "run"
        # an arm <kind>+pref trains its SFT stage like <kind> (reusing that cell's run when the grid has
        # it), then its preference stage into run/ (experiment/preference.py)
        sft_dir = run_dir if not cell.preference else sft_run_dir(cfg, cell, cdir, root)
        data_file = arm_file(data_root(root, cell.size), cell.arm_name.split("+")[0], cell.kind)
        from polyinstruct.experiment.checks import cell_train_config

        # the model as the user named it (a packaged name or hub id is resolved again by train): the
        # adapter records that name, not this machine's cache folder, so it loads elsewhere
        train_cfg = cell_train_config(cfg, model=train_model_name(cfg.model, model_path), data=str(data_file),
                                      output_dir=str(sft_dir))

        def train_sft() -> None:
            from polyinstruct.train import train

            procs = cfg.executor.train_processes()
            on = f", {procs} processes" if procs > 1 else ""
            say(f"  train {cell.name} on {data_file.name} ({cfg.method}{on})")
            if procs > 1:  # accelerate launch; this process alone predicts and scores (rank 0's part)
                launch_training(train_cfg, procs, cfg.executor.accelerate_config, cdir)
            else:
                train(train_cfg, progress=progress)

        if cell.preference:
            from polyinstruct.experiment.preference import run_preference_stage

            run_preference_stage(cfg, cell, cdir, root, train_cfg, sft_dir, train_sft, say, progress)
        elif not (run_dir / "budget.json").exists():
            train_sft()
        else:
            say(f"  train {cell.name}: finished earlier")
        model_for_predict = str(run_dir)
    # 2. predict on the cell's evaluation languages
    pred = cdir / "predictions.jsonl"
    if not (cdir / "predicted.json").exists():
        from polyinstruct.data.formats import read_records
        from polyinstruct.infer.predict import predict

        subset = cdir / "eval_prompts.jsonl"
        if not subset.exists():
            write_jsonl(subset, (c.to_dict() for c in read_records(eval_path)
                                 if c.language in cell.eval_languages))
        say(f"  predict {cell.name} on {', '.join(cell.eval_languages)}")
        # A run directory carries its own template.yaml; the untouched base model gets the config's.
        kwargs = {"template": cfg.template} if cell.kind == "base" else {}
        dtype = cfg.eval.resolved_dtype()
        kwargs["dtype"] = dtype
        predict(subset, model_for_predict, pred, decoding=cfg.eval.decoding, backend_kwargs=kwargs,
                max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size, progress=progress,
                model_name=f"{cfg.name}/{cell.name}")
        write_json(cdir / "predicted.json", {"model": model_for_predict, "dtype": dtype})
    # 3. score
    if not (cdir / "scores.json").exists():
        say(f"  score {cell.name}")
        judge_summary = None
        if cfg.judge:
            from polyinstruct.judge.run import judge_predictions

            judge_summary = judge_predictions(pred, cdir / "judge", judge=cfg.judge, lid=cfg.lid, progress=progress,
                                              seen_languages=cfg.train_languages)
        from polyinstruct.lang.identify import load_identifier

        rows = score_predictions(pred, identifier=load_identifier(cfg.lid), seen_languages=cfg.train_languages,
                                 judge_summary=judge_summary)
        write_json(cdir / "scores.json", {"cell": cell.name, "rows": rows})
    # 4. benchmarks (eval.benchmarks): resumable per task inside cells/CELL/benchmarks/
    if cfg.eval.benchmarks is not None:
        from polyinstruct.eval.experiment import run_cell_benchmarks

        run_cell_benchmarks(cfg.eval.benchmarks, model_for_predict, cdir / "benchmarks", label=cell.name, say=say)


def sft_run_dir(cfg: ExperimentConfig, cell: Cell, cdir: Path, root: Path) -> Path:
    """The SFT run of a +pref cell: the plain <kind> cell's finished run when the grid has one (the same
    config and data, so the same weights), else the cell's own ``sft/``."""
    plain = cell.name.replace("+pref", "")
    if any(c.name == plain for c in cfg.cells()) and (root / "cells" / plain / "run" / "budget.json").exists():
        return root / "cells" / plain / "run"
    return cdir / "sft"


def data_root(root: Path, size: int | None) -> Path:
    """Where a cell's arms live: ``arms/`` without a size axis, ``sizes/<n>/arms/`` with one."""
    return root if not size else root / "sizes" / str(size)


def train_model_name(given: str, resolved: str) -> str:
    """What a cell trains from: the user's packaged name or hub id, or the resolved folder when
    the user gave a path (made absolute there, so cells running elsewhere find it)."""
    return resolved if Path(given).expanduser().exists() else given


class StagePrinter:
    """Prints (or logs) progress lines with the elapsed time, and adds up the seconds spent after
    each kind of line (``train``, ``predict``, ``score``, ``[model]``...) into ``totals``."""

    def __init__(self, progress: bool, t0: float | None = None):
        # t0: the run's start, so a cell's lines share the run's one clock (time.monotonic of this process)
        now = time.monotonic()
        self.progress, self.t0 = progress, t0 if t0 is not None else now
        self.last, self.label, self.totals = now, None, {}

    def _account(self) -> float:
        now = time.monotonic()
        if self.label:
            self.totals[self.label] = round(self.totals.get(self.label, 0.0) + now - self.last, 1)
        self.last = now
        return now

    def __call__(self, msg: str) -> None:
        now = self._account()
        word = (msg.split() or ["other"])[0]
        self.label = "cell" if word[:1] == "[" and "/" in word else word.strip("[]")
        line = f"[{now - self.t0:7.1f}s] {msg}"
        print(line, flush=True) if self.progress else log.info(line)

    def finish(self) -> dict[str, float]:
        """Close the running stage; the seconds per stage kind so far."""
        self._account()
        self.label = None
        return dict(self.totals)
