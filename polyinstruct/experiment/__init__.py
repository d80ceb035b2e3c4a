"""Experiments: budget-controlled grids of arms x languages, run cell by cell, resumable."""

from polyinstruct.experiment.config import ExperimentConfig
from polyinstruct.experiment.quickstart import quickstart
from polyinstruct.experiment.runner import run_experiment

__all__ = ["ExperimentConfig", "quickstart", "run_experiment"]
