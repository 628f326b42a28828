"""torchrun / DistributedDataParallel plumbing: the PyTorch way, no home-made launcher.

`torchrun --nproc_per_node N -m -- archc train ...` sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*;
`archc train --nproc N` only builds that torchrun command line. The `--` matters: torchrun's
argparse classifies every argument up front, so without it archc's `--run` is rejected as an
ambiguous abbreviation of torchrun's `--run-path`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.size > 1


def from_env() -> World:
    """The world torchrun describes in the environment (a single process without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), size)


def init(world: World, device: torch.device) -> None:
    """Join the process group: NCCL on CUDA, gloo on the CPU."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_text(text: str | None, world: World) -> str:
    """Rank 0's string on every rank (e.g. the run folder name)."""
    if not world.distributed:
        return text or ""
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0] or ""


def ddp_wrapper(world: World, device: torch.device, sync_bn: bool, partial: bool = False):
    """The `wrap` hook for `fit`: SyncBatchNorm (optional, CUDA only), then DDP. `partial`:
    some parameters get no gradient for a while (a frozen backbone), so DDP must look for
    them every step instead of waiting for their gradients forever."""
    sync_bn = sync_bn and _sync_bn_supported(world, device)

    def wrap(model: nn.Module) -> nn.Module:
        if sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                   find_unused_parameters=partial)

    return wrap if world.distributed else None


def _sync_bn_supported(world: World, device: torch.device) -> bool:
    """SyncBatchNorm runs on CUDA only (DDP rejects it on the CPU); elsewhere warn and go on
    with per-process batch statistics rather than fail a run that is otherwise fine."""
    if device.type == "cuda":
        return True
    if world.is_main and world.distributed:
        print(
            f"warning: --sync-bn needs CUDA GPUs; on {device.type} each process keeps its "
            "own batch-norm statistics",
            file=sys.stderr,
        )
    return False


def launch(nproc: int, argv: list[str]) -> int:
    """Re-run this command under torchrun with `nproc` processes; returns its exit code."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "--",
        "archc",
        *argv,
    ]
    return subprocess.call(cmd)
