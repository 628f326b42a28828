"""Torch modules of the token layers (ViT): patches to tokens and back, a class token, a
position embedding, pooling over tokens, self-attention and the transformer's MLP.
Generated Python copies them, so each is self-contained (torch and nn only) and keeps its
constructor arguments as attributes of the same names.
"""
from __future__ import annotations

import torch
from torch import nn

from .modules import OwnParameter


class Tokens(nn.Module):
    """An image to a sequence of tokens, one per pixel in row-major order (ViT's
    `_process_input`): (B, C, H, W) → (B, H·W, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)  # (B, C, H·W) -> (B, H·W, C)


class Untokens(nn.Module):
    """Tokens back to an image of `height` rows: (B, H·W, C) → (B, C, H, W)."""

    def __init__(self, height: int):
        super().__init__()
        self.height = height

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).unflatten(2, (self.height, -1))  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"height={self.height}"


class Patchify(nn.Conv2d):
    """ViT's patch embedding: a patch×patch conv of stride patch, then tokens,
    (B, C, H, W) → (B, H/p · W/p, out). Its weights are the conv's (`conv_proj.weight`)."""

    def __init__(self, in_channels: int, out_channels: int, patch: int):
        super().__init__(in_channels, out_channels, patch, stride=patch)
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten(2).transpose(1, 2)  # (B, H'·W', out)


class ClassToken(OwnParameter):
    """A learned token put before the sequence (ViT's `class_token`, zeros at first):
    (B, T, C) → (B, T + 1, C). Stored under its holder's key (see OwnParameter)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.zeros(1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.weight.expand(x.shape[0], -1, -1), x], dim=1)

    def extra_repr(self) -> str:
        return f"{self.channels}"


class PositionEmbedding(OwnParameter):
    """A learned embedding added to every position (ViT's `encoder.pos_embedding`,
    N(0, 0.02) at first): (B, T, C) + (1, T, C). Stored under its holder's key."""

    def __init__(self, tokens: int, channels: int):
        super().__init__()
        self.tokens, self.channels = tokens, channels
        self.weight = nn.Parameter(torch.empty(1, tokens, channels).normal_(std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight

    def extra_repr(self) -> str:
        return f"{self.tokens}, {self.channels}"


class TokenPool(nn.Module):
    """Tokens to one feature vector: the class token (`x[:, 0]`) or the mean over tokens,
    (B, T, C) → (B, C)."""

    def __init__(self, mode: str = "class"):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.mode == "class" else x.mean(1)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


class SelfAttention(nn.MultiheadAttention):
    """Multi-head self-attention with nn.MultiheadAttention's parameters (`in_proj_weight`,
    `in_proj_bias`, `out_proj`), as torchvision's ViT holds them, on a batch-first sequence.
    The forward writes the products out (rather than torch's fused kernel) so that
    FlopCounterMode sees every one: 3 projections, scores, weighted sum, output."""

    archc_layer = True  # one layer of the spec, although out_proj is a submodule

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__(embed_dim, num_heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        b, t, c = x.shape
        qkv = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # (B, heads, T, T)
        weights = nn.functional.dropout(scores.softmax(-1), self.dropout, self.training)
        out = (weights @ v).transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        return self.out_proj(out)


class MLP(nn.Sequential):
    """The transformer's MLP, Linear-GELU-Dropout-Linear-Dropout over the last axis, keyed
    as torchvision's MLPBlock and ops.MLP (`mlp.0`, `mlp.3`)."""

    archc_layer = True  # one layer of the spec, built of five torch modules

    def __init__(self, in_features: int, hidden_features: int, out_features: int,
                 dropout: float = 0.0):
        super().__init__(nn.Linear(in_features, hidden_features), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden_features, out_features), nn.Dropout(dropout))
        self.in_features, self.hidden_features = in_features, hidden_features
        self.out_features, self.dropout = out_features, dropout
