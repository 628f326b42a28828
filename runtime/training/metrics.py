"""Per-epoch metrics: metrics.jsonl (source of truth), metrics.csv (for spreadsheets), curves.png.

metrics.jsonl gets one JSON object per epoch; metrics.csv mirrors it with a single header row.
On resume the rows after the resumed epoch are dropped from both, so the files always describe
exactly the epochs whose checkpoint the run continued from.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_write

FIELDS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_logloss",
    "lr", "epoch_time", "images_per_s",
)
JSONL, CSV, PNG = "metrics.jsonl", "metrics.csv", "curves.png"
LOGLOSS_EPS = 1e-15  # Kaggle's clipping for the log-loss metric


def log_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of the Kaggle log loss, probabilities clipped to [1e-15, 1 - 1e-15].

    Two classes: exactly Kaggle's binary score on the submitted p = p(class 1), i.e.
    -(y log p + (1 - y) log(1 - p)) with p clipped. More classes: -log p_true with p_true clipped.
    Returns a 0-dim tensor on the logits' device so callers can accumulate without a GPU sync.
    Computed in float64 so confident predictions do not round to 0 or 1 before the clip
    (MPS has no float64, so there it is computed on the CPU).
    """
    logits = logits.detach()
    if logits.device.type == "mps":
        logits, targets = logits.cpu(), targets.cpu()
    targets = targets.view(-1).long().to(logits.device)
    probs = torch.softmax(logits.double(), dim=1)
    if probs.shape[1] == 2:
        p = probs[:, 1].clamp(LOGLOSS_EPS, 1 - LOGLOSS_EPS)
        p_true = torch.where(targets == 1, p, 1 - p)
    else:
        p_true = probs.gather(1, targets.view(-1, 1)).squeeze(1).clamp(LOGLOSS_EPS, 1 - LOGLOSS_EPS)
    return -p_true.log().sum()


def log_loss(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean Kaggle log loss of a batch of logits (see `log_loss_sum`)."""
    return float(log_loss_sum(logits, targets)) / max(len(targets), 1)


def read_records(run_dir: Path | str) -> list[dict[str, Any]]:
    """All epoch records in metrics.jsonl; a torn last line (crash mid-append) is ignored."""
    path = Path(run_dir) / JSONL
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _csv_text(records: list[dict[str, Any]], header: bool) -> str:
    """CSV rows (optionally with the header) for the given records, columns in FIELDS order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def _append(path: Path, text: str) -> None:
    """Append text and fsync, so a completed epoch's row survives a power cut."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


class MetricsLogger:
    """Appends one record per epoch to `run_dir/metrics.jsonl` and `run_dir/metrics.csv`."""

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl, self.csv = self.run_dir / JSONL, self.run_dir / CSV

    def records(self) -> list[dict[str, Any]]:
        """The records logged so far."""
        return read_records(self.run_dir)

    def truncate(self, epoch: int) -> None:
        """Keep only records with `record["epoch"] <= epoch` and rewrite both files atomically.

        Called on resume from a checkpoint taken after `epoch`, and with 0 on a fresh start.
        The CSV is regenerated from the JSONL, which also heals a torn trailing line.
        """
        kept = [r for r in self.records() if r.get("epoch", 0) <= epoch]
        if not kept:
            for path in (self.jsonl, self.csv):
                path.unlink(missing_ok=True)
            return
        atomic_write(self.jsonl, "".join(json.dumps(r) + "\n" for r in kept))
        atomic_write(self.csv, _csv_text(kept, header=True))

    def log(self, record: dict[str, Any]) -> None:
        """Append one epoch's record (any missing FIELDS are written as empty CSV cells)."""
        record = {k: _plain(v) for k, v in record.items()}
        _append(self.jsonl, json.dumps(record) + "\n")
        new_csv = not self.csv.exists() or self.csv.stat().st_size == 0
        _append(self.csv, _csv_text([record], header=new_csv))


def _plain(value: Any) -> Any:
    """Numbers as plain floats/ints for JSON; NaN/inf become None (JSON has no NaN)."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if hasattr(value, "item") and not isinstance(value, (int, float, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for one metric, skipping epochs where it is missing."""
    xs, ys = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)):
            xs.append(record["epoch"])
            ys.append(value)
    return xs, ys


def plot(run_dir: Path | str) -> Path | None:
    """Draw loss, accuracy and learning-rate curves from metrics.jsonl into curves.png.

    Uses the Agg canvas directly (no pyplot), so it works headless and touches no global
    matplotlib state. Written atomically. Returns the path, or None when there is nothing to plot.
    """
    run_dir = Path(run_dir)
    records = read_records(run_dir)
    if not records:
        return None
    fig = figure(records)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    path = run_dir / PNG
    atomic_write(path, buffer.getvalue())
    return path


#: a loss panel whose values span more than this ratio is drawn on a log scale
LOG_SCALE_RATIO = 10.0


def figure(records: list[dict[str, Any]]):
    """The curves figure (loss, accuracy, learning rate) of some epoch records.

    A loss that starts far above where it settles (a first val loss of 19, later 0.3) would
    flatten every later epoch against the axis, so such a panel gets a log scale.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8))
    FigureCanvasAgg(fig)
    # Fixed margins: constrained layout costs ~0.3 s a redraw, and this runs every epoch.
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.14, top=0.9, wspace=0.22)
    panels = (
        ("loss", (("train_loss", "train"), ("val_loss", "val"))),
        ("accuracy", (("train_acc", "train"), ("val_acc", "val"))),
        ("learning rate", (("lr", "lr"),)),
    )
    for index, (title, lines) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, index)
        for key, label in lines:
            xs, ys = _series(records, key)
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if title == "loss" and _wide_range([_series(records, key)[1] for key, _ in lines]):
            ax.set_yscale("log")
            ax.set_title("loss (log scale)")
        if len(lines) > 1:
            ax.legend()
    return fig


def _wide_range(series: list[list[float]]) -> bool:
    """Whether positive values span more than LOG_SCALE_RATIO (a log axis then reads better)."""
    values = [v for ys in series for v in ys]
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) > 1 and max(positive) > LOG_SCALE_RATIO * min(positive)
