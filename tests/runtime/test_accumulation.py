"""Gradient accumulation: the gradient an optimizer step sees is the mean of its group's
per-batch gradients, a short last group included (issue 11, item 28).

The net has no batch norm and no dropout, so a batch's gradient depends only on the weights
and the batch: each step's gradient can be recomputed independently, batch by batch, from
a snapshot of the weights it was taken at.
"""
from __future__ import annotations

import copy

import torch
from rich.console import Console
from torch import nn

from runtime.training.config import TrainConfig
from runtime.training.loop import Trainer

N_BATCHES, ACCUMULATE, BATCH = 5, 2, 4  # groups of 2, 2 and a short last group of 1


class FixedBatches:
    """A re-iterable loader of fixed, distinct batches (the same ones every epoch)."""

    def __init__(self, n: int, batch: int):
        generator = torch.Generator().manual_seed(0)
        self.batches = [(torch.randn(batch, 3, 2, 2, generator=generator) * (1 + i),
                         torch.randint(0, 2, (batch,), generator=generator)) for i in range(n)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 2))


def _gradient(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    """The gradient of the mean cross-entropy on one batch."""
    model.zero_grad(set_to_none=True)
    x, y = batch
    nn.functional.cross_entropy(model(x), y).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def test_each_step_gets_the_mean_gradient_of_its_group(tmp_path, monkeypatch):
    steps: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []
    original = Trainer._optimizer_step

    def recording_step(self):
        grads = {k: p.grad.clone() for k, p in self.raw.named_parameters()}
        steps.append((copy.deepcopy(self.raw), grads))  # the weights the gradient was taken at
        return original(self)

    monkeypatch.setattr(Trainer, "_optimizer_step", recording_step)
    config = TrainConfig(epochs=1, batch_size=BATCH, accumulate=ACCUMULATE, lr=0.5,
                         schedule="constant", weight_decay=0.0, device="cpu", optimizer="sgd")
    loader = FixedBatches(N_BATCHES, BATCH)
    trainer = Trainer(_net, loader, None, config, tmp_path, console=Console(quiet=True))
    trainer.fit()

    groups = [loader.batches[i:i + ACCUMULATE] for i in range(0, N_BATCHES, ACCUMULATE)]
    assert [len(g) for g in groups] == [2, 2, 1] and len(steps) == len(groups)
    for (weights, got), group in zip(steps, groups):
        per_batch = [_gradient(weights, batch) for batch in group]
        for name, value in got.items():
            want = torch.stack([g[name] for g in per_batch]).mean(0)
            torch.testing.assert_close(value, want, rtol=1e-5, atol=1e-7,
                                       msg=f"{name}, group of {len(group)}")
