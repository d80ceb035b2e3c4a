"""An experiment's adapters name their base model as the user did (a packaged name), never this
machine's cache folder, so they load on another machine (issue 26, item 3)."""

from __future__ import annotations

import json
import shutil

import pytest

from polyinstruct.experiment.cell import train_model_name
from polyinstruct.experiment.runner import run_experiment


def test_train_model_name_keeps_names_and_resolves_paths(tmp_path):
    assert train_model_name("gemma-3-270m", "/home/u/.cache/polyinstruct/models/gemma-3-270m") == "gemma-3-270m"
    assert train_model_name("owner/model", "owner/model") == "owner/model"
    (tmp_path / "m").mkdir()
    assert train_model_name(str(tmp_path / "m"), str(tmp_path / "m")) == str(tmp_path / "m")


@pytest.mark.slow
def test_experiment_adapter_base_is_the_packaged_name_not_the_cache_path(tiny_model_dir, tmp_path, monkeypatch):
    from polyinstruct.models import packaged

    cache = tmp_path / "cache"
    monkeypatch.setenv("POLYINSTRUCT_CACHE_DIR", str(cache))
    # a packaged model, already prepared in the cache (the tiny model stands in for Gemma)
    fake = packaged.PackagedModel(name="tiny-packaged", package="none", install="pip install none",
                                  license="-", description="test", locate_gguf=lambda c: c)
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "tiny-packaged", fake)
    shutil.copytree(tiny_model_dir, cache / "models" / "tiny-packaged")
    root = run_experiment({
        "name": "portable", "output_dir": str(tmp_path / "out"), "model": "tiny-packaged", "template": "tulu",
        "method": "lora", "train_languages": ["en"], "eval_languages": ["en"], "arms": ["multi"],
        "examples_per_language": 4,
        "train": {"epochs": 1, "lr": 1e-3, "global_batch_size": 4, "micro_batch_size": 4, "max_length": 512,
                  "lora": {"target_modules": "all-linear"}},
        "eval": {"prompts_per_language": 1, "max_new_tokens": 2, "batch_size": 1}, "seed": 0,
    }, progress=False, report=False)
    adapter = root / "cells" / "multi" / "run" / "adapter"
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == "tiny-packaged"
    assert str(cache) not in (adapter / "adapter_config.json").read_text()
    assert "polyinstruct models prepare tiny-packaged" in (adapter / "README.md").read_text()
