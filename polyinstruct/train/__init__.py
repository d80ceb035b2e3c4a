"""polyinstruct.train: fine-tune any causal LM (full or PEFT) from one YAML config.

Public API: ``train(config, overrides=(), *, progress=False) -> Path`` (the run
directory), ``load_train_config``, ``TrainConfig``, ``merge_adapter``,
``validate``. Imports are lazy so ``import polyinstruct.train`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "validate", "merge_adapter", "load_train_config", "TrainConfig", "is_finished"]


def __getattr__(name: str) -> Any:
    if name in ("train", "is_finished"):
        from polyinstruct.train import run

        return getattr(run, name)
    if name == "validate":
        from polyinstruct.train.validate import validate

        return validate
    if name == "merge_adapter":
        from polyinstruct.train.merge import merge_adapter

        return merge_adapter
    if name in ("load_train_config", "TrainConfig"):
        from polyinstruct.train import config

        return getattr(config, name)
    raise AttributeError(name)
