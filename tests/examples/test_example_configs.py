"""Every shipped config still validates against the current schemas (no model loading)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polyinstruct.experiment.quickstart import QUICKSTART_CONFIG
from polyinstruct.experiment.runner import load_experiment_config
from polyinstruct.train.config import load_train_config

ROOT = Path(__file__).resolve().parents[2]
TRAIN = sorted((ROOT / "examples" / "train").glob("*.yaml"))
EXPERIMENTS = sorted((ROOT / "examples" / "experiments").glob("*.yaml")) + [QUICKSTART_CONFIG]


def _is_train_config(path: Path) -> bool:
    """examples/train also holds accelerate launcher configs, which are not ours to validate."""
    return "model" in (yaml.safe_load(path.read_text()) or {})


@pytest.mark.parametrize("path", [p for p in TRAIN if _is_train_config(p)], ids=lambda p: p.name)
def test_training_examples_validate(path):
    cfg = load_train_config(path)
    assert cfg.global_batch_size % cfg.micro_batch_size == 0


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_examples_validate_and_their_train_section_too(path):
    exp = load_experiment_config(path)
    assert exp.cells()
    # the per-arm training config the runner builds must also be valid
    load_train_config({**exp.train, "model": exp.model, "template": exp.template, "method": exp.method,
                       "data": ["unused.jsonl"], "output_dir": "unused"})
    if exp.judge:
        from polyinstruct.judge.config import resolve_judge_config

        resolve_judge_config(exp.judge)


def test_every_train_example_is_checked():
    assert sum(_is_train_config(p) for p in TRAIN) >= 6
