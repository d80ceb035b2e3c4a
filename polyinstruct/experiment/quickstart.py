"""``polyinstruct quickstart``: the built-in small instance of the seed-1 experiment."""

from __future__ import annotations

import os
from pathlib import Path

from polyinstruct.config import load_yaml

QUICKSTART_CONFIG = Path(__file__).resolve().parent.parent / "resources" / "experiments" / "quickstart.yaml"


def quickstart_config() -> dict:
    return load_yaml(QUICKSTART_CONFIG)


def quickstart(output_dir: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
               *, progress: bool = True) -> Path:
    """Run the quickstart experiment; returns the path of report.html."""
    from polyinstruct.experiment.runner import run_experiment

    cfg = quickstart_config()
    if output_dir is not None:
        cfg["output_dir"] = str(output_dir)
    root = run_experiment(cfg, overrides, progress=progress)
    return root / "report" / "report.html"
