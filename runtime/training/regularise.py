"""Regularisers applied by the training loop: a weight EMA, and mixup / cutmix batches.

Both work on tensors already on the training device, so the GPU-resident loader and the CPU
path get the same treatment. Mixing draws its randomness from a generator seeded by
(seed, epoch, batch), so a resumed epoch mixes the same way.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class ModelEMA:
    """An exponential moving average of a model's floating-point state (weights and BN stats).

    After optimizer step t (counted from 1) every float tensor becomes
    ``ema = d_t * ema + (1 - d_t) * raw`` with ``d_t = min(decay, (1 + t) / (10 + t))``: the
    ramp keeps the average from clinging to the random initialisation in a short run.
    Integer buffers (BN's step counter) are copied.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """d_t for the next update."""
        t = self.updates + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current state into the average."""
        d = self.current_decay()
        self.updates += 1
        raw = model.state_dict()
        for key, avg in self.module.state_dict().items():
            value = raw[key].detach()
            if avg.is_floating_point():
                avg.mul_(d).add_(value.to(avg.dtype), alpha=1 - d)
            else:
                avg.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged state (what is evaluated and checkpointed)."""
        return self.module.state_dict()

    def load(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Restore the average from a checkpoint."""
        self.module.load_state_dict(state)
        self.updates = int(updates)


@dataclass
class Mix:
    """One mixed batch: the images, each row's two labels and the weight of the first."""

    x: torch.Tensor  # (B, C, H, W)
    y_a: torch.Tensor  # (B,)
    y_b: torch.Tensor  # (B,)
    lam: float

    def targets(self, num_classes: int, dtype=torch.float32) -> torch.Tensor:
        """Soft targets (B, num_classes): lam on y_a, 1 - lam on y_b."""
        one = torch.nn.functional.one_hot
        a = one(self.y_a, num_classes).to(dtype)
        b = one(self.y_b, num_classes).to(dtype)
        return self.lam * a + (1 - self.lam) * b


def mix_generator(seed: int, epoch: int, batch: int) -> np.random.Generator:
    """The generator of one batch's mixing draws."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(batch), 0x31C])


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator) -> Mix:
    """mixup (Zhang et al. 2018): x' = lam x + (1 - lam) x[perm], lam ~ Beta(alpha, alpha)."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    mixed = lam * x + (1 - lam) * x.index_select(0, perm)
    return Mix(mixed, y, y.index_select(0, perm), lam)


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator) -> Mix:
    """CutMix (Yun et al. 2019): a box of x[perm] pasted into x; lam is the area kept.

    The box has area fraction 1 - lam0 (lam0 ~ Beta(alpha, alpha)) around a uniform centre,
    clipped at the borders; lam is then recomputed from the clipped box so the labels
    weigh exactly the pixels each image contributes.
    """
    _, _, h, w = x.shape
    lam0 = float(rng.beta(alpha, alpha))
    cut = np.sqrt(1 - lam0)
    bh, bw = int(round(h * cut)), int(round(w * cut))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, bottom = max(cy - bh // 2, 0), min(cy + bh - bh // 2, h)
    left, right = max(cx - bw // 2, 0), min(cx + bw - bw // 2, w)
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x.index_select(0, perm)[:, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)
    return Mix(mixed, y, y.index_select(0, perm), float(lam))


def mix_batch(x: torch.Tensor, y: torch.Tensor, mixup_alpha: float, cutmix_alpha: float,
              rng: np.random.Generator) -> Mix | None:
    """mixup, cutmix or (both enabled) one of them with equal chance; None when both are 0."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return None
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < 0.5)
    if use_cutmix:
        return cutmix(x, y, cutmix_alpha, rng)
    return mixup(x, y, mixup_alpha, rng)
