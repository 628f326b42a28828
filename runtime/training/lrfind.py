"""The learning-rate range test (Leslie Smith, 2015): `--lr auto` and `archc lr-find`.

The sweep trains from the model's current weights for `steps` optimizer steps while the
learning rate grows exponentially from START_LR to END_LR, and records the loss of each
batch. It stops early once the loss runs away (above DIVERGE times the best running loss,
or non-finite). The weights, batch-norm statistics and random generators are put back
afterwards, so the real run starts exactly where it would have without the sweep.

The rule (deterministic, given the seed): the recorded losses are smoothed with a centred
moving average over SMOOTH_WINDOW steps (centred, so the curve does not lag behind the
learning rate as a running average would); "the minimum" is the highest rate reached from
the smoothed minimum before the smoothed loss rises TOLERANCE above it. When the sweep
descended (its smoothed loss fell DESCENT below the start), the suggestion is that rate
divided by 10 ("minimum ÷ 10"): the minimum sits just before the loss blows up, and a tenth
of it is still on the steep, descending part of the curve. When the sweep stayed flat until
it blew up (too short to learn much, as on a small dataset with many classes), there is no
descent to place a minimum on: the edge is then the largest rate that does not diverge,
and the suggestion is that rate itself, as Smith's one-cycle policy takes the largest
rate before the loss climbs as the peak of a warmed-up schedule (the from-scratch recipe
warms up for an epoch). An untrained network diverges earlier than a training one, so this
edge already sits below the rate a longer sweep would find. Walking up to the edge of the
flat bottom matters on such a curve: its lowest point is noise anywhere along the flat part.

The optimizer ("auto"): SGD with Nesterov momentum is swept first. If its smoothed loss never
drops DESCENT below its starting value, SGD made no progress at any rate in the range
(typical of deep plain nets without batch norm, or of a sweep too short to learn), so AdamW
is swept too from the same starting point. AdamW is kept only when its sweep descended and
reached a lower smoothed loss than SGD's; otherwise SGD stays (two flat curves differ by
noise only).

Length: MAX_STEPS or EPOCH_FRACTION of an epoch, whichever is less, but never fewer than
MIN_STEPS: below that the curve has too few points per decade to place a minimum (on a
small dataset the sweep is then longer than 5% of an epoch, and the start header says so).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

START_LR, END_LR = 1e-5, 10.0
MAX_STEPS, EPOCH_FRACTION, MIN_STEPS = 300, 0.05, 24
SMOOTH_WINDOW = 5
RUNNING_BETA = 0.8  # the running average that detects divergence during the sweep
DIVERGE = 4.0
DESCENT = 0.10
TOLERANCE = 0.05
RULE = (f"the highest rate within {TOLERANCE:.0%} of the minimum of the loss (centred "
        f"{SMOOTH_WINDOW}-step average), divided by 10 when the loss descended "
        f"{DESCENT:.0%}; the edge itself when it stayed flat until it diverged")
PNG = "lr_finder.png"


@dataclass
class Sweep:
    """One optimizer's sweep: the rate and loss of every step, and the smoothed loss."""

    optimizer: str
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    @property
    def smoothed(self) -> list[float]:
        """The losses under a centred moving average (shorter windows at the ends)."""
        return centred_average(self.losses, SMOOTH_WINDOW)

    def best(self) -> tuple[int, float]:
        """(step, smoothed loss) at the smoothed minimum."""
        values = self.smoothed
        i = min(range(len(values)), key=values.__getitem__)
        return i, values[i]

    def edge(self) -> int:
        """The last step, walking up from the minimum, still within TOLERANCE of it."""
        values = self.smoothed
        i, low = self.best()
        while i + 1 < len(values) and values[i + 1] <= low * (1 + TOLERANCE):
            i += 1
        return i

    def descended(self) -> bool:
        """Whether the smoothed loss fell DESCENT below where it started."""
        values = self.smoothed
        return len(values) > 1 and self.best()[1] < (1 - DESCENT) * values[0]


@dataclass
class LRFinding:
    """What the range test chose, and the curves it chose from."""

    lr: float
    optimizer: str
    steps: int
    sweeps: list[Sweep]
    rule: str = RULE
    floor_used: bool = False  # the sweep is MIN_STEPS long, more than 5% of an epoch

    def summary(self) -> dict[str, Any]:
        """The record.json / hparams.json entry (no curves)."""
        chosen = self.sweep()
        _, loss = chosen.best()
        return {"lr": self.lr, "optimizer": self.optimizer, "rule": self.rule,
                "steps": self.steps, "range": [START_LR, END_LR],
                "minimum_lr": chosen.lrs[chosen.edge()], "minimum_loss": loss,
                "divisor": 10 if chosen.descended() else 1,
                "swept": [s.optimizer for s in self.sweeps], "floor_used": self.floor_used}

    def sweep(self) -> Sweep:
        """The sweep of the chosen optimizer."""
        return next(s for s in self.sweeps if s.optimizer == self.optimizer)

    def to_json(self) -> dict[str, Any]:
        """Everything, curves included (lr_finder.json)."""
        return {**self.summary(), "sweeps": [asdict(s) | {"smoothed": s.smoothed}
                                             for s in self.sweeps]}


def centred_average(values: list[float], window: int) -> list[float]:
    """Each value averaged with its neighbours, `window` wide where the ends allow."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = values[max(0, i - half): i + half + 1]
        out.append(sum(part) / len(part))
    return out


def sweep_steps(batches_per_epoch: int, accumulate: int = 1) -> tuple[int, bool]:
    """(optimizer steps of the sweep, whether the MIN_STEPS floor set it)."""
    steps_per_epoch = math.ceil(batches_per_epoch / max(accumulate, 1))
    bounded = min(MAX_STEPS, math.ceil(EPOCH_FRACTION * steps_per_epoch))
    return max(MIN_STEPS, bounded), bounded < MIN_STEPS


def suggest(sweep: Sweep) -> float:
    """The rule on one sweep: the minimum's edge ÷ 10, or the edge itself on a flat curve
    (see the module docstring)."""
    return sweep.lrs[sweep.edge()] / (10 if sweep.descended() else 1)


def _cycle(loader: Iterable) -> Iterator:
    """The loader's batches over and over, a new epoch (shuffle) each pass."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader yields no batches")
        epoch += 1


def run_sweep(model: nn.Module, loader: Iterable, make_optimizer: Callable[[str, float], Any],
              loss_of: Callable[[nn.Module, Any], torch.Tensor], name: str, steps: int) -> Sweep:
    """Sweep optimizer `name` for `steps` steps from START_LR to END_LR (model changes)."""
    sweep = Sweep(name)
    optimizer = make_optimizer(name, START_LR)
    growth = (END_LR / START_LR) ** (1 / max(steps - 1, 1))
    running, best = 0.0, math.inf
    model.train()
    for i, batch in zip(range(steps), _cycle(loader)):
        lr = START_LR * growth**i
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        loss.backward()
        optimizer.step()
        sweep.lrs.append(lr)
        sweep.losses.append(value)
        running = RUNNING_BETA * running + (1 - RUNNING_BETA) * value
        smooth = running / (1 - RUNNING_BETA ** (i + 1))
        best = min(best, smooth)
        if smooth > DIVERGE * best:
            break
    if not sweep.losses:
        raise ValueError("the LR range test's first step already gave a non-finite loss")
    return sweep


def find_lr(model: nn.Module, loader: Iterable, make_optimizer: Callable[[str, float], Any],
            loss_of: Callable[[nn.Module, Any], torch.Tensor], optimizer: str = "auto",
            steps: int = MIN_STEPS, floor_used: bool = False) -> LRFinding:
    """Run the range test and put the model, its buffers and the RNGs back afterwards.

    `make_optimizer(name, lr)` builds "sgd" or "adamw" over the model's trainable
    parameters; `loss_of(model, batch)` is one training forward pass's loss. `optimizer`
    "auto" applies the module docstring's rule; "sgd" or "adamw" sweeps just that one.
    """
    from .checkpoint import capture_rng, restore_rng

    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng = capture_rng()
    loader_epoch = getattr(loader, "epoch", None)
    try:
        first = "sgd" if optimizer == "auto" else optimizer
        sweeps = [run_sweep(model, loader, make_optimizer, loss_of, first, steps)]
        if optimizer == "auto" and not sweeps[0].descended():
            model.load_state_dict(saved)
            restore_rng(rng)
            sweeps.append(run_sweep(model, loader, make_optimizer, loss_of, "adamw", steps))
    finally:
        model.load_state_dict(saved)
        restore_rng(rng)
        if loader_epoch is not None and hasattr(loader, "set_epoch"):
            loader.set_epoch(loader_epoch)
    chosen = sweeps[0]
    if len(sweeps) > 1 and sweeps[1].descended() and sweeps[1].best()[1] < chosen.best()[1]:
        chosen = sweeps[1]
    return LRFinding(lr=suggest(chosen), optimizer=chosen.optimizer, steps=steps,
                     sweeps=sweeps, floor_used=floor_used)


def plot(finding: LRFinding, path: Path) -> Path:
    """Draw each sweep's loss (raw and smoothed) against the rate, log scale, and mark the
    choice; written atomically with the Agg canvas (no pyplot state)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .checkpoint import atomic_write

    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for sweep in finding.sweeps:
        line, = ax.plot(sweep.lrs, sweep.losses, alpha=0.35, linewidth=1)
        ax.plot(sweep.lrs, sweep.smoothed, color=line.get_color(), label=f"{sweep.optimizer}")
        i = sweep.edge()
        ax.plot([sweep.lrs[i]], [sweep.smoothed[i]], "o", color=line.get_color())
    ax.axvline(finding.lr, color="black", linestyle="--",
               label=f"chosen {finding.optimizer} lr {finding.lr:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    divisor = finding.summary()["divisor"]
    ax.set_title(f"LR range test ({finding.steps} steps): edge of the minimum ÷ {divisor}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.13, top=0.9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(path, buffer.getvalue())
    return path
