"""The training loop: optimisation, validation, checkpoints, metrics, resume, signals, NaN guard.

Epochs are numbered from 1 in logs and metrics. A checkpoint's `epoch` is the number of
completed epochs; "last" is written after every epoch (and once, as epoch 0, before training
starts) and "best" whenever validation accuracy strictly improves (ties keep the earlier one).

Interruption (SIGINT/SIGTERM): the current batch finishes, nothing more is trained, and no new
checkpoint is written: "last" stays at the end of the previous complete epoch, so `resume=True`
restarts the interrupted epoch from its beginning. Because every epoch starts from a checkpoint
boundary, resuming is exact (bit-identical on CPU in deterministic mode). A second signal raises
KeyboardInterrupt at once.

Non-finite loss: training stops at once with a message naming the epoch and step; the last good
checkpoint is left untouched.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, cast

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from torch import nn

from . import checkpoint as ckpt
from .config import TrainConfig
from .metrics import MetricsLogger, log_loss_sum, plot
from .regularise import Mix, ModelEMA, mix_batch, mix_generator
from .tblog import RunLog

if TYPE_CHECKING:  # lrfind itself is imported when the range test runs
    from .lrfind import LRFinding

# Config fields that may differ on resume without breaking exact continuation.
_RESUME_FREE_FIELDS = {"workers", "compile", "compile_mode", "device", "cache_size", "epochs"}


@dataclass
class FitResult:
    """Outcome of `fit`. Epoch numbers are 1-based; best_epoch is 0 when no epoch finished."""

    best_val_acc: float
    best_val_logloss: float
    best_epoch: int
    last_epoch: int
    stopped_reason: str  # "done" | "interrupted" | "nan" | "paused" (stop_after reached)
    run_dir: Path | None = None


@dataclass
class FitOptions:
    """What `fit` needs besides the config: the run's start header, its classifier head
    (module paths, for fine-tuning; default the last Linear), an MLflow URI, and a fixed
    length for the LR range test (tests)."""

    header: dict[str, Any] | None = None
    head: tuple[str, ...] = ()
    mlflow: str | None = None
    lr_find_steps: int | None = None
    #: seconds between the plain progress lines printed when the output is not a terminal
    #: ($ARCHC_PROGRESS_EVERY, default 30)
    progress_every: float = field(
        default_factory=lambda: float(os.environ.get("ARCHC_PROGRESS_EVERY", "30")))


class _NonFinite(Exception):
    """Raised inside an epoch when the loss stops being finite."""


# --------------------------------------------------------------------------- environment


def select_device(preference: str = "auto") -> torch.device:
    """cuda > mps > cpu for "auto"; an explicit choice that is unavailable is an error."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        # Under torchrun the caller selects the local GPU with torch.cuda.set_device.
        return torch.device("cuda", torch.cuda.current_device())
    if preference == "mps" and not has_mps:
        raise RuntimeError("device 'mps' requested but MPS is not available")
    return torch.device(preference)


def seed_everything(seed: int) -> None:
    """Seed python, numpy (global) and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device):
    """Apply the deterministic/benchmark switches for the run and restore them afterwards."""
    cudnn = torch.backends.cudnn
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic, cudnn.benchmark,
    )
    if enabled:
        # cuBLAS needs a fixed workspace to be deterministic; must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        cudnn.deterministic, cudnn.benchmark = True, False
    elif device.type == "cuda":
        cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        cudnn.deterministic, cudnn.benchmark = saved[2], saved[3]


def _dist_active() -> bool:
    """True when torch.distributed is initialised (multi-process training)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _is_main_process() -> bool:
    """Only rank 0 logs and writes files."""
    return not _dist_active() or torch.distributed.get_rank() == 0


def _reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a small statistics tensor over all ranks (identity when not distributed)."""
    if _dist_active():
        values = values.clone()
        torch.distributed.all_reduce(values)
    return values


class _GracefulStop:
    """Turns SIGINT/SIGTERM into a flag the loop polls; restores the old handlers on exit."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second signal means "now", not "soon"
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> Self:
        # Handlers can only be installed from the main thread; elsewhere just never trigger.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            if handler is not None:
                signal.signal(sig, handler)


# --------------------------------------------------------------------------- model pieces


class Batches(Protocol):
    """A loader: batches to iterate over, and how many (a DataLoader, or the runtime's own)."""

    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile (`_orig_mod`) and DDP (`module`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            inner = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) or (
            hasattr(model, "module") and hasattr(model, "no_sync")
        ):
            inner = model.module
        else:
            return model
        assert isinstance(inner, nn.Module)  # what the wrappers wrap
        model = inner


def compute_loss(
    output: torch.Tensor | tuple | list, target: torch.Tensor, criterion: Callable,
    aux_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss for a model output: (total, main, main_logits).

    A tuple/list output is (main_logits, *aux_logits), as GoogLeNet returns in training mode:
    total = main + aux_weight * sum(aux). Losses are computed in float32 even under autocast.
    """
    if isinstance(output, (tuple, list)):
        logits, aux = output[0], list(output[1:])
    else:
        logits, aux = output, []
    main = criterion(logits.float(), target)
    total = main
    for extra in aux:
        total = total + aux_weight * criterion(extra.float(), target)
    return total, main, logits


def make_optimizer(model: nn.Module, config: TrainConfig, head: tuple[str, ...] = (),
                   lr: float | None = None, name: str | None = None) -> torch.optim.Optimizer:
    """SGD (momentum 0.9, Nesterov unless `config.nesterov` is off) or AdamW.

    Biases and norm scales get no weight decay. Parameters under the `head` module paths
    train at `lr`; the others (the backbone) at `lr * config.backbone_lr_scale`, kept in each
    group's "lr_scale" so the LR range test can scale them alike. Every parameter is in a
    group, trainable or not: a frozen backbone has no gradients, so it is skipped until it
    is unfrozen, and the optimizer never has to be rebuilt.
    """
    lr = config.resolved_lr() if lr is None else lr
    name = name or config.resolved_optimizer()
    decay_rate = config.weight_decay
    if decay_rate is None:
        from .config import DEFAULT_WEIGHT_DECAY

        decay_rate = DEFAULT_WEIGHT_DECAY[name]
    groups: dict[tuple[float, bool], list] = {}
    for key, param in model.named_parameters():
        in_head = not head or any(key == h or key.startswith(h + ".") for h in head)
        scale = 1.0 if in_head else config.backbone_lr_scale
        # 1-d tensors are biases and BatchNorm scales: decaying them only hurts accuracy.
        groups.setdefault((scale, param.ndim > 1), []).append(param)
    param_groups = [
        {"params": params, "weight_decay": decay_rate if decays else 0.0,
         "lr": lr * scale, "lr_scale": scale}
        for (scale, decays), params in sorted(groups.items(), key=lambda kv: (-kv[0][0],
                                                                            not kv[0][1]))
    ]
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr)
    return torch.optim.SGD(param_groups, lr=lr, momentum=0.9, nesterov=config.nesterov)


class LRSchedule:
    """Multiplier on the base lr for optimizer step `s`: linear warmup, then the chosen shape.

    A callable object (not a lambda) so LambdaLR can checkpoint it; its fields are plain numbers.
    "onecycle" without an explicit warmup ramps up over the first 30% of steps from lr/25 and
    anneals to lr/1e4, like torch's OneCycleLR (momentum is not cycled).
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int):
        self.kind = kind
        self.total_steps = max(int(total_steps), 1)
        if kind == "onecycle" and warmup_steps == 0:
            warmup_steps = round(0.3 * self.total_steps)
        self.warmup_steps = min(int(warmup_steps), self.total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            start = 1 / 25 if self.kind == "onecycle" else 0.0
            return start + (1 - start) * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        floor = 1e-4 if self.kind == "onecycle" else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _soft_target(mix: Mix, output) -> torch.Tensor:
    """The soft (B, classes) target of a mixed batch, sized by the model's logits."""
    logits = output[0] if isinstance(output, (tuple, list)) else output
    return mix.targets(logits.shape[1])


def make_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    """A per-optimizer-step LambdaLR following `LRSchedule`."""
    schedule = LRSchedule(
        config.schedule, config.epochs * steps_per_epoch,
        round(config.warmup_epochs * steps_per_epoch),
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


# --------------------------------------------------------------------------- the trainer


def _last_linear(model: nn.Module) -> tuple[str, ...]:
    """The path of the model's last nn.Linear (its classifier head), or () when it has none."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return (names[-1],) if names else ()


def _write_finding(run_dir: Path, finding) -> None:
    """lr_finder.png and lr_finder.json, and the choice in record.json and hparams.json."""
    import json

    from . import lrfind

    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lrfind.plot(finding, run_dir / lrfind.PNG)
    except Exception as exc:  # noqa: BLE001 -- a plotting problem must never cost a run
        print(f"warning: could not draw {lrfind.PNG}: {exc}", file=sys.stderr)
    ckpt.atomic_write(run_dir / "lr_finder.json", json.dumps(finding.to_json(), indent=2) + "\n")
    summary = finding.summary()
    for name, update in (("record.json", lambda d: d.update(lr_finder=summary)),
                         ("hparams.json", lambda d: (d.setdefault("train", {}).update(
                             lr=finding.lr, optimizer=finding.optimizer),
                             d.update(lr_finder=summary)))):
        path = run_dir / name
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            update(data)
            ckpt.atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _clock(seconds: float) -> str:
    """h:mm:ss."""
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _progress(console: Console) -> Progress:
    """A per-epoch progress bar; inert when output is not a terminal or the console is quiet."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:6.2%}  "
                   "{task.fields[ips]:,.0f} img/s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=console.quiet or not console.is_terminal,
    )


class Trainer:
    """Owns one training run in `run_dir`; `fit()` trains, validates, checkpoints and reports."""

    def __init__(
        self,
        model_factory: Callable[[], nn.Module],
        train_loader: Batches,
        val_loader: Batches | None,
        config: TrainConfig,
        run_dir: Path | str,
        console: Console | None = None,
        wrap: Callable[[nn.Module], nn.Module] | None = None,
        options: FitOptions | None = None,
    ):
        self.options = options or FitOptions()
        self.model_factory, self.wrap = model_factory, wrap
        self.train_loader, self.val_loader = train_loader, val_loader
        self.config, self.run_dir = config, Path(run_dir)
        self.is_main = _is_main_process()
        # soft wrap: a log line stays one line in a file or a pipe, however narrow
        console = console if console is not None else Console(soft_wrap=True)
        self.console = console if self.is_main else Console(quiet=True)
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps taken
        self.best = {"val_acc": -math.inf, "val_logloss": math.nan, "epoch": 0}
        self.ema: ModelEMA | None = None
        self.log: RunLog | None = None
        self.finding: LRFinding | None = None

    # ----------------------------------------------------------------- setup

    def _build(self) -> None:
        """Seed, build the model on its device, wrap/compile it, create optimizer and schedule."""
        cfg = self.config
        self.device = select_device(cfg.device)
        cuda = self.device.type == "cuda"
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else cuda
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and cuda)
        seed_everything(cfg.seed)
        raw = self.model_factory().to(self.device)
        if self.channels_last:
            raw = raw.to(memory_format=torch.channels_last)
        model = self.wrap(raw) if self.wrap is not None else raw
        # Checkpoints and the optimizer use the unwrapped module (wrap may swap submodules,
        # e.g. SyncBatchNorm conversion, so take it from the wrapped model).
        self.raw = unwrap(model)
        if cfg.compile and not cuda:
            # inductor's C++ toolchain probe warns that no CUDA runtime exists: true, and
            # beside the point for a CPU run
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        # compiling a module gives a module (OptimizedModule); torch types it as a callable
        self.model = (cast(nn.Module, torch.compile(model, mode=cfg.compile_mode))
                      if cfg.compile else model)
        n_batches = len(self.train_loader)
        if n_batches == 0:
            raise ValueError("the training loader yields no batches (fewer images than one batch?)")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.head = self.options.head or _last_linear(self.raw)
        self._set_frozen(0 < cfg.freeze_epochs)
        self.steps_per_epoch = math.ceil(n_batches / cfg.accumulate)
        # MPS has no float64; everywhere else float64 keeps long sums exact.
        self.acc_dtype = torch.float32 if self.device.type == "mps" else torch.float64

    def _build_optimizer(self, resume: bool) -> None:
        """Settle lr "auto" (the range test, unless resuming), then optimizer and schedule."""
        cfg = self.config
        if cfg.lr == "auto" and not resume:
            self._find_lr()
        elif cfg.optimizer == "auto" and not resume:
            self.config.optimizer = "sgd"  # a fixed lr with no range test: SGD, as documented
        # on resume an "auto" left in hparams.json (a run stopped inside the sweep) takes the
        # checkpoint's rate: the scheduler's saved base rates overwrite this placeholder
        lr = 1.0 if cfg.lr == "auto" else None
        self.optimizer = make_optimizer(self.raw, cfg, self._head_paths(), lr=lr)
        self.scheduler = make_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        if cfg.ema is not None:
            self.ema = ModelEMA(self.raw, cfg.ema)

    def _head_paths(self) -> tuple[str, ...]:
        """The head's module paths when the backbone trains differently, else () (one group)."""
        cfg = self.config
        differs = cfg.backbone_lr_scale != 1.0 or cfg.freeze_epochs > 0
        return tuple(self.head) if differs else ()

    def _set_frozen(self, frozen: bool) -> None:
        """Freeze (or unfreeze) every parameter outside the head."""
        self.frozen = frozen
        paths = tuple(self.head)
        for key, param in self.raw.named_parameters():
            in_head = any(key == h or key.startswith(h + ".") for h in paths)
            param.requires_grad_(in_head or not frozen)

    def _train_mode(self) -> None:
        """model.train(), with the batch norms of a frozen backbone kept in eval: their running
        statistics are the pretrained ones and must not drift while nothing else learns."""
        self.model.train()
        if not self.frozen:
            return
        paths = tuple(self.head)
        for name, module in self.raw.named_modules():
            in_head = any(name == h or name.startswith(h + ".") for h in paths)
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not in_head:
                module.eval()

    def _find_lr(self) -> None:
        """Run the LR range test, adopt its rate (and optimizer), save its curve and record it."""
        from . import lrfind

        cfg = self.config
        steps, floor = lrfind.sweep_steps(len(self.train_loader), cfg.accumulate)
        if self.options.lr_find_steps is not None:
            steps, floor = self.options.lr_find_steps, False

        def build(name: str, lr: float):
            return make_optimizer(self.raw, cfg, self._head_paths(), lr=lr, name=name)

        def loss_of(model: nn.Module, batch) -> torch.Tensor:
            self._train_mode()
            x, y = self._to_device(*batch)
            with self._autocast():
                output = self.model(x)
            return compute_loss(output, y, self.criterion, cfg.aux_weight)[0]

        self.console.print(f"LR range test: {steps} steps from {lrfind.START_LR:g} to "
                           f"{lrfind.END_LR:g}" + (f" (at least {lrfind.MIN_STEPS} steps, more "
                                                    "than 5% of an epoch on data this small)"
                                                    if floor else ""), highlight=False)
        finding = lrfind.find_lr(self.model, self.train_loader, build, loss_of,
                                 optimizer=cfg.optimizer, steps=steps, floor_used=floor)
        if _dist_active():  # each rank swept its own shard: all adopt rank 0's choice
            choice = torch.tensor([finding.lr, float(finding.optimizer == "adamw")],
                                  dtype=torch.float64, device=self.device)
            torch.distributed.broadcast(choice, 0)
            finding.lr = float(choice[0])
            finding.optimizer = "adamw" if choice[1] > 0 else "sgd"
        self.finding = finding
        # the range test names one of the two optimizers it swept, never "auto"
        self.config.lr = finding.lr
        self.config.optimizer = cast(Literal["sgd", "adamw"], finding.optimizer)
        if self.is_main:
            _write_finding(self.run_dir, finding)
        self.console.print(
            f"LR range test chose {finding.optimizer} lr {finding.lr:.3g} (edge of the loss "
            f"minimum at {finding.summary()['minimum_lr']:.3g}, "
            f"÷ {finding.summary()['divisor']}; "
            f"curve in {self.run_dir / lrfind.PNG})", highlight=False)

    def _extra(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Everything besides weights that an exact resume needs (with an EMA, the raw
        weights too: the checkpoint's weights file holds the average)."""
        scheduler_state = self.scheduler.state_dict()
        scheduler_state.pop("lr_lambdas", None)  # rebuilt from the config, not restored
        loader_state = getattr(self.train_loader, "state_dict", None)
        extra = {}
        if self.ema is not None:
            extra = {"raw_model": self.raw.state_dict(), "ema_updates": self.ema.updates}
        return extra | {
            "epoch": self.epoch,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state,
            "rng": ckpt.capture_rng(),
            "loader": loader_state() if callable(loader_state) else None,
            "best": dict(self.best),
            "metrics": metrics,
            "config": self.config.model_dump(mode="json"),
        }

    def _save(self, name: str, metrics: dict[str, Any]) -> None:
        """Write checkpoint `name` (rank 0 only): the evaluated weights, the EMA when on, so
        eval, predict and submit use what validation measured."""
        if self.is_main:
            ckpt.save_checkpoint(self.run_dir, name, self._evaluated().state_dict(),
                                 self._extra(metrics))

    def _evaluated(self) -> nn.Module:
        """The module validation runs: the EMA when on, else the model."""
        return self.ema.module if self.ema is not None else self.raw

    def _restore(self) -> None:
        """Load the newest complete "last" checkpoint and continue exactly where it ended."""
        name = ckpt.latest(self.run_dir, "last")
        if name is None:
            raise ckpt.CheckpointError(
                f"nothing to resume in {self.run_dir}: no complete 'last' checkpoint"
            )
        weights, extra = ckpt.load_checkpoint(self.run_dir, name, map_location="cpu")
        if self.ema is not None and "raw_model" in extra:
            self.raw.load_state_dict(extra["raw_model"])
            self.ema.load(weights, int(extra.get("ema_updates", 0)))
        else:
            self.raw.load_state_dict(weights)
            if self.ema is not None:  # a run that had no EMA before: start it from here
                self.ema.load(weights, 0)
        self.optimizer.load_state_dict(extra["optimizer"])
        scheduler_state = dict(extra["scheduler"])
        scheduler_state["lr_lambdas"] = [None] * len(self.optimizer.param_groups)
        self.scheduler.load_state_dict(scheduler_state)
        loader_state = extra.get("loader")
        if loader_state is not None and hasattr(self.train_loader, "load_state_dict"):
            self.train_loader.load_state_dict(loader_state)
        self.epoch, self.step = int(extra["epoch"]), int(extra["step"])
        self._set_frozen(self.epoch < self.config.freeze_epochs)
        if self.config.lr == "auto":  # stopped inside the sweep: adopt the checkpoint's rate
            saved_lr = (extra.get("config") or {}).get("lr")
            self.config.lr = saved_lr if isinstance(saved_lr, float) else None
        self.best = dict(extra["best"])
        self._warn_config_changes(extra.get("config") or {})
        ckpt.restore_rng(extra["rng"])  # last: building the model above consumed random numbers
        self.console.print(f"resumed from {name} after epoch {self.epoch} (step {self.step})")

    def _warn_config_changes(self, saved: dict[str, Any]) -> None:
        """Resuming with different settings works but is no longer an exact continuation."""
        current = self.config.model_dump(mode="json")
        changed = sorted(
            k for k in current
            if k not in _RESUME_FREE_FIELDS and k in saved and saved[k] != current[k]
        )
        if changed:
            self.console.print(
                "[yellow]warning:[/] resuming with changed settings: "
                + ", ".join(f"{k} {saved[k]!r} -> {current[k]!r}" for k in changed)
            )

    # ----------------------------------------------------------------- one epoch

    def _to_device(self, x: torch.Tensor, y: torch.Tensor):
        """Move a batch to the training device (and memory format)."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _autocast(self):
        """bf16 autocast when AMP is on, otherwise a no-op context."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _no_sync(self, sync: bool):
        """Skip DDP's gradient all-reduce on accumulation micro-batches that do not step."""
        ddp = self.model._orig_mod if hasattr(self.model, "_orig_mod") else self.model
        no_sync = getattr(ddp, "no_sync", None)  # DDP's
        if sync or no_sync is None:
            return contextlib.nullcontext()
        return no_sync()

    def _optimizer_step(self) -> float:
        """Clip, step, advance the schedule; returns the lr that was used."""
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.raw.parameters(), self.config.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return lr

    def _check_finite(self, pending: list[tuple[int, torch.Tensor]], epoch: int, n: int) -> None:
        """Raise _NonFinite naming the first batch whose loss is NaN/inf (one device sync)."""
        values = torch.stack([loss for _, loss in pending]).float().cpu()
        bad = (~torch.isfinite(values)).nonzero()
        if _dist_active():
            # Every rank must stop together, or the others would wait forever in all-reduce.
            flag = torch.tensor([float(len(bad) > 0)], device=self.device)
            if _reduce_sum(flag).item() > 0 and not len(bad):
                raise _NonFinite(f"another rank's loss became non-finite in epoch {epoch + 1}")
        if len(bad):
            batch = pending[int(bad[0])][0]
            raise _NonFinite(
                f"loss became {values[int(bad[0])].item()} in epoch {epoch + 1}, "
                f"batch {batch + 1}/{n} (optimizer step {self.step + 1})"
            )

    def _stop_now(self, stop: _GracefulStop) -> bool:
        """Whether any rank was asked to stop (all ranks must agree or DDP would hang)."""
        if not _dist_active():
            return stop.requested
        flag = torch.tensor([float(stop.requested)], device=self.device)
        return bool(_reduce_sum(flag).item() > 0)

    def _train_epoch(self, epoch: int, progress: Progress, stop: _GracefulStop) -> dict | None:
        """Train one epoch; returns its stats, or None when a stop signal cut it short."""
        cfg, loader = self.config, self.train_loader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)  # the loader's shuffle/augment RNG is a function of the epoch
        if self.frozen and epoch >= cfg.freeze_epochs:
            self._set_frozen(False)
            self.console.print(f"epoch {epoch + 1}: the backbone is unfrozen")
        self._train_mode()
        n, acc = len(loader), cfg.accumulate
        # CPU syncs are free, so check every batch; on accelerators batch the syncs a little.
        sync_every = 1 if self.device.type == "cpu" else 8
        # Running sums stay on the device (no per-batch sync); the image count is known on the host.
        sums = torch.zeros(2, dtype=self.acc_dtype, device=self.device)  # loss*B, correct
        seen = 0
        pending: list[tuple[int, torch.Tensor]] = []
        task = progress.add_task(
            f"epoch {epoch + 1}/{cfg.epochs}", total=n, loss=0.0, acc=0.0, ips=0.0
        )
        start, lr = time.perf_counter(), self.optimizer.param_groups[0]["lr"]
        self._last_line = start
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(loader):
            x, y = self._to_device(x, y)
            if i == 0 and epoch == self.epoch and self.log is not None:
                self.log.images(x, *self._norm_stats(), step=epoch)
            mixed = None
            if cfg.mixup or cfg.cutmix:
                mixed = mix_batch(x, y, cfg.mixup, cfg.cutmix, mix_generator(cfg.seed, epoch, i))
            group_start = (i // acc) * acc
            group_size = min(acc, n - group_start)
            steps_now = i == group_start + group_size - 1
            with self._no_sync(steps_now):  # DDP needs forward and backward inside no_sync
                with self._autocast():
                    output = self.model(mixed.x if mixed is not None else x)
                target = y if mixed is None else _soft_target(mixed, output)
                total, main, logits = compute_loss(output, target, self.criterion,
                                                   cfg.aux_weight)
                pending.append((i, total.detach()))
                if len(pending) >= sync_every:
                    self._check_finite(pending, epoch, n)  # before the step: weights stay good
                    pending.clear()
                (total / group_size).backward()
            if steps_now:
                lr = self._optimizer_step()
                if self.ema is not None:
                    self.ema.update(self.raw)
                if self.log is not None:
                    self.log.step_lr(self.step, lr)
            sums += torch.stack([
                main.detach().to(self.acc_dtype) * len(y),
                (logits.detach().argmax(1) == y).sum().to(self.acc_dtype),
            ])
            seen += len(y)
            sync_point = (i + 1) % sync_every == 0 or i + 1 == n
            if sync_point:
                self._update_progress(progress, task, i + 1, sums, seen, start, epoch, n)
            # Alone, poll the flag after every batch; under DDP only at sync points (collective).
            if (sync_point or not _dist_active()) and self._stop_now(stop):
                progress.remove_task(task)
                return None
        if pending:
            self._check_finite(pending, epoch, n)
        progress.remove_task(task)
        seconds = time.perf_counter() - start
        loss_sum, correct, count = self._totals(sums, seen)
        return {
            "train_loss": loss_sum / max(count, 1), "train_acc": correct / max(count, 1),
            "lr": lr, "images_per_s": count / max(seconds, 1e-9),
        }

    def _totals(self, sums: torch.Tensor, count: int) -> list[float]:
        """Device sums plus the host-side count, summed over ranks: [*sums, count]."""
        both = torch.cat([sums, torch.tensor([float(count)], dtype=sums.dtype).to(sums.device)])
        return _reduce_sum(both).tolist()

    def _update_progress(self, progress, task, done: int, sums: torch.Tensor, count: int,
                         start: float, epoch: int = 0, n: int = 0) -> None:
        """Show running loss/accuracy/throughput of this rank: the bar on a terminal, else
        one plain line every `progress_every` seconds (a pipe or a log file)."""
        now = time.perf_counter()
        if progress.disable:
            if self.console.quiet or now - self._last_line < self.options.progress_every:
                return
            self._last_line = now
            loss_sum, correct = sums.tolist()
            rate = count / max(now - start, 1e-9)
            left = (n - done) * (now - start) / max(done, 1)
            self.console.print(
                f"  epoch {epoch + 1}/{self.config.epochs}  batch {done}/{n}  "
                f"loss {loss_sum / max(count, 1):.4f}  acc {correct / max(count, 1):.2%}  "
                f"{rate:,.0f} img/s  epoch ETA {_clock(left)}", highlight=False)
            return
        loss_sum, correct = sums.tolist()
        elapsed = max(now - start, 1e-9)
        progress.update(
            task, completed=done, loss=loss_sum / max(count, 1), acc=correct / max(count, 1),
            ips=count / elapsed,
        )

    @torch.no_grad()
    def _validate(self, stop: _GracefulStop) -> dict | None:
        """Validation loss (training criterion), accuracy and Kaggle log loss; None if stopped."""
        if self.val_loader is None:
            return {"val_loss": None, "val_acc": None, "val_logloss": None}
        self.model.eval()
        model = self.ema.module if self.ema is not None else self.model
        sums = torch.zeros(3, dtype=self.acc_dtype, device=self.device)  # loss, correct, logloss
        seen = 0
        for x, y in self.val_loader:
            x, y = self._to_device(x, y)
            with self._autocast():
                output = model(x)
            logits = (output[0] if isinstance(output, (tuple, list)) else output).float()
            sums += torch.stack([
                self.criterion(logits, y).to(self.acc_dtype) * len(y),
                (logits.argmax(1) == y).sum().to(self.acc_dtype),
                log_loss_sum(logits, y).to(device=self.device, dtype=self.acc_dtype),
            ])
            seen += len(y)
            if not _dist_active() and stop.requested:
                return None
        loss, correct, logloss, count = self._totals(sums, seen)
        count = max(count, 1)
        return {
            "val_loss": loss / count, "val_acc": correct / count, "val_logloss": logloss / count,
        }

    # ----------------------------------------------------------------- bookkeeping

    def _finish_epoch(self, record: dict[str, Any], logger: MetricsLogger | None) -> None:
        """Log metrics, redraw curves, and write "best" (if improved) then "last"."""
        self.epoch = record["epoch"]
        improved = record["val_acc"] is not None and record["val_acc"] > self.best["val_acc"]
        if improved:
            self.best = {"val_acc": record["val_acc"], "val_logloss": record["val_logloss"],
                         "epoch": record["epoch"]}
        if not self.is_main:
            return
        assert logger is not None  # the main process logs
        logger.log(record)
        if self.log is not None:
            self.log.epoch(record)
        try:
            plot(self.run_dir)
        except Exception as exc:  # noqa: BLE001 -- a plotting problem must never cost a run
            self.console.print(f"[yellow]warning:[/] could not draw curves.png: {exc}")
        if improved:
            self._save("best", record)
        self._save("last", record)
        self._print_epoch(record, improved)

    def _print_epoch(self, r: dict[str, Any], improved: bool) -> None:
        """One summary line per epoch (also in logs, where the progress bar is disabled)."""
        val = ""
        if r["val_acc"] is not None:
            val = (f"  val loss {r['val_loss']:.4f} acc {r['val_acc']:.2%} "
                   f"logloss {r['val_logloss']:.4f}" + ("  [green]*best[/]" if improved else ""))
        self.console.print(
            f"epoch {r['epoch']}/{self.config.epochs}  train loss {r['train_loss']:.4f} "
            f"acc {r['train_acc']:.2%}{val}  lr {r['lr']:.3g}  "
            f"{r['images_per_s']:,.0f} img/s  {r['epoch_time']:.1f}s",
            highlight=False,
            soft_wrap=True,  # one line per epoch, also in an 80-column log
        )

    def _non_finite(self, record: dict[str, Any]) -> str:
        """What went non-finite this epoch (a metric or the weights), or "" when all is well.

        The loss is checked before every step, but the last step of an epoch can still turn
        the weights into NaN/inf; validation and the weights themselves catch that.
        """
        for key in ("train_loss", "val_loss", "val_logloss"):
            value = record.get(key)
            if value is not None and not math.isfinite(value):
                return f"{key.replace('_', ' ')} became {value}"
        state = [(k, t) for k, t in self.raw.state_dict().items() if t.is_floating_point()]
        if not state:
            return ""
        finite = torch.stack([torch.isfinite(t).all() for _, t in state]).cpu()  # one sync
        bad = [k for (k, _), ok in zip(state, finite.tolist()) if not ok]
        return f"the weights became non-finite ({bad[0]})" if bad else ""

    def _print_stop(self, what: str) -> None:
        """The one line that says training diverged and which checkpoint is still good."""
        # An error goes to stderr like every other `error:` line; a quiet console stays quiet
        # and one writing to its own file (a test, a log) keeps the line.
        to_stdout = self.console.file is sys.stdout and not self.console.quiet
        console = Console(stderr=True, highlight=False) if to_stdout else self.console
        console.print(
            f"[red]error: training diverged: {what}.[/] The last good checkpoint (after epoch "
            f"{self.epoch}) was kept. Try a lower lr, grad_clip or warmup.",
            soft_wrap=True,
        )

    def _result(self, reason: str) -> FitResult:
        """The FitResult for the current state."""
        found = self.best["epoch"] > 0
        return FitResult(
            best_val_acc=float(self.best["val_acc"]) if found else math.nan,
            best_val_logloss=float(self.best["val_logloss"]) if found else math.nan,
            best_epoch=int(self.best["epoch"]), last_epoch=self.epoch,
            stopped_reason=reason, run_dir=self.run_dir,
        )

    def _report(self, result: FitResult) -> None:
        """Final summary table."""
        table = Table(title="training finished" if result.stopped_reason == "done"
                      else f"training stopped ({result.stopped_reason})", show_header=False)
        found = result.best_epoch > 0
        table.add_row("best val accuracy", f"{result.best_val_acc:.2%}" if found else "-")
        table.add_row("best val log loss", f"{result.best_val_logloss:.4f}" if found else "-")
        table.add_row("best epoch", str(result.best_epoch or "-"))
        table.add_row("epochs completed", f"{result.last_epoch}/{self.config.epochs}")
        table.add_row("run folder", str(self.run_dir))
        self.console.print(table)

    # ----------------------------------------------------------------- driver

    def fit(self, resume: bool = False, stop_after: int | None = None) -> FitResult:
        """Train until `config.epochs` are done (or until `stop_after` completed epochs).

        `resume=True` continues from the run folder's newest complete "last" checkpoint;
        otherwise the run starts fresh (metrics files are reset, an epoch-0 checkpoint written).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        device = select_device(self.config.device)
        with _determinism(self.config.deterministic, device), _GracefulStop() as stop:
            self._build()
            self._print_header()
            self._build_optimizer(resume)
            logger = MetricsLogger(self.run_dir) if self.is_main else None
            if resume:
                self._restore()
            else:
                if self.is_main:  # a fresh start must not inherit an older run's "best"
                    ckpt.remove_checkpoint(self.run_dir, "best")
                self._save("last", {})  # epoch 0: an interrupted first epoch is resumable
            if logger is not None:
                logger.truncate(self.epoch)
            self._print_settings(resume)
            if resume and self.epoch >= self.config.epochs:
                self.console.print(
                    f"{self.run_dir} already finished its {self.epoch} epochs; to train it "
                    f"further, resume with more epochs, e.g. --epochs {self.epoch * 2}",
                    highlight=False, soft_wrap=True)
                reason = "done"
            else:
                if self.is_main:
                    self.log = RunLog(self.run_dir, self.options.mlflow,
                                      self.config.model_dump(mode="json"))
                try:
                    reason = self._loop(stop, logger, stop_after)
                finally:
                    if self.log is not None:
                        self.log.close()
        result = self._result(reason)
        self._report(result)
        return result

    def _norm_stats(self) -> tuple[tuple, tuple]:
        """(mean, std) the loader normalised with, to show its images as they were."""
        aug = getattr(self.train_loader, "aug", None)
        from ..data.augment import IMAGENET_MEAN, IMAGENET_STD

        return (getattr(aug, "mean", IMAGENET_MEAN), getattr(aug, "std", IMAGENET_STD))

    def _print_header(self) -> None:
        """The start header: device, data and run folder (the settings follow the LR test)."""
        header = dict(self.options.header or {})
        lines = [f"device {self.device}" + (" (bf16 autocast)" if self.amp else "")]
        lines += [f"{key} {value}" for key, value in header.items()]
        lines.append(f"run folder {self.run_dir}")
        for line in lines:
            self.console.print(line, highlight=False, soft_wrap=True)

    def _print_settings(self, resume: bool) -> None:
        """The effective settings: recipe, optimizer, the rate and where it came from."""
        cfg = self.config
        lr = cfg.lr if isinstance(cfg.lr, str) else f"{cfg.resolved_lr():.3g}"
        source = " (LR range test)" if self.finding is not None else (
            " (resumed)" if resume else "")
        wd = cfg.resolved_weight_decay()
        settings = (f"recipe {cfg.recipe or '-'}: {cfg.resolved_optimizer()}"
                    f"{' Nesterov' if cfg.resolved_optimizer() == 'sgd' and cfg.nesterov else ''}"
                    f" lr {lr}{source}, weight decay {wd:g}, {cfg.schedule} schedule, "
                    f"warm-up {cfg.warmup_epochs:g} epochs, label smoothing "
                    f"{cfg.label_smoothing:g}, batch {cfg.batch_size}, {cfg.epochs} epochs")
        extras = [f"EMA {cfg.ema:g}" if cfg.ema else "",
                  f"mixup {cfg.mixup:g}" if cfg.mixup else "",
                  f"cutmix {cfg.cutmix:g}" if cfg.cutmix else "",
                  f"RandAugment {cfg.randaugment[0]},{cfg.randaugment[1]}"
                  if cfg.randaugment else "",
                  "TrivialAugment" if cfg.trivialaugment else "",
                  f"backbone frozen for {cfg.freeze_epochs} epochs" if cfg.freeze_epochs else "",
                  f"backbone lr x{cfg.backbone_lr_scale:g}" if cfg.backbone_lr_scale != 1 else ""]
        extras = [e for e in extras if e]
        self.console.print(settings + (" + " + ", ".join(extras) if extras else ""),
                           highlight=False, soft_wrap=True)

    def _loop(self, stop: _GracefulStop, logger, stop_after: int | None) -> str:
        """The epoch loop; returns the stopped reason."""
        limit = self.config.epochs if stop_after is None else min(stop_after, self.config.epochs)
        with _progress(self.console) as progress:
            for epoch in range(self.epoch, limit):
                started = time.perf_counter()
                try:
                    train = self._train_epoch(epoch, progress, stop)
                except _NonFinite as exc:
                    self._print_stop(str(exc))
                    return "nan"
                val = self._validate(stop) if train is not None else None
                if train is None or val is None:
                    self.console.print(
                        f"[yellow]{stop.signal_name or 'stop'} received:[/] stopped in epoch "
                        f"{epoch + 1}; 'last' holds epoch {self.epoch}, "
                        f"resume restarts epoch {epoch + 1}."
                    )
                    return "interrupted"
                record = {"epoch": epoch + 1, **train, **val,
                          "epoch_time": time.perf_counter() - started}
                problem = self._non_finite(record)
                if problem:  # never log, plot or checkpoint a diverged epoch
                    self._print_stop(f"{problem} in epoch {epoch + 1}")
                    return "nan"
                self._finish_epoch(record, logger)
                if self._stop_now(stop):
                    self.console.print(
                        f"[yellow]{stop.signal_name} received:[/] stopped after epoch {epoch + 1}."
                    )
                    return "interrupted"
        return "done" if self.epoch >= self.config.epochs else "paused"


def fit(
    model_factory: Callable[[], nn.Module],
    train_loader: Batches,
    val_loader: Batches | None,
    config: TrainConfig,
    run_dir: Path | str,
    resume: bool = False,
    console: Console | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    stop_after: int | None = None,
    options: FitOptions | None = None,
) -> FitResult:
    """Train `model_factory()` on `train_loader`, validating on `val_loader`, in `run_dir`.

    `train_loader` is any re-iterable of (x, y) batches with `len()`; `set_epoch(epoch)`,
    `state_dict()` and `load_state_dict()` are used when present. `wrap` (e.g. DDP) is applied
    after the model is on its device; checkpoints always hold the unwrapped weights.
    `stop_after` ends the call after that many completed epochs (stopped_reason "paused")
    without changing the schedule, so a later `resume=True` continues exactly.
    """
    trainer = Trainer(model_factory, train_loader, val_loader, config, run_dir, console, wrap,
                      options)
    return trainer.fit(resume=resume, stop_after=stop_after)


def range_test(
    model_factory: Callable[[], nn.Module],
    train_loader: Batches,
    config: TrainConfig,
    out_dir: Path | str,
    console: Console | None = None,
    options: FitOptions | None = None,
):
    """The LR range test alone (`archc lr-find`): the LRFinding, with lr_finder.png and
    lr_finder.json written to `out_dir`. `config.lr` is treated as "auto"."""
    trainer = Trainer(model_factory, train_loader, None, config, out_dir, console,
                      options=options)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    with _determinism(config.deterministic, select_device(config.device)):
        trainer._build()
        trainer._find_lr()
    return trainer.finding
