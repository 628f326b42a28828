"""Torch modules that PyTorch lacks and specs need. Generated Python copies them."""
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
        return torch.unflatten(x, 1, (x.shape[1] // self.k, self.k)).amax(2)

    def extra_repr(self) -> str:
        return f"k={self.k}"


class SquaredReLU(nn.Module):
    """ReLU squared, max(0, x)² (So et al., 2021, Primer; MetaFormer's SquaredReLU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(torch.relu(x))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a C×H×W image, at every pixel (ConvNeXt's; torchvision's
    LayerNorm2d). The weights are nn.LayerNorm's: `weight` and `bias` of shape (C,)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C): normalise the last axis
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class ChannelLinear(nn.Linear):
    """nn.Linear over the channel axis of a C×H×W image, at every pixel. The weight is
    torchvision's (out, in) Linear weight, not a 1×1 conv's (out, in, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, H, W, C) -> Linear -> (B, H, W, out) -> (B, out, H, W)
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class ChannelShuffle(nn.Module):
    """Channel shuffle (ShuffleNet): C channels in `groups` groups, transposed to C/groups
    groups, so the next grouped conv sees channels of every group."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, ...) -> (B, groups, C/groups, ...) -> (B, C/groups, groups, ...) -> (B, C, ...)
        return torch.unflatten(x, 1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class OwnParameter(nn.Module):
    """A module holding one tensor, `weight`, that its holder stores under the module's own
    name, without `.weight`: torchvision keeps such tensors directly on a module
    (ConvNeXt's `features.1.0.layer_scale`, ViT's `class_token` and
    `encoder.pos_embedding`). A hook renames the key both ways; it is put on the holder
    when the module is registered in it (torch's module-registration hook, installed once,
    acts on OwnParameter children only)."""

    _installed = False

    def __init__(self) -> None:
        super().__init__()
        if not OwnParameter._installed:
            nn.modules.module.register_module_module_registration_hook(OwnParameter._registered)
            OwnParameter._installed = True

    @staticmethod
    def _registered(holder: nn.Module, name: str, child: nn.Module) -> None:
        if not isinstance(child, OwnParameter):
            return

        def save(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str,
                 local_metadata: object) -> None:  # `name.weight` → `name`
            if prefix + name + ".weight" in state_dict:
                state_dict[prefix + name] = state_dict.pop(prefix + name + ".weight")

        def load(state_dict: dict[str, torch.Tensor], prefix: str,
                 *args: object) -> None:  # `name` → `name.weight`, before the children load
            if prefix + name in state_dict:
                state_dict[prefix + name + ".weight"] = state_dict.pop(prefix + name)

        # torch leaves these two hook registrars unannotated
        holder._register_state_dict_hook(save)  # type: ignore[no-untyped-call]
        holder._register_load_state_dict_pre_hook(load)  # type: ignore[no-untyped-call]


class LayerScale(OwnParameter):
    """A learnable scale per channel, (C, 1, 1), initialised to `init` (ConvNeXt), stored
    under the holder's key `layer_scale` (see OwnParameter); with `flat`, kept as (C,), as
    timm keeps its `gamma`."""

    def __init__(self, channels: int, init: float = 1.0, flat: bool = False):
        super().__init__()
        self.channels, self.init, self.flat = channels, init, flat
        shape = (channels,) if flat else (channels, 1, 1)
        self.weight = nn.Parameter(torch.full(shape, float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.weight.view(-1, 1, 1)  # (C, 1, 1), whichever way it is kept
        return gamma * x  # (C, 1, 1) * (B, C, H, W)

    def extra_repr(self) -> str:
        return f"{self.channels}, init={self.init}" + (", flat=True" if self.flat else "")


class StochasticDepth(nn.Module):
    """Stochastic depth (torchvision.ops.StochasticDepth): in training, zero the whole input
    of a sample ("row") or of the batch ("batch") with probability p, and scale the rest by
    1/(1-p); the identity in eval mode."""

    def __init__(self, p: float, mode: str):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class Permute(nn.Module):
    """Reorders the axes of a tensor, batch axis included (torchvision's Permute)."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class TFSamePadding:
    """TensorFlow's `SAME` padding, worked out from the input size in the forward (timm's
    Conv2dSame and MaxPool2dSame): each axis padded so that a window of kernel k, stride s
    and dilation d gives ⌈size / s⌉ outputs, half the padding before and the rest after."""

    @staticmethod
    def tf_same_pad(x: torch.Tensor, kernel: int | tuple[int, ...], stride: int | tuple[int, ...],
                    dilation: int | tuple[int, ...] = 1, value: float = 0.0) -> torch.Tensor:
        """`x` (B, C, H, W) padded with `value` for that window (each size an int or (h, w))."""
        k_, s_, d_ = ((v, v) if isinstance(v, int) else v for v in (kernel, stride, dilation))
        sides = []
        for size, k, s, d in zip(x.shape[-2:], k_, s_, d_):  # height, width
            total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            sides.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = sides
        return nn.functional.pad(x, (left, right, top, bottom), value=value)


class TFSameConv2d(nn.Conv2d, TFSamePadding):
    """nn.Conv2d with TensorFlow's `SAME` padding (archc's `padding="tf-same"`): the input
    padded for its size first, then convolved without padding. Its tensors are Conv2d's."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         dilation=dilation, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tf_same_pad(x, self.kernel_size, self.stride, self.dilation)  # (B, C, H', W')
        out: torch.Tensor = self._conv_forward(x, self.weight, self.bias)
        return out


class PaddedPool2d(nn.Module, TFSamePadding):
    """A max or average pool after padding each side by its own amount, (top, bottom, left,
    right), or by TensorFlow's `SAME` rule for the input's size (`"tf-same"`): darknet's 2×2
    stride-1 max pool pads the bottom and right only, and timm's MaxPool2dSame pads for
    each size, which nn.MaxPool2d's even padding cannot express. A max pool pads with -inf,
    so the padding never wins; an average pool pads with zeros and counts them, as
    nn.AvgPool2d does (and timm's AvgPool2dSame)."""

    ceil_mode = False  # the window count is always rounded down
    count_include_pad = True  # an average pool counts its zero padding

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int],
                 padding: tuple[int, int, int, int] | str, mode: str = "max"):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.padding: tuple[int, ...] | str = (padding if isinstance(padding, str)
                                               else tuple(padding))
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fill = float("-inf") if self.mode == "max" else 0.0
        if isinstance(self.padding, str):  # "tf-same"
            x = self.tf_same_pad(x, self.kernel_size, self.stride, value=fill)  # (B, C, H', W')
        else:
            top, bottom, left, right = self.padding
            x = nn.functional.pad(x, (left, right, top, bottom), value=fill)  # (B, C, H+t+b, W+l+r)
        if self.mode == "max":
            return nn.functional.max_pool2d(x, self.kernel_size, self.stride)
        return nn.functional.avg_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        mode = "" if self.mode == "max" else f", mode={self.mode}"  # as the constructor writes it
        padding = f"padding={self.padding!r}"  # "tf-same" quoted, as the constructor takes it
        return f"kernel_size={self.kernel_size}, stride={self.stride}, {padding}{mode}"
