"""Experiment executors (docs/clusters.md): the per-cell claim, a 4-cell grid on a local Ray
cluster with 2 workers where one worker dies mid-cell, Slurm through submitit (the scripts a
stub ``sbatch`` receives; a grid through submitit's local executor), and a cell trained by
torchrun over 2 CPU processes (gloo DDP)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from polyinstruct.errors import PolyinstructError
from polyinstruct.experiment.executors import CLAIM_FILE, CellBusyError, ExecutorSettings, SlurmExecutor, claim
from polyinstruct.experiment.runner import run_experiment

REPO = Path(__file__).resolve().parents[2]
CELLS = ("base", "multi", "multi-down", "en-only")


def _config(tiny_model_dir: Path, out: Path, arms=CELLS, **executor) -> dict:
    return {
        "name": "grid", "output_dir": str(out), "model": str(tiny_model_dir), "template": "tulu", "method": "lora",
        "train_languages": ["en", "fr"], "eval_languages": ["en", "fr"], "arms": list(arms),
        "examples_per_language": 8,
        "train": {"max_steps": 3, "lr": 1e-3, "global_batch_size": 4, "micro_batch_size": 2, "max_length": 256,
                  "save_every": 1, "lora": {"target_modules": "all-linear"}},
        "eval": {"prompts_per_language": 2, "max_new_tokens": 4, "batch_size": 4},
        "seed": 0, "executor": executor or {"name": "local"},
    }


def _results(root: Path) -> list[dict]:
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    return [{k: r[k] for k in ("cell", "language", "n", "lang_match_rate", "chrf", "train_tokens")} for r in rows]


def _attempts(root: Path, cell: str) -> int:
    return len((root / "cells" / cell / "attempts.jsonl").read_text().splitlines())


# ---- the claim ----

def test_claim_is_exclusive_between_runs_and_taken_over_by_a_retry_or_after_a_dead_process(tmp_path):
    cdir = tmp_path / "cells" / "multi"
    cdir.mkdir(parents=True)
    claim(cdir, "run-a")
    held = json.loads((cdir / CLAIM_FILE).read_text())
    assert held["run_id"] == "run-a" and held["pid"] == os.getpid() and held["attempt"] == 1
    with pytest.raises(CellBusyError, match="another grid run.*run-a"):  # a live claim of another run
        claim(cdir, "run-b")
    claim(cdir, "run-a")  # the same run's retry (the engine restarts a task only after it died)
    assert json.loads((cdir / CLAIM_FILE).read_text())["attempt"] == 2
    dead = {**held, "run_id": "run-old", "pid": 2**22 + 12345}  # a process that no longer exists
    (cdir / CLAIM_FILE).write_text(json.dumps(dead))
    claim(cdir, "run-c")
    assert json.loads((cdir / CLAIM_FILE).read_text())["run_id"] == "run-c"
    assert _attempts(tmp_path, "multi") == 3


def test_unknown_executor_is_a_config_error_with_a_suggestion(tiny_model_dir, tmp_path):
    import yaml

    from polyinstruct.errors import ConfigError

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(_config(tiny_model_dir, tmp_path / "out", name="rey")))
    with pytest.raises(ConfigError, match="executor.*Did you mean: ray"):
        run_experiment(path)
    assert not (tmp_path / "out").exists()


# ---- Slurm: the submitted scripts ----

def test_slurm_job_array_script_asks_for_each_cells_resources(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"  # records the script it is given, answers like Slurm
    sbatch.write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path}/submitted.sh\necho 'Submitted batch job 4242'\n")
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for srun to detect Slurm
    for f in (sbatch, bin_dir / "srun"):
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    settings = ExecutorSettings(name="slurm", resources={"gpus": 2, "cpus": 8, "memory_gb": 64},
                                slurm={"partition": "gpu", "time_min": 90, "max_parallel": 3,
                                       "setup": ["module load cuda"], "additional": {"qos": "high"}})
    ex = SlurmExecutor(settings)
    root = tmp_path / "exp"
    jobs = ex.submit(ex.executor(root), {"model": "m"}, root, list(CELLS), "/models/m", "run-1")
    assert [j.job_id for j in jobs] == [f"4242_{i}" for i in range(4)]
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --array=0-3%3", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64GB", "#SBATCH --time=90", "#SBATCH --qos=high",
                 "#SBATCH --signal=USR2@", "module load cuda"):
        assert line in script, f"{line!r} not in\n{script}"
    assert "submitit.core._submit" in script and str(root / "slurm") in script


# ---- grids (slow: each trains the tiny model several times) ----

@pytest.fixture(scope="module")
def local_grid(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "exp"
    t0 = time.monotonic()
    root = run_experiment(_config(tiny_model_dir, out), report=False)
    return root, time.monotonic() - t0


KILL_HOOK = '''
import os, signal
import polyinstruct.train.loop as L
_orig = L.save_checkpoint
def _save(acc, model, opt, sched, state, root, keep_last, **kw):
    out = _orig(acc, model, opt, sched, state, root, keep_last, **kw)
    marker = os.environ["POLYINSTRUCT_TEST_KILL_MARKER"]
    if state["step"] == 2 and os.sep + "multi" + os.sep in str(root):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return out
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-cell, after its step-2 checkpoint
    return out
L.save_checkpoint = _save
'''


@pytest.mark.slow
def test_ray_grid_with_two_workers_survives_a_killed_worker_and_matches_local(local_grid, tiny_model_dir, tmp_path,
                                                                            monkeypatch):
    ray = pytest.importorskip("ray")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    # Ray imports the module in every worker (worker_process_setup_hook): the patch is in place
    (hooks / "h16_kill_hook.py").write_text(KILL_HOOK + "\n\ndef setup():\n    pass\n")
    marker = tmp_path / "killed.pid"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hooks), str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("POLYINSTRUCT_TEST_KILL_MARKER", str(marker))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "h16_kill_hook.setup"})
    try:
        out = tmp_path / "exp"
        t0 = time.monotonic()
        root = run_experiment(_config(tiny_model_dir, out, name="ray", max_retries=2), report=False)
        ray_s = time.monotonic() - t0
    finally:
        ray.shutdown()
    assert marker.exists(), "the kill hook never fired: no worker died"
    assert _attempts(root, "multi") == 2  # killed once, retried by Ray, resumed
    for cell in CELLS:
        assert (root / "cells" / cell / "done.json").exists()
        assert not (root / "cells" / cell / CLAIM_FILE).exists()
        if cell != "multi":
            assert _attempts(root, cell) == 1, cell
        else:
            assert json.loads((root / "cells" / cell / "done.json").read_text())["attempts"] == 2
    # resumed from its step-2 checkpoint, not from scratch: metrics show steps 1-2 once
    steps = [json.loads(line)["step"] for line in (root / "cells" / "multi" / "run" / "metrics.jsonl")
             .read_text().splitlines() if "loss" in json.loads(line)]
    assert steps == [1, 2, 3], steps
    local_root, local_s = local_grid
    assert _results(root) == _results(local_root)
    print(f"\ngrid wall time: local {local_s:.1f} s, ray 2 workers {ray_s:.1f} s (incl. one kill + retry)")


@pytest.mark.slow
def test_slurm_grid_through_submitits_local_executor_collects_results(local_grid, tiny_model_dir, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "exp"
    root = run_experiment(_config(tiny_model_dir, out, arms=("base", "multi"), name="slurm",
                                  slurm={"cluster": "local", "poll_s": 0.5}), report=False)
    for cell in ("base", "multi"):
        assert json.loads((root / "cells" / cell / "done.json").read_text())["attempts"] == 1
    local = [r for r in _results(local_grid[0]) if r["cell"] in ("base", "multi")]
    assert _results(root) == local
    assert list((root / "slurm").glob("*/*_log.out"))  # submitit's per-job logs under the run folder


@pytest.mark.slow
def test_cell_trained_on_two_processes_counts_all_ranks_and_predicts_once(local_grid, tiny_model_dir, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "exp"
    root = run_experiment(_config(tiny_model_dir, out, arms=("multi",), name="local", processes=2), report=False)
    budget = json.loads((root / "cells" / "multi" / "run" / "budget.json").read_text())
    single = json.loads((local_grid[0] / "cells" / "multi" / "run" / "budget.json").read_text())
    assert budget["processes"] == 2
    assert budget["tokens_seen"] == single["tokens_seen"] and budget["steps"] == single["steps"]
    # predicted and scored once, by this process (not by every rank)
    preds = (root / "cells" / "multi" / "predictions.jsonl").read_text().splitlines()
    assert sorted(json.loads(p)["id"] for p in preds) == ["eval-01.en", "eval-01.fr", "eval-02.en", "eval-02.fr"]
    assert (root / "cells" / "multi" / "train.yaml").exists()


def test_failed_multi_process_launch_names_the_cell_and_its_log(tmp_path, monkeypatch):
    from polyinstruct.experiment.executors import launch_training

    cdir = tmp_path / "cells" / "multi"
    cdir.mkdir(parents=True)
    with pytest.raises(PolyinstructError, match=r"cell multi: accelerate launch with 2 processes exited with"):
        launch_training({"model": str(tmp_path / "missing-model")}, 2, str(tmp_path / "no-such-config.yaml"), cdir)
    assert (cdir / "train_launch.log").exists()


def test_slurm_requeue_resubmits_the_same_cell():
    submitit = pytest.importorskip("submitit")
    from polyinstruct.experiment.executors import _SlurmCell

    job = _SlurmCell({"model": "m"}, "/runs/x", "multi", "/models/m", "run-1", False)
    again = job.checkpoint()  # what submitit calls on timeout/preemption before requeueing
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert isinstance(again.function, _SlurmCell) and again.function.args == job.args


def test_cli_executor_option_sets_the_executor(tiny_model_dir, tmp_path, capsys):
    import yaml

    from polyinstruct.cli import main

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(_config(tiny_model_dir, tmp_path / "out")))
    assert main(["experiment", str(path), "--executor", "slrum"]) != 0
    err = capsys.readouterr().err
    assert "error:" in err and "executor.name" in err and "Did you mean: slurm" in err and "Traceback" not in err
