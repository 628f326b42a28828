"""Experiment logs beside metrics.jsonl: TensorBoard event files always, MLflow on request.

Every run writes `RUN/tensorboard/` with torch's own `SummaryWriter`: per-epoch scalars
(train/val loss and accuracy, val log loss, images/s), the learning rate at every optimizer
step, and one grid of a training batch as the network sees it (augmented, denormalised).
`tensorboard --logdir runs` then compares runs. With `--mlflow URI` the same epoch scalars
and the hyper-parameters go to an MLflow tracking server too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TB_DIR = "tensorboard"
#: epoch-record keys written as scalars, and their TensorBoard tags
SCALARS = {
    "train_loss": "loss/train", "val_loss": "loss/val",
    "train_acc": "accuracy/train", "val_acc": "accuracy/val",
    "val_logloss": "logloss/val", "images_per_s": "speed/images_per_s",
    "lr": "lr/epoch",
}


class MlflowMissing(RuntimeError):
    """`--mlflow` was given but the mlflow package is not installed."""


def check_mlflow() -> None:
    """MlflowMissing (one line) unless mlflow can be imported."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise MlflowMissing("--mlflow needs the mlflow package, which is not installed "
                            "(pip install mlflow), or leave --mlflow out") from None


class RunLog:
    """The TensorBoard writer of one run, and an MLflow run when a tracking URI is given."""

    def __init__(self, run_dir: Path, mlflow_uri: str | None = None,
                 hparams: dict[str, Any] | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TB_DIR))
        self.mlflow = None
        if mlflow_uri:
            check_mlflow()
            import mlflow

            mlflow.set_tracking_uri(mlflow_uri)
            mlflow.set_experiment("archc")
            mlflow.start_run(run_name=Path(run_dir).name)
            mlflow.log_params({k: str(v) for k, v in (hparams or {}).items()})
            self.mlflow = mlflow

    def step_lr(self, step: int, lr: float) -> None:
        """The learning rate of optimizer step `step`."""
        self.writer.add_scalar("lr/step", lr, step)

    def epoch(self, record: dict[str, Any]) -> None:
        """One epoch's record as scalars at x = epoch."""
        epoch = int(record["epoch"])
        values = {tag: record[key] for key, tag in SCALARS.items()
                  if isinstance(record.get(key), (int, float))}
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()
        if self.mlflow is not None:
            self.mlflow.log_metrics({t.replace("/", "_"): v for t, v in values.items()},
                                    step=epoch)

    def images(self, x: torch.Tensor, mean, std, step: int = 0, limit: int = 16) -> None:
        """Up to `limit` images of a normalised batch (B, 3, H, W), as the network sees them."""
        shown = x[:limit].detach().float().cpu()
        mean_t = torch.tensor(mean).view(1, 3, 1, 1)
        std_t = torch.tensor(std).view(1, 3, 1, 1)
        self.writer.add_images("train/batch", (shown * std_t + mean_t).clamp(0, 1), step)

    def close(self) -> None:
        """Flush and close the writer (and end the MLflow run)."""
        self.writer.close()
        if self.mlflow is not None:
            self.mlflow.end_run()
