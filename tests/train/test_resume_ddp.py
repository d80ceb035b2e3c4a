"""Exact resume after SIGKILL, and 2-process DDP on CPU (gloo) equal to 1 process with accumulation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from polyinstruct.train import train
from tests.train.helpers import losses, max_diff, weights

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(base_config, tmp_path):
    # LoRA dropout makes the result depend on the restored RNG state, not only on weights.
    common = dict(method="lora", lora={"dropout": 0.1, "target_modules": "all-linear"}, max_steps=14,
                  save_every=2, keep_last=2, global_batch_size=4, micro_batch_size=2, lr=3e-3)
    killed_cfg = base_config(output_dir=str(tmp_path / "killed"), **common)
    cfg_path = tmp_path / "killed.yaml"
    cfg_path.write_text(yaml.safe_dump(killed_cfg), encoding="utf-8")
    metrics = tmp_path / "killed" / "metrics.jsonl"
    # The child kills itself at a known point, mid-way through writing the step-6 checkpoint
    # (steps 5 and 6 trained past the step-4 checkpoint), so the test never races the kill.
    child = (
        "import os, signal, sys\n"
        "import polyinstruct.train.loop as L\n"
        "orig = L.save_checkpoint\n"
        "def save(acc, model, opt, sched, state, root, keep_last, **kw):\n"
        "    if state['step'] == 6:\n"
        "        tmp = root / '.tmp-step-00000006'\n"
        "        tmp.mkdir(parents=True, exist_ok=True)\n"
        "        (tmp / 'optimizer.pt').write_bytes(b'half a file')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return orig(acc, model, opt, sched, state, root, keep_last, **kw)\n"
        "L.save_checkpoint = save\n"
        "from polyinstruct.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", child, "train", str(cfg_path), "--no-progress"], env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    run = tmp_path / "killed"
    assert not (run / "budget.json").exists()
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert ckpts == ["step-00000002", "step-00000004"]  # keep_last; the half-written step 6 is not one
    ckpt_step = 4
    before = [r for r in metrics.read_text().splitlines() if json.loads(r)["step"] <= ckpt_step]
    resumed = train(killed_cfg)
    after = metrics.read_text().splitlines()
    assert after[:len(before)] == before  # rows up to the checkpoint kept verbatim: it resumed, not restarted
    assert json.loads(after[len(before)])["step"] == ckpt_step + 1
    straight = train(base_config(output_dir=str(tmp_path / "straight"), **common))
    assert max_diff(weights(resumed / "adapter"), weights(straight / "adapter")) < 1e-6
    a, b = losses(resumed), losses(straight)
    assert [s for s, _ in a] == list(range(1, 15)) == [s for s, _ in b]
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-6


@pytest.mark.slow
def test_two_process_ddp_on_cpu_equals_one_process_with_accumulation(base_config, tmp_path):
    common = dict(method="full", global_batch_size=8, micro_batch_size=2, max_steps=3, lr=3e-3)
    ddp_cfg = tmp_path / "ddp.yaml"
    ddp_cfg.write_text(yaml.safe_dump(base_config(output_dir=str(tmp_path / "ddp"), **common)), encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "polyinstruct", "train", str(ddp_cfg), "--no-progress"]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = tmp_path / "ddp"
    budget = json.loads((ddp / "budget.json").read_text())
    assert (budget["processes"], budget["grad_accum"]) == (2, 2)
    single = train(base_config(output_dir=str(tmp_path / "single"), **common))
    assert json.loads((single / "budget.json").read_text())["grad_accum"] == 4
    assert max_diff(weights(ddp / "model"), weights(single / "model")) < 1e-5
    a, b = losses(ddp), losses(single)
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-5
