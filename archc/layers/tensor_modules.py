"""Torch modules of the tensor-operation kinds (archc.layers.tensor, attention_cnn).

Imported only by the kinds' torch constructors: it imports torch. Each class is
self-contained (torch only, no helper outside its body), because generated Python copies
the class's source into the standalone file. Constructor arguments are kept as attributes
of the same name, so the generated constructor call can be read back from the module.
"""
from __future__ import annotations

import torch
from torch import nn

from archc.layers.core import mix_split_sizes  # noqa: F401 - generated Python copies it


class ChannelSlice(nn.Module):
    """Channels [start, end) of the input: `x[:, start:end]` (GhostNet's `[:, :oup]`)."""

    def __init__(self, start: int, end: int):
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.end]  # (B, end - start, ...)

    def extra_repr(self) -> str:
        return f"start={self.start}, end={self.end}"


class ConstantScale(nn.Module):
    """`x * factor + shift` with fixed numbers (Inception-ResNet's branch scale, NF-ResNet's
    alpha and beta, darknet's crop `2x - 1`): nothing to learn."""

    def __init__(self, factor: float, shift: float = 0.0):
        super().__init__()
        self.factor, self.shift = factor, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.factor
        return x + self.shift if self.shift else x

    def extra_repr(self) -> str:
        return f"factor={self.factor}, shift={self.shift}"


class LearnableAffine(nn.Module):
    """`scale * x + bias` with one learnt number each (HGNetV2's LearnableAffineBlock, the
    affine of MetaFormer's StarReLU): `scale` and `bias` of shape (1,), timm's names and
    shapes, so timm's weights load as they are. `scale_init` and `shift_init` are their
    values before training."""

    def __init__(self, scale_init: float = 1.0, shift_init: float = 0.0):
        super().__init__()
        self.scale_init, self.shift_init = scale_init, shift_init
        self.scale = nn.Parameter(torch.full((1,), float(scale_init)))
        self.bias = nn.Parameter(torch.full((1,), float(shift_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias  # (1,) broadcast over every value

    def extra_repr(self) -> str:
        return f"scale_init={self.scale_init}, shift_init={self.shift_init}"


class Reshape(nn.Module):
    """A batch of tensors viewed as `shape` each (the batch axis kept): static shapes only."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class CenterCrop(nn.Module):
    """The centre height×width window of an image: darknet's [crop] at inference, which
    starts (H - height) // 2 rows and (W - width) // 2 columns in."""

    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = (x.shape[-2] - self.height) // 2
        left = (x.shape[-1] - self.width) // 2
        return x[:, :, top:top + self.height, left:left + self.width]  # (B, C, height, width)

    def extra_repr(self) -> str:
        return f"height={self.height}, width={self.width}"


class SpaceToDepth(nn.Module):
    """Each block×block patch of pixels moved into the channels (TResNet's stem): C×H×W →
    C·block²×H/block×W/block, channel index (row in patch, column in patch, channel)."""

    def __init__(self, block: int = 4):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.block
        x = x.reshape(b, c, h // s, s, w // s, s)  # (B, C, H/s, s, W/s, s)
        x = x.permute(0, 3, 5, 1, 2, 4)  # (B, s, s, C, H/s, W/s)
        return x.reshape(b, s * s * c, h // s, w // s)

    def extra_repr(self) -> str:
        return f"block={self.block}"


class BlurPool2d(nn.Module):
    """Anti-aliased downsampling (Zhang, 2019; TResNet): each channel blurred by a fixed
    binomial filter of size `filt_size` (1 2 1 ⊗ 1 2 1 / 16 for 3), then sampled with
    `stride`, after padding (filt_size - 1 + stride - 1) // 2 on each side by reflection.
    The filter is fixed, so it is made from Python numbers when it is used, and nothing is
    in the state_dict (timm's `filt` buffer is not persistent either); a module built on the
    meta device and given its weights later still blurs."""

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2,
                 pad_mode: str = "reflect"):
        super().__init__()
        self.channels, self.filt_size, self.stride, self.pad_mode = (
            channels, filt_size, stride, pad_mode)
        self.padding = (stride - 1 + filt_size - 1) // 2
        row = [1]
        for _ in range(filt_size - 1):  # (1 + z)^(n-1): Pascal's triangle, row n - 1
            row = [a + b for a, b in zip([*row, 0], [0, *row])]
        self.coefficients = tuple(v / sum(row) for v in row)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row = x.new_tensor(self.coefficients)  # (k,)
        k = self.filt_size
        filt = (row[:, None] * row[None, :]).expand(self.channels, 1, k, k)  # (C, 1, k, k)
        x = nn.functional.pad(x, [self.padding] * 4, mode=self.pad_mode)
        return nn.functional.conv2d(x, filt, stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, filt_size={self.filt_size}, stride={self.stride}"


class ScaledStdConv2d(nn.Conv2d):
    """Conv2d with scaled weight standardisation (NF-ResNet; Brock et al., 2021): each
    filter's weights standardised to mean 0 and variance 1 (eps added to the variance), then
    scaled by gain · gamma / √fan-in. `gain` (out, 1, 1, 1) is learnt; its name and shape
    are timm's, so timm's NF-ResNet weights load as they are."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 gamma: float = 1.0, eps: float = 1e-6, gain_init: float = 1.0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        self.gamma, self.eps, self.gain_init = gamma, eps, gain_init
        self.gain = nn.Parameter(torch.full((out_channels, 1, 1, 1), float(gain_init)))

    def standardized_weight(self) -> torch.Tensor:
        """The weight the convolution uses: per filter (w - mean) / √(var + eps) · scale."""
        w = self.weight.flatten(1)  # (out, in/groups · kh · kw)
        scale = self.gamma * w.shape[1] ** -0.5
        mean = w.mean(1, keepdim=True)
        var = w.var(1, unbiased=False, keepdim=True)
        w = (w - mean) * torch.rsqrt(var + self.eps) * (self.gain.flatten(1) * scale)
        standardized: torch.Tensor = w.reshape_as(self.weight)
        return standardized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = nn.functional.conv2d(x, self.standardized_weight(), self.bias,
                                                 self.stride, self.padding, self.dilation,
                                                 self.groups)
        return out

    def extra_repr(self) -> str:
        base: str = super().extra_repr()  # type: ignore[no-untyped-call]  # torch's is untyped
        return base + f", gamma={self.gamma}, eps={self.eps}"


class EfficientChannelAttention(nn.Module):
    """ECA (Wang et al., 2020): the input scaled per channel by sigmoid(conv1d(pooled)),
    the conv a `kernel`-tap 1-D convolution along the channel axis of the globally pooled
    input, without bias. Its weight is `conv.weight` (1, 1, k), as in timm's EcaModule."""

    def __init__(self, kernel: int = 3):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(1, 1, kernel, padding=(kernel - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3)).unsqueeze(1)  # (B, 1, C): the channels as a 1-D signal
        y = torch.sigmoid(self.conv(y))  # (B, 1, C)
        return x * y.reshape(x.shape[0], -1, 1, 1)  # (B, C, H, W) · (B, C, 1, 1)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"


class SplitAttention(nn.Module):
    """Attention across `radix` branches stacked in the channels (SKNet, ResNeSt): an input
    of radix·C channels is radix tensors of C. Their sum is pooled, passed through fc1 (1×1
    conv to `hidden`, `groups` groups), a batch norm and ReLU, and fc2 (1×1 conv to radix·C);
    the scores are softmaxed across the branches (a sigmoid when radix is 1) and weight the
    branches, which are summed: C×H×W out.

    `names` picks timm's child names: "resnest" (SplitAttn: fc1, bn1, act1, fc2) or "sk"
    (SelectiveKernelAttn: fc_reduce, bn, act, fc_select), so timm's weights load as they
    are. With groups > 1 (ResNeSt's cardinality) fc2's outputs are ordered (group, branch,
    channel), as timm's RadixSoftmax reads them.
    """

    def __init__(self, channels: int, radix: int, hidden: int, groups: int = 1,
                 fc_bias: bool = True, names: str = "resnest"):
        super().__init__()
        self.channels, self.radix, self.hidden, self.groups = channels, radix, hidden, groups
        self.fc_bias, self.names = fc_bias, names
        self.parts = (("fc1", "bn1", "act1", "fc2") if names == "resnest"
                      else ("fc_reduce", "bn", "act", "fc_select"))
        fc1, bn, act, fc2 = self.parts
        self.add_module(fc1, nn.Conv2d(channels, hidden, 1, groups=groups, bias=fc_bias))
        self.add_module(bn, nn.BatchNorm2d(hidden))
        self.add_module(act, nn.ReLU())
        self.add_module(fc2, nn.Conv2d(hidden, channels * radix, 1, groups=groups, bias=fc_bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        paths = x.reshape(b, self.radix, self.channels, h, w)  # (B, radix, C, H, W)
        pooled = paths.sum(1).mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        fc1, bn, act, fc2 = (getattr(self, name) for name in self.parts)
        scores = fc2(act(bn(fc1(pooled))))  # (B, radix·C, 1, 1), (group, branch, channel)
        if self.radix == 1:
            return x * torch.sigmoid(scores)
        scores = scores.reshape(b, self.groups, self.radix, -1).transpose(1, 2)
        weights = scores.softmax(1).reshape(b, self.radix, self.channels, 1, 1)
        out: torch.Tensor = (paths * weights).sum(1)  # (B, C, H, W)
        return out

    def extra_repr(self) -> str:
        return f"radix={self.radix}, groups={self.groups}"


class SplitAttentionConv(SplitAttention):
    """ResNeSt's split-attention convolution whole, as timm's SplitAttn holds it: a conv to
    radix·C channels in groups·radix groups (`conv`), a batch norm (`bn0`) and ReLU (`act0`)
    make the radix branches, and the split attention (fc1, bn1, act1, fc2) weights and sums
    them: C out. The children are timm's, so SplitAttn's state_dict loads as it is."""

    def __init__(self, in_channels: int, channels: int, hidden: int,
                 kernel_size: int | tuple[int, int] = 3, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 1, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, radix: int = 2, conv_bias: bool = False):
        super().__init__(channels, radix, hidden, groups)
        self.in_channels, self.kernel_size, self.stride = in_channels, kernel_size, stride
        self.padding, self.dilation, self.conv_bias = padding, dilation, conv_bias
        self.conv = nn.Conv2d(in_channels, channels * radix, kernel_size, stride, padding,
                              dilation, groups=groups * radix, bias=conv_bias)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.act0 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stacked = self.act0(self.bn0(self.conv(x)))  # (B, radix·C, H', W'): the branches
        return super().forward(stacked)  # (B, C, H', W')


def add_into(base: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """`base` with `other` added into the part they share, as darknet's [shortcut] adds
    tensors of different shapes (ReXNet's `x[:, :c] += shortcut` when only channels differ):
    the first min(C) channels; where `other` is k times larger, its every k-th pixel; where
    it is k times smaller, into every k-th pixel of `base`. The result has `base`'s shape."""
    _, c, h, w = base.shape
    _, c2, h2, w2 = other.shape
    step_h, step_w = max(1, h2 // h), max(1, w2 // w)  # `other` larger: sample it
    part = other[:, :min(c, c2), :min(h, h2) * step_h:step_h, :min(w, w2) * step_w:step_w]
    spread_h, spread_w = max(1, h // h2), max(1, w // w2)  # `other` smaller: spread it out
    if spread_h > 1 or spread_w > 1:
        b, k, ph, pw = part.shape
        part = part.reshape(b, k, ph, 1, pw, 1)  # zeros between the pixels, then flattened
        part = nn.functional.pad(part, (0, spread_w - 1, 0, 0, 0, spread_h - 1))
        part = part.reshape(b, k, ph * spread_h, pw * spread_w)[:, :, :h, :w]
    pad = (0, w - part.shape[3], 0, h - part.shape[2], 0, c - part.shape[1])
    return base + nn.functional.pad(part, pad)  # (B, C, H, W): zeros past the shared part


class PixelAttention(nn.Module):
    """Multi-head attention among the pixels of an image whose channels hold each head's
    query, key and value in turn (heads × (q, k, v) × head_dim, CPUBone's layout): per head,
    softmax(q·kᵀ / √head_dim)·v over the H·W pixels; the heads' outputs concatenated in the
    channels. It has no weights."""

    def __init__(self, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        qkv = x.reshape(b, self.heads, 3 * self.head_dim, h * w).transpose(2, 3)  # (B, n, HW, 3d)
        q, k, v = qkv.chunk(3, dim=3)  # each (B, heads, HW, d)
        weights = (q * self.head_dim ** -0.5) @ k.transpose(2, 3)  # (B, heads, HW, HW)
        out: torch.Tensor = weights.softmax(dim=-1) @ v  # (B, heads, HW, d)
        return out.transpose(2, 3).reshape(b, self.heads * self.head_dim, h, w)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_dim={self.head_dim}"
