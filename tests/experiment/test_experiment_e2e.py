"""A miniature experiment end to end on the tiny local model: every artefact exists
and parses; a run killed in the middle of a cell resumes and skips finished cells."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from polyinstruct.experiment.runner import run_experiment


def _config(tiny_model_dir: Path, out: Path) -> dict:
    return {
        "name": "mini",
        "output_dir": str(out),
        "model": str(tiny_model_dir),
        "template": "tulu",
        "method": "lora",
        "train_languages": ["en", "fr"],
        "eval_languages": ["en", "fr"],
        "arms": ["multi", "multi-down"],
        "examples_per_language": 8,
        "train": {"epochs": 1, "lr": 1e-3, "global_batch_size": 4, "micro_batch_size": 4, "max_length": 256,
                  "lora": {"target_modules": "all-linear"}},
        "eval": {"prompts_per_language": 2, "max_new_tokens": 6, "batch_size": 4},
        "seed": 0,
    }


def _check_artefacts(root: Path) -> list[dict]:
    assert yaml.safe_load((root / "experiment.yaml").read_text())["name"] == "mini"
    budget = json.loads((root / "arms" / "budget.json").read_text())
    assert budget
    results = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert {(r["cell"], r["language"]) for r in results} == {
        (c, lang) for c in ("multi", "multi-down") for lang in ("en", "fr")}
    for r in results:
        assert 0.0 <= r["lang_match_rate"] <= 1.0 and r["n"] == 2 and r["chrf"] is not None
    for cell in ("multi", "multi-down"):
        cdir = root / "cells" / cell
        preds = [json.loads(line) for line in (cdir / "predictions.jsonl").read_text().splitlines()]
        assert sorted(p["id"] for p in preds) == ["eval-01.en", "eval-01.fr", "eval-02.en", "eval-02.fr"]
        run_budget = json.loads((cdir / "run" / "budget.json").read_text())
        assert run_budget["tokens_seen"] > 0
        assert (cdir / "run" / "adapter" / "adapter_config.json").exists()
        assert [json.loads(line) for line in (cdir / "run" / "metrics.jsonl").read_text().splitlines()]
    html = (root / "report" / "report.html").read_text()
    assert "<table" in html and "data:image/png;base64," in html
    assert (root / "report" / "report.md").exists()
    # the multilingual arm trains on twice the tokens of the downsampled one (2 languages)
    multi = json.loads((root / "cells" / "multi" / "run" / "budget.json").read_text())
    down = json.loads((root / "cells" / "multi-down" / "run" / "budget.json").read_text())
    assert multi["tokens_seen"] > down["tokens_seen"]
    return results


@pytest.mark.slow
def test_mini_experiment_killed_mid_cell_resumes_and_skips_finished_cells(tiny_model_dir, tmp_path):
    out = tmp_path / "exp"
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(tiny_model_dir, out)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # The child kills itself at a fixed point: when the second cell (multi-down) starts training,
    # after the first cell finished; no timer, so the test never races the kill.
    child = (
        "import os, signal, sys\n"
        "import polyinstruct.train as T\n"
        "orig = T.train\n"
        "def train(cfg, **kw):\n"
        "    if str(cfg['output_dir']).endswith(os.path.join('multi-down', 'run')):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return orig(cfg, **kw)\n"
        "T.train = train\n"
        "from polyinstruct.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", child, "experiment", str(cfg_path)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.decode()[-3000:]
    second = out / "cells" / "multi-down"
    first_done = out / "cells" / "multi" / "done.json"
    assert first_done.exists() and not (second / "done.json").exists()
    first_mtime = first_done.stat().st_mtime_ns
    first_weights = out / "cells" / "multi" / "run" / "adapter" / "adapter_model.safetensors"
    weights_mtime = first_weights.stat().st_mtime_ns

    root = run_experiment(cfg_path)  # rerun in-process to completion
    assert first_done.stat().st_mtime_ns == first_mtime  # finished cell skipped
    assert first_weights.stat().st_mtime_ns == weights_mtime  # and not retrained
    assert (second / "done.json").exists()
    _check_artefacts(root)
