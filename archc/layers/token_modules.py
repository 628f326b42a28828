"""Torch modules of the token layers (ViT): patches to tokens and back, a class token, a
position embedding, pooling over tokens, self-attention and the transformer's MLP.
Generated Python copies them, so each is self-contained (torch and nn only) and keeps its
constructor arguments as attributes of the same names.
"""
from __future__ import annotations

import torch
from torch import nn

from archc.layers.modules import OwnParameter


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
        return torch.unflatten(x.transpose(1, 2), 2, (self.height, -1))  # (B, C, H, W)

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

    # one input (B, T, C), where nn.MultiheadAttention takes query, key and value
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        b, t, c = x.shape
        qkv = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # (B, heads, T, T)
        weights = nn.functional.dropout(scores.softmax(-1), self.dropout, self.training)
        out = (weights @ v).transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        projected: torch.Tensor = self.out_proj(out)
        return projected


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


class WindowAttention(nn.Module):
    """Swin's (shifted) window attention on a channel-last image (B, H, W, C), with
    torchvision's keys: `qkv`, `proj`, and either v1's `relative_position_bias_table`
    or v2's continuous position bias (`cpb_mlp`, `logit_scale`, cosine attention), plus
    the buffers `relative_position_index` (and v2's `relative_coords_table`).

    The image is padded to whole windows; with `shift`, it is rolled by shift pixels
    first, and a mask keeps the attention inside each region the roll brought together.
    An axis no longer than one window is not shifted."""

    archc_layer = True  # one layer of the spec, although qkv and proj are submodules
    relative_position_index: torch.Tensor  # a buffer (N, N)

    def __init__(self, dim: int, heads: int, window: int, shift: int = 0, version: int = 1,
                 dropout: float = 0.0, attention_dropout: float = 0.0):
        super().__init__()
        self.dim, self.heads, self.window, self.shift = dim, heads, window, shift
        self.version, self.dropout, self.attention_dropout = version, dropout, attention_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        span = torch.arange(window)
        rows, cols = torch.meshgrid(span, span, indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()  # (N,) each, N = window²
        d_row = rows[:, None] - rows[None, :] + window - 1  # (N, N), 0 .. 2·window-2
        d_col = cols[:, None] - cols[None, :] + window - 1
        index = (d_row * (2 * window - 1) + d_col).flatten()  # into the ((2w-1)², heads) table
        self.register_buffer("relative_position_index", index)
        if version == 1:
            table = torch.empty((2 * window - 1) ** 2, heads)
            self.relative_position_bias_table = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))
            return
        offsets = torch.arange(1 - window, window, dtype=torch.float32) / (window - 1) * 8
        grid = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1)[None]
        # (1, 2w-1, 2w-1, 2): log-spaced offsets in [-1, 1]
        self.register_buffer("relative_coords_table", grid.sign() * (grid.abs() + 1).log2() / 3)
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), 10.0).log())
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True),
                                     nn.Linear(512, heads, bias=False))

    def position_bias(self) -> torch.Tensor:
        """The bias each head adds to the scores of every pair in a window: (1, heads, N, N)."""
        if self.version == 1:
            table = self.relative_position_bias_table  # ((2w-1)², heads)
        else:
            table = self.cpb_mlp(self.relative_coords_table).view(-1, self.heads)
        n = self.window**2
        bias = table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1)[None]
        return bias if self.version == 1 else 16 * bias.sigmoid()

    def shift_mask(self, height: int, width: int, shifts: tuple[int, int], x: torch.Tensor
                   ) -> torch.Tensor:
        """-100 between pixels of a window that the roll brought from different regions,
        0 elsewhere: (windows, N, N)."""
        w = self.window

        def regions(size: int, shift: int) -> torch.Tensor:
            label = x.new_zeros(size)  # one region where the axis is not shifted
            if shift:
                label[size - w:size - shift], label[size - shift:] = 1, 2
            return label

        label = regions(height, shifts[0])[:, None] * 3 + regions(width, shifts[1])[None, :]
        label = label.view(height // w, w, width // w, w).transpose(1, 2).reshape(-1, w * w)
        return (label[:, None, :] != label[:, :, None]).to(x.dtype) * -100.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        b, h, w, c = x.shape
        win, heads = self.window, self.heads
        x = nn.functional.pad(x, (0, 0, 0, -w % win, 0, -h % win))  # whole windows
        ph, pw = x.shape[1:3]
        shifts = (self.shift if ph > win else 0, self.shift if pw > win else 0)
        if any(shifts):
            x = torch.roll(x, (-shifts[0], -shifts[1]), (1, 2))
        # (B, ph/w, w, pw/w, w, C) -> (B·windows, N, C)
        x = x.view(b, ph // win, win, pw // win, win, c).transpose(2, 3).reshape(-1, win * win, c)
        bias: torch.Tensor = self.qkv.bias
        if self.version == 2:  # v2 learns no key bias
            bias = torch.cat([bias[:c], torch.zeros_like(bias[c:2 * c]), bias[2 * c:]])
        n = x.shape[1]
        qkv = nn.functional.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.view(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)  # (B·nW, h, N, d)
        if self.version == 1:
            scores = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
        else:  # cosine attention with a learnt temperature per head
            q, k = nn.functional.normalize(q, dim=-1), nn.functional.normalize(k, dim=-1)
            scale = self.logit_scale.clamp(max=4.605170185988092).exp()  # at most 100
            scores = (q @ k.transpose(-2, -1)) * scale
        scores = scores + self.position_bias()  # (B·nW, heads, N, N)
        if any(shifts):
            mask = self.shift_mask(ph, pw, shifts, x)  # (nW, N, N)
            scores = (scores.view(b, -1, heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
        weights = nn.functional.dropout(scores.softmax(-1), self.attention_dropout, self.training)
        x = self.proj((weights @ v).transpose(1, 2).reshape(-1, n, c))
        x = nn.functional.dropout(x, self.dropout, self.training)
        x = x.view(b, ph // win, pw // win, win, win, c).transpose(2, 3).reshape(b, ph, pw, c)
        if any(shifts):
            x = torch.roll(x, shifts, (1, 2))
        return x[:, :h, :w].contiguous()


class PatchMerging(nn.Module):
    """Swin's downsampling of a channel-last image: each 2×2 block of pixels (the image
    padded to even sides) concatenated to 4C channels, then LayerNorm and a Linear to 2C
    (v1), or the Linear first and LayerNorm on 2C (v2). Keys `reduction`, `norm`. Without
    `affine` the norm has no scale and shift and the Linear a bias: v1's affine folded into
    the Linear, for inference."""

    archc_layer = True  # one layer of the spec, built of two torch modules

    def __init__(self, dim: int, version: int = 1, affine: bool = True):
        super().__init__()
        self.dim, self.version, self.affine = dim, version, affine
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=not affine)
        self.norm = nn.LayerNorm(4 * dim if version == 1 else 2 * dim,
                                 elementwise_affine=affine, bias=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        h, w = x.shape[1:3]
        x = nn.functional.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # (B, H/2, W/2, 4C): the pixels (0, 0), (1, 0), (0, 1), (1, 1) of every block
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        out: torch.Tensor = (self.reduction(self.norm(x)) if self.version == 1
                             else self.norm(self.reduction(x)))
        return out


class Partition(nn.Module):
    """MaxViT's partition of an image into groups of size×size pixels, (B, C, H, W) →
    (B, groups, size², C): `window` groups neighbouring pixels (a size×size window),
    `grid` groups pixels H/size apart (a dilated size×size grid, torchvision's
    partition then swap). Group g, element p: window (i, j), offset (u, v)."""

    def __init__(self, size: int, mode: str = "window"):
        super().__init__()
        self.size, self.mode = size, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.size
        if self.mode == "window":  # (B, C, H/s, s, W/s, s): windows i, j; offsets u, v
            x = x.view(b, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1)
        else:  # (B, C, s, H/s, s, W/s): offsets u, v of a grid; groups i, j
            x = x.view(b, c, s, h // s, s, w // s).permute(0, 3, 5, 2, 4, 1)
        return x.reshape(b, (h // s) * (w // s), s * s, c)  # (B, groups, s², C)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode}"


class Departition(nn.Module):
    """The inverse of Partition, for an image `height` pixels high:
    (B, groups, size², C) → (B, C, H, W)."""

    def __init__(self, size: int, height: int, mode: str = "window"):
        super().__init__()
        self.size, self.height, self.mode = size, height, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, g, _, c = x.shape
        s, rows = self.size, self.height // self.size
        x = x.view(b, rows, g // rows, s, s, c)  # (B, H/s, W/s, s, s, C)
        order = (0, 5, 1, 3, 2, 4) if self.mode == "window" else (0, 5, 3, 1, 4, 2)
        return x.permute(order).reshape(b, c, self.height, -1)

    def extra_repr(self) -> str:
        return f"size={self.size}, height={self.height}, mode={self.mode}"


class RelativeAttention(nn.Module):
    """MaxViT's multi-head attention within each group of (B, groups, size², C), with a
    learnt relative position bias over the size×size group; torchvision's keys `to_qkv`,
    `merge`, `relative_position_bias_table` and the buffer `relative_position_index`.
    As torchvision's, the keys are scaled by C^-1/2 (the whole width, not a head's)."""

    archc_layer = True  # one layer of the spec, although to_qkv and merge are submodules
    relative_position_index: torch.Tensor  # a buffer (N, N)

    def __init__(self, dim: int, head_dim: int, size: int):
        super().__init__()
        self.dim, self.head_dim, self.size = dim, head_dim, size
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.merge = nn.Linear(dim, dim)
        heads = dim // head_dim
        table = torch.empty((2 * size - 1) ** 2, heads)
        self.relative_position_bias_table = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))
        span = torch.arange(size)
        rows, cols = torch.meshgrid(span, span, indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()  # (N,) each, N = size²
        d_row = rows[:, None] - rows[None, :] + size - 1  # (N, N)
        d_col = cols[:, None] - cols[None, :] + size - 1
        self.register_buffer("relative_position_index", d_row * (2 * size - 1) + d_col)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, G, N, C)
        b, g, n, c = x.shape
        heads = c // self.head_dim
        # (3, B, G, heads, N, head_dim)
        q, k, v = self.to_qkv(x).view(b, g, n, 3, heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
        scores = q @ (k * c**-0.5).transpose(-2, -1)  # (B, G, heads, N, N)
        bias = self.relative_position_bias_table[self.relative_position_index]  # (N, N, heads)
        weights = (scores + bias.permute(2, 0, 1)).softmax(-1)
        out: torch.Tensor = self.merge((weights @ v).transpose(2, 3).reshape(b, g, n, c))
        return out
