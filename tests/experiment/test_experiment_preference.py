"""An arm with a preference stage (en-only+pref) end to end on the tiny model: the SFT run is reused,
pairs are built from the SFT model's own answers, DPO trains from the merged SFT model, and the
results report both stages' tokens."""

from __future__ import annotations

import json

import pytest

from polyinstruct.errors import ConfigError
from polyinstruct.experiment.runner import load_experiment_config, run_experiment


def _config(tiny_model_dir, out, **kw):
    cfg = {"name": "pref", "output_dir": str(out), "model": str(tiny_model_dir), "template": "tulu",
           "method": "lora", "train_languages": ["en", "fr"], "eval_languages": ["en", "fr"],
           "arms": ["en-only", "en-only+pref"], "examples_per_language": 4,
           "train": {"epochs": 1, "lr": 1e-3, "global_batch_size": 4, "micro_batch_size": 4, "max_length": 1024},
           "eval": {"prompts_per_language": 2, "max_new_tokens": 6, "batch_size": 4},
           "preference": {"from": "prefs", "k": 2, "max_new_tokens": 8, "reference_as_chosen": True,
                          "train": {"objective": "dpo", "max_steps": 2, "lr": 1e-3}},
           "lid": "fasttext-lite", "seed": 0}
    cfg.update(kw)
    return cfg


def test_en_only_plus_preference_stage(tiny_model_dir, tmp_path):
    root = run_experiment(_config(tiny_model_dir, tmp_path / "exp"), report=False)
    cdir = root / "cells" / "en-only+pref"
    assert not (cdir / "sft").exists()  # the en-only cell's SFT run was reused
    pairs = [json.loads(x) for x in (cdir / "prefs" / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert pairs and all(p["meta"]["reasons"] for p in pairs)
    samples = (cdir / "prefs" / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(samples) == 2 * 8  # k answers for each of 4 prompts x 2 languages
    budget = json.loads((cdir / "run" / "budget.json").read_text())
    assert budget["objective"] == "dpo" and budget["steps"] == 2
    rows = [json.loads(x) for x in (root / "results.jsonl").read_text().splitlines()]
    pref = [r for r in rows if r["cell"] == "en-only+pref"]
    sft = [r for r in rows if r["cell"] == "en-only"]
    assert pref and sft and pref[0]["arm"] == "en-only+pref"
    assert pref[0]["sft_tokens"] == sft[0]["train_tokens"] > 0
    assert pref[0]["train_tokens"] == pref[0]["sft_tokens"] + pref[0]["preference_tokens"]
    # the report's budget table: the arm's total, then each stage (the shared SFT run, the sampling, DPO)
    from polyinstruct.report.load import load_experiment
    from polyinstruct.report.tables import budget_table

    stages = json.loads((cdir / "stages.json").read_text())
    assert stages["sft"]["shared_with"] == "en-only" and stages["prefs"]["answers"] == len(samples)
    assert stages["prefs"]["generated_tokens"] == sum(json.loads(x)["completion_tokens"] for x in samples) > 0
    _, table = budget_table(load_experiment(root))
    labels = [r[0] for r in table]
    assert labels == ["en-only", "en-only+pref (total)", "en-only+pref: 1. SFT (en-only's run)",
                      f"en-only+pref: 2. answers sampled for pairs: 16 answers, {len(pairs)} pairs", "en-only+pref: 3. dpo"]
    assert table[1][1] == f"{pref[0]['train_tokens']:,}" and table[2][1] == table[0][1]
    assert table[1][3] == f"{table[2][3]} + 2"


def test_preference_arm_needs_its_section(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="preference"):
        load_experiment_config(_config(tiny_model_dir, tmp_path / "x", preference=None))
    with pytest.raises(ConfigError, match="preference.train"):
        load_experiment_config(_config(tiny_model_dir, tmp_path / "x", preference={"train": {"objective": "sft"}}))
    with pytest.raises(ConfigError, match="arms"):
        load_experiment_config(_config(tiny_model_dir, tmp_path / "x", arms=["base+pref"]))
