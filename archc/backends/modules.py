"""Torch modules that PyTorch lacks and specs need (Maxout). Generated Python copies them."""
from __future__ import annotations

import torch
from torch import nn


class Maxout(nn.Module):
    """Maxout (Goodfellow et al., 2013): the maximum over groups of k consecutive channels."""

    def __init__(self, k: int = 2):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, ...) -> (B, C/k, k, ...) -> max over the k pieces
        return x.unflatten(1, (x.shape[1] // self.k, self.k)).amax(2)

    def extra_repr(self) -> str:
        return f"k={self.k}"
