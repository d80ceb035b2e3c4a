"""Where metrics go: ``metrics.jsonl`` always, TensorBoard / W&B / MLflow on request.

``metrics.jsonl`` is the record of truth; on resume it is cut back to the
checkpoint's step so the log of a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from polyinstruct.errors import MissingDependencyError
from polyinstruct.fileio import append_jsonl, iter_jsonl, write_jsonl

log = logging.getLogger(__name__)


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only rows logged at or before ``step`` (rows after it will be logged again)."""
    if path.exists():
        write_jsonl(path, [r for r in iter_jsonl(path) if r.get("step", 0) <= step])


def _flat(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class MetricsSink:
    """Fan one metrics row out to every chosen destination (main process only)."""

    def __init__(self, run_dir: Path, report_to: list[str], run_name: str, config: dict[str, Any],
                 enabled: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self._tb = self._wandb = self._mlflow = None
        if not enabled:
            return
        if "tensorboard" in report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise MissingDependencyError("report_to tensorboard needs tensorboard: "
                                             "pip install 'polyinstruct[tracking]'") from None
            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        if "wandb" in report_to:
            try:
                import wandb
            except ImportError:
                raise MissingDependencyError("report_to wandb needs wandb: pip install wandb") from None
            self._wandb = wandb.init(name=run_name, config=config, dir=str(run_dir), resume="allow")
        if "mlflow" in report_to:
            try:
                import mlflow
            except ImportError:
                raise MissingDependencyError("report_to mlflow needs mlflow: pip install mlflow") from None
            self._mlflow = mlflow
            mlflow.start_run(run_name=run_name)
            mlflow.log_params({k: str(v)[:250] for k, v in config.items()})

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, [row])
        step = int(row.get("step", 0))
        flat = _flat(row)
        if self._tb is not None:
            for k, v in flat.items():
                if k != "step":
                    self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(flat, step=step)
        if self._mlflow is not None:
            self._mlflow.log_metrics({k: v for k, v in flat.items() if k != "step"}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._mlflow is not None:
            self._mlflow.end_run()


def flops_per_token(n_params: int, n_trainable: int, n_layers: int, hidden: int, seq_len: float) -> float:
    """Training FLOPs per token: 2N forward, 2N input-gradients, 2N_trainable weight-gradients,
    plus the attention score/value products (12 * layers * hidden * seq, Chinchilla appendix)."""
    attn = 12.0 * n_layers * hidden * seq_len
    return 4.0 * n_params + 2.0 * n_trainable + attn
