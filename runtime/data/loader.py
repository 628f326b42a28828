"""Batches from a decoded `ImageSet`: shuffling, DDP sharding, batched augmentation, prefetch.

`BatchLoader` replaces torch's Dataset/DataLoader for the cached uint8 images: it gathers a batch
of uint8 rows (on the GPU when the whole array fits there, otherwise on the CPU with pinned
memory), then augments the whole batch at once with `runtime.data.augment`, on the batch's device.

Determinism: the epoch's permutation comes from (seed, epoch) and the augmentation of global batch
k from (seed, epoch, k), never from wall-clock, threads or the device. `set_epoch(e)` therefore
makes any epoch reproducible, and a run resumed at epoch e sees the same batches.
"""
from __future__ import annotations

import math
import queue
import threading
import weakref
from collections.abc import Iterator

import numpy as np
import torch

from .augment import (
    AugmentConfig,
    apply_params,
    apply_policy,
    eval_batch,
    sample_params,
)
from .folders import ImageSet

#: copy the uint8 array to the GPU when it needs less than this fraction of free GPU memory.
GPU_RESIDENT_FRACTION = 0.4

_SHUFFLE, _AUGMENT, _POLICY = 0x5F, 0xA6, 0x7A
_RESIDENT: dict[tuple[int, str], tuple[weakref.ref, torch.Tensor]] = {}


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across processes and platforms)."""
    ss = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts])
    return int(ss.generate_state(1, np.uint64)[0] & np.uint64(0x7FFFFFFFFFFFFFFF))


def _resident_copy(images: np.ndarray, device: torch.device, force: bool) -> torch.Tensor | None:
    """The whole uint8 array as one tensor on `device`, shared by loaders over the same array.

    On CUDA the copy is made only when `force` or when it takes less than
    GPU_RESIDENT_FRACTION of the free memory (None otherwise). On the CPU the array is read
    into memory once (a memmap cache becomes plain RAM).
    """
    key = (id(images), str(device))
    hit = _RESIDENT.get(key)
    if hit is not None and hit[0]() is images:
        return hit[1]
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if not force and images.nbytes >= GPU_RESIDENT_FRACTION * free:
            return None
    if device.type == "cpu":
        out = torch.from_numpy(np.array(images))  # one copy: RAM, writable, even of a memmap
    else:
        out = torch.empty(images.shape, dtype=torch.uint8, device=device)
        step = max(1, (64 << 20) // max(1, int(np.prod(images.shape[1:]))))  # ~64 MiB chunks
        for i in range(0, len(images), step):
            chunk = torch.from_numpy(np.array(images[i: i + step]))  # a writable copy
            cuda = device.type == "cuda"  # pinned memory lets the copy overlap the next read
            out[i: i + step].copy_(chunk.pin_memory() if cuda else chunk, non_blocking=cuda)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    try:
        _RESIDENT[key] = (weakref.ref(images), out)
        weakref.finalize(images, _RESIDENT.pop, key, None)  # free it with the array
    except TypeError:
        pass
    return out


class BatchLoader:
    """Iterate ``(x, y)`` batches over ``images[indices]``.

    x: float32 (B, 3, out_size, out_size) on ``device`` (augmented when ``train``, else resized and
    normalised); y: int64 (B,) on ``device``. ``len(loader)`` is the number of batches.

    Order: when ``train`` the indices are shuffled by a permutation drawn from (seed, epoch); call
    `set_epoch` before each epoch (like DistributedSampler). Without ``train`` the order is
    ``indices`` as given and there is no randomness.

    Sharding (``world_size > 1``): the *global* batch size is ``G = batch_size * world_size``.
    Global batch k is the slice ``perm[k*G:(k+1)*G]`` of the epoch's permutation and rank r takes
    the contiguous rows ``[r*batch_size, (r+1)*batch_size)`` of it. So every rank gets a disjoint,
    equal-sized share and **concatenating the ranks' batch k (rank 0 first) gives exactly the
    single-process batch k** of a loader with ``batch_size = G`` and the same seed -- same indices,
    same order, same augmented pixels: augmentation parameters are drawn for all G global positions
    from a generator seeded by (seed, epoch, k), and each rank keeps its rows. (This is a
    block-strided assignment rather than DistributedSampler's element stride, which would only
    give the same batch up to an interleaving.) If the last global batch is short (and not
    ``drop_last``) it is padded by wrapping around the permutation, like DistributedSampler, until
    it splits evenly, so all ranks run the same number of equally sized steps; the padded
    positions are duplicates and are the last rows of the last global batch.
    ``drop_last`` drops a short last global batch instead.

    Memory (``resident``): a resident loader holds the whole uint8 array as one tensor on
    ``device`` (copied once, shared by loaders over the same array) and gathers and augments each
    batch there, so on a GPU the host does no per-batch work. ``None`` (the default) means
    resident on CUDA when the array takes < 40% of the free GPU memory, streamed otherwise;
    ``True`` forces it (also on the CPU, where it reads a memmap cache into RAM). A streaming
    loader gathers rows on the CPU (a background thread prepares the next batch when
    ``prefetch``), pins them and copies them with ``non_blocking=True``. Both give the same
    batches.
    """

    def __init__(
        self,
        images: ImageSet,
        indices: np.ndarray,
        batch_size: int,
        train: bool,
        out_size: int,
        device: torch.device | str = "cpu",
        aug: AugmentConfig | None = None,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        prefetch: bool = True,
        resident: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad rank/world_size {rank}/{world_size}")
        self.images = images
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(images)):
            raise IndexError("indices out of range for the ImageSet")
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.out_size = int(out_size)
        self.device = torch.device(device)
        self.aug = aug if aug is not None else AugmentConfig()
        self._policy = self.aug.policy() if self.train else None
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.prefetch = bool(prefetch)
        self.epoch = 0
        self._labels = np.asarray(images.labels, dtype=np.int64)
        self._resident_images: torch.Tensor | None = None
        self._resident_labels: torch.Tensor | None = None
        if resident or (resident is None and self.device.type == "cuda"):
            self._resident_images = _resident_copy(images.images, self.device, bool(resident))
            if self._resident_images is not None:
                self._resident_labels = torch.from_numpy(self._labels).to(self.device)

    @property
    def resident(self) -> bool:
        """Whether the whole image array lives on the loader's device."""
        return self._resident_images is not None

    # ------------------------------------------------------------------ bookkeeping

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        n, g = len(self.indices), self.global_batch_size
        return n // g if self.drop_last else math.ceil(n / g)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))

    def permutation(self) -> np.ndarray:
        """The epoch's order of dataset indices (all ranks agree)."""
        if not self.train:
            return self.indices.copy()
        g = torch.Generator().manual_seed(_seed(self.seed, self.epoch, _SHUFFLE))
        return self.indices[torch.randperm(len(self.indices), generator=g).numpy()]

    def plan(self) -> list[tuple[np.ndarray, int, int]]:
        """This rank's batches for the current epoch: (dataset indices, global batch number k,
        number of global positions in batch k)."""
        perm = self.permutation()
        n, g, w, b = len(perm), self.global_batch_size, self.world_size, self.batch_size
        out = []
        for k in range(len(self)):
            glob = perm[k * g: (k + 1) * g]
            per_rank = b
            if len(glob) < g:  # short last batch: pad by wrapping so it splits evenly
                per_rank = math.ceil(len(glob) / w)
                pad = per_rank * w - len(glob)
                if pad:
                    glob = np.concatenate([glob, np.resize(perm, pad)]) if n else glob
            out.append((glob[self.rank * per_rank: (self.rank + 1) * per_rank], k, len(glob)))
        return out

    # ------------------------------------------------------------------ iteration

    def _gather_cpu(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        # sorted reads are kinder to a memmap; restore the batch order afterwards
        order = np.argsort(idx, kind="stable")
        rows = np.empty((len(idx), *self.images.images.shape[1:]), dtype=np.uint8)
        rows[order] = self.images.images[idx[order]]
        x = torch.from_numpy(rows)
        y = torch.from_numpy(self._labels[idx])
        if self.device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def _cpu_batches(self, plan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.prefetch or len(plan) < 2:
            for idx, _, _ in plan:
                yield self._gather_cpu(idx)
            return
        q: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def work() -> None:
            try:
                for idx, _, _ in plan:
                    item = self._gather_cpu(idx)
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
                q.put(e)

        t = threading.Thread(target=work, name="BatchLoader-prefetch", daemon=True)
        t.start()
        try:
            for _ in range(len(plan)):
                item = q.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            t.join(timeout=5)

    def _transform(self, x_u8: torch.Tensor, k: int) -> torch.Tensor:
        if not self.train:
            return eval_batch(x_u8, self.out_size, self.aug)
        g = torch.Generator().manual_seed(_seed(self.seed, self.epoch, k, _AUGMENT))
        if self._policy is not None:  # per image; seeded by (seed, epoch, batch, rank)
            x_u8 = apply_policy(x_u8, self._policy,
                                _seed(self.seed, self.epoch, k, self.rank, _POLICY))
        _, h, w, _ = x_u8.shape
        # draw for all G global positions (a fixed size, so a short last batch and every rank see
        # the same per-position parameters), then keep this rank's rows
        theta = sample_params(self.global_batch_size, h, w, self.aug, g)
        per_rank = x_u8.shape[0]
        theta = theta[self.rank * per_rank: (self.rank + 1) * per_rank]
        return apply_params(x_u8, theta, self.out_size, self.aug)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plan()
        if self._resident_images is not None:
            labels = self._resident_labels
            assert labels is not None  # resident with the images
            for idx, k, _ in plan:
                i = torch.from_numpy(idx).to(self.device, non_blocking=True)
                x_u8 = self._resident_images.index_select(0, i)  # (B, S, S, 3) uint8
                yield self._transform(x_u8, k), labels[i]
            return
        for (x_u8, y), (_, k, _) in zip(self._cpu_batches(plan), plan):
            if self.device.type != "cpu":
                x_u8 = x_u8.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
            yield self._transform(x_u8, k), y
