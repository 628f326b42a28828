"""torch.nn layers (and the functional calls of a forward) → draft layers of registry kinds.

Each converter returns a `DLayer`, or raises `Unsupported` with what stands in the way;
the caller turns that into a diagnostic naming the module path. Arguments equal to the
kind's default are marked so that they are left out, as a person would write them.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from archc.importers.torch_draft import REQUIRED, Arg, DLayer
from archc.layers import lookup


class Unsupported(Exception):
    """A module or op that has no archc form; the message says what it is and why."""


def _pair(value: Any, what: str) -> Any:
    """A square size: `3` or `(3, 3)` → 3; a rectangle has no archc form here."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise Unsupported(f"a non-square {what} {tuple(value)} (archc's is the same on "
                              "both sides)")
        return value[0]
    return value


def _window(value: Any) -> Any:
    """A window size, stride, padding or dilation as a spec writes it: `3` for `(3, 3)`,
    `(1, 7)` as `(h, w)` (Inception-v3's 1×7 convs)."""
    if isinstance(value, (tuple, list)):
        return value[0] if len(set(value)) == 1 else tuple(value)
    return value


def _axes(value: Any) -> tuple:
    """`3` or `(1, 7)` as a (h, w) pair."""
    return tuple(value) if isinstance(value, tuple) else (value, value)


def _same_padding(kernel: Any, dilation: Any, padding: Any) -> bool:
    """Whether `padding` is what archc's default `same` gives: half the dilated window, on
    each axis of an odd kernel."""
    return all(k % 2 == 1 and p == d * (k - 1) // 2
               for k, d, p in zip(_axes(kernel), _axes(dilation), _axes(padding)))


def kind_layer(kind: str, args: list[Arg] | None = None, what: str = "") -> DLayer:
    """A draft layer of `kind`, which must be in archc's registry."""
    found = lookup(kind)
    if found is None:
        raise Unsupported(f"{what or kind} needs the layer kind `{kind}`, which archc lacks")
    return DLayer(found.name, args or [])


# --------------------------------------------------------------------------- modules


def _conv(m: nn.Conv2d) -> DLayer:
    if m.padding_mode != "zeros":
        raise Unsupported(f"padding_mode={m.padding_mode!r} (archc pads with zeros)")
    k, d = _window(m.kernel_size), _window(m.dilation)
    pad = m.padding if isinstance(m.padding, str) else _window(m.padding)
    if pad == "same" or (not isinstance(pad, str) and _same_padding(k, d, pad)):
        pad = "same"  # archc's default: left out
    return DLayer(
        "conv",
        [
            Arg("kernel", k, key="k"),
            Arg("out", m.out_channels, key="c"),
            Arg("stride", _window(m.stride), 1, "stride"),
            Arg("pad", pad, "same", "pad"),
            Arg("dilation", d, 1, "dilation"),
            Arg("groups", m.groups, 1, "groups"),
            Arg("bias", m.bias is not None, True, "bias"),
        ],
    )


def _linear(m: nn.Linear) -> DLayer:
    return DLayer(
        "fc", [Arg("out", m.out_features, key="c"), Arg("bias", m.bias is not None, True, "bias")]
    )


def batch_norm(m: nn.modules.batchnorm._BatchNorm) -> DLayer:
    """`bn` of a batch norm with running statistics (its subclasses' too)."""
    if not m.track_running_stats or m.momentum is None:
        raise Unsupported("batch norm without running statistics or with momentum=None")
    return DLayer(
        "bn",
        [
            Arg("eps", m.eps, 1e-5, "eps"),
            Arg("momentum", m.momentum, 0.1, "momentum"),
            Arg("affine", m.affine, True, "affine"),
        ],
    )


def pool(kind: str, kernel: Any, stride: Any, padding: Any, ceil: bool) -> DLayer:
    """A max or average pool: `maxpool(3, stride=2, pad=1)` as the hand-written specs say."""
    k = _window(kernel)
    s = k if stride is None or stride == [] else _window(stride)
    return kind_layer(
        kind,
        [
            Arg("kernel", k, 2, "k", positional=True),
            Arg("stride", s, k, "stride"),
            Arg("pad", _window(padding), 0, "pad"),
            Arg("ceil", bool(ceil), False, "ceil"),
        ],
    )


def _maxpool(m: nn.MaxPool2d) -> DLayer:
    if _pair(m.dilation, "dilation") != 1 or m.return_indices:
        raise Unsupported("max pooling with dilation or return_indices")
    return pool("maxpool", m.kernel_size, m.stride, m.padding, m.ceil_mode)


def _avgpool(m: nn.AvgPool2d) -> DLayer:
    if m.divisor_override is not None:
        raise Unsupported("average pooling with a divisor_override")
    layer = pool("avgpool", m.kernel_size, m.stride, m.padding, m.ceil_mode)
    if not m.count_include_pad and _window(m.padding) != 0:  # at padding 0 it changes nothing
        layer.args.append(Arg("count_include_pad", False, True, "count_include_pad"))
    return layer


def adaptive(kind: str, size: Any) -> DLayer:
    """`global-avgpool` for a 1×1 output, else `adaptive-avgpool(size)`."""
    size = _pair(size, "output size")
    if size is None:
        raise Unsupported("adaptive pooling that keeps one side (output size None)")
    if size == 1 and kind == "adaptiveavgpool":
        return kind_layer("globalavgpool")
    return kind_layer(kind, [Arg("size", size, REQUIRED, "size", positional=True)])


def _dropout(kind: str) -> Callable[[Any], DLayer]:
    return lambda m: kind_layer(kind, [Arg("p", m.p, 0.5, "p", positional=True)])


def _flatten(m: nn.Flatten) -> DLayer:
    if (m.start_dim, m.end_dim) != (1, -1):
        raise Unsupported(f"Flatten({m.start_dim}, {m.end_dim}) (archc flattens from dim 1)")
    return kind_layer("flatten")


def _lrn(m: nn.LocalResponseNorm) -> DLayer:
    return kind_layer(
        "lrn",
        [
            Arg("size", m.size, 5, "size", positional=True),
            Arg("alpha", m.alpha, 1e-4, "alpha"),
            Arg("beta", m.beta, 0.75, "beta"),
            Arg("k", m.k, 1.0, "k"),
        ],
    )


def _softmax(m: nn.Softmax) -> DLayer:
    if m.dim not in (1, -1, None):
        raise Unsupported(f"Softmax(dim={m.dim}) (archc's softmax is over channels)")
    return kind_layer("softmax")


def upsample(size: Any, scale: Any, mode: str, align_corners: Any) -> DLayer:
    """`upsample` (×2, nearest) or `upsample-4(mode="bilinear")`: a whole factor, the same
    on both sides; bilinear without align_corners, as archc's kind interpolates."""
    if size is not None or scale is None:
        raise Unsupported("upsampling to a fixed size (archc upsamples by a whole factor)")
    factor = _pair(scale, "scale factor")
    if float(factor) != int(factor) or int(factor) < 1:
        raise Unsupported(f"upsampling by {factor} (archc upsamples by a whole factor)")
    if mode not in ("nearest", "bilinear"):
        raise Unsupported(f"upsampling with mode={mode!r} (archc has nearest and bilinear)")
    if align_corners:
        raise Unsupported("bilinear upsampling with align_corners=True (archc's is False)")
    return kind_layer(
        "upsample",
        [Arg("scale", int(factor), 2, "scale"), Arg("mode", mode, "nearest", "mode")],
    )


def _upsample(m: nn.Upsample) -> DLayer:
    return upsample(m.size, m.scale_factor, m.mode, m.align_corners)


def _pad(m: nn.ZeroPad2d | nn.ConstantPad2d) -> DLayer:
    """torch's padding modules: `pad` (a negative side crops: NASNet's shift)."""
    return pad_layer(m.padding, float(m.value))


def _plain(kind: str) -> Callable[[Any], DLayer]:
    return lambda m: kind_layer(kind, what=type(m).__name__)


MODULES: dict[type, Callable[[Any], DLayer]] = {
    nn.Conv2d: _conv,
    nn.Linear: _linear,
    nn.BatchNorm2d: batch_norm,
    nn.BatchNorm1d: batch_norm,
    nn.MaxPool2d: _maxpool,
    nn.AvgPool2d: _avgpool,
    nn.AdaptiveAvgPool2d: lambda m: adaptive("adaptiveavgpool", m.output_size),
    nn.AdaptiveMaxPool2d: lambda m: adaptive("adaptivemaxpool", m.output_size),
    nn.Dropout: _dropout("dropout"),
    nn.Dropout2d: _dropout("dropout2d"),
    nn.Flatten: _flatten,
    nn.LocalResponseNorm: _lrn,
    nn.Softmax: _softmax,
    nn.Upsample: _upsample,
    nn.ZeroPad2d: _pad,
    nn.ConstantPad2d: _pad,
    nn.UpsamplingNearest2d: _upsample,
    nn.UpsamplingBilinear2d: _upsample,  # align_corners=True: reported
    nn.LeakyReLU: lambda m: kind_layer(
        "leakyrelu", [Arg("slope", m.negative_slope, 0.01, "slope", positional=True)]
    ),
    nn.ELU: lambda m: kind_layer("elu", [Arg("alpha", m.alpha, 1.0, "alpha", positional=True)]),
    nn.ReLU: _plain("relu"),
    nn.Sigmoid: _plain("sigmoid"),
    nn.Tanh: _plain("tanh"),
    nn.Identity: _plain("identity"),
    nn.ReLU6: _plain("relu6"),
    nn.SiLU: _plain("silu"),
    nn.Hardswish: _plain("hardswish"),
    nn.Hardsigmoid: _plain("hardsigmoid"),
    nn.Mish: _plain("mish"),
    nn.GELU: lambda m: kind_layer("gelu", [Arg("approximate", m.approximate, "none", "approx")]),
    nn.LayerNorm: lambda m: layernorm("layernorm", m),
    nn.GroupNorm: lambda m: kind_layer(
        "groupnorm",
        [
            Arg("groups", m.num_groups, REQUIRED, "groups", positional=True),
            Arg("eps", m.eps, 1e-5, "eps"),
            Arg("affine", m.affine, True, "affine"),
        ],
    ),
    nn.PReLU: lambda m: kind_layer(
        "prelu", [Arg("per_channel", m.num_parameters > 1, False, "per_channel")]
    ),
}


def layernorm(kind: str, m: nn.LayerNorm) -> DLayer:
    """`layernorm` (or `layernorm2d`) of a LayerNorm over one axis, with its scale and
    shift, its scale only (`bias=false`: timm's LayerNorm2dNoBias), or neither."""
    if len(m.normalized_shape) != 1:
        raise Unsupported(f"LayerNorm over {tuple(m.normalized_shape)} (archc normalises one axis)")
    if m.weight is None and m.bias is not None:
        raise Unsupported("a LayerNorm with a shift but no scale (archc's learns the scale)")
    affine = m.weight is not None
    return kind_layer(kind, [
        Arg("eps", m.eps, 1e-5, "eps"),
        Arg("affine", affine, True, "affine"),
        Arg("bias", m.bias is not None or not affine, True, "bias"),
    ])


# --------------------------------------------------------------------------- functions


def _const(value: Any) -> bool:
    return not isinstance(value, torch.fx.Node)


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    """Argument `name` of a call, given by position or keyword."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _flatten_fn(args: tuple, kwargs: dict) -> DLayer:
    start, end = _arg(args, kwargs, 1, "start_dim", 0), _arg(args, kwargs, 2, "end_dim", -1)
    if (start, end) != (1, -1):
        raise Unsupported(f"flatten({start}, {end}) (archc flattens from dim 1)")
    return kind_layer("flatten")


def _permute(*dims: int) -> DLayer:
    return kind_layer("permute", [Arg("dims", dims, REQUIRED, "dims", positional=True)])


def _mean(args: tuple, kwargs: dict) -> list[DLayer]:
    """`x.mean((2, 3))` of an image: a global average pool (flattened unless keepdim);
    `x.mean((1, 2))` of a channel-last (B, H, W, C) image (MambaOut's head) is that pool
    after a permute to (B, C, H, W) (and back with keepdim). The rank is not known here: a
    mean over (1, 2) of another rank fails the check that follows every import."""
    dims = sorted(_arg(args, kwargs, 1, "dim") or [])
    keep = _arg(args, kwargs, 2, "keepdim", False)
    if dims in ([2, 3], [-2, -1]):
        pooled = [kind_layer("globalavgpool")]
    elif dims in ([1, 2], [-3, -2]):
        pooled = [_permute(0, 3, 1, 2), kind_layer("globalavgpool")]
        if keep:
            return [*pooled, _permute(0, 2, 3, 1)]  # (B, 1, 1, C)
    else:
        raise Unsupported(f"mean over dims {tuple(dims)} (archc averages over height and "
                          "width only, of an image or a channel-last image)")
    return pooled if keep else [*pooled, kind_layer("flatten")]


def _fn_pool(kind: str) -> Callable[[tuple, dict], DLayer]:
    def make(args: tuple, kwargs: dict) -> DLayer:
        return pool(
            kind,
            _arg(args, kwargs, 1, "kernel_size"),
            _arg(args, kwargs, 2, "stride"),
            _arg(args, kwargs, 3, "padding", 0),
            _arg(args, kwargs, 5 if kind == "maxpool" else 4, "ceil_mode", False),
        )

    return make


def _fn_dropout(args: tuple, kwargs: dict) -> DLayer:
    return kind_layer(
        "dropout", [Arg("p", _arg(args, kwargs, 1, "p", 0.5), 0.5, "p", positional=True)]
    )


def _fn_softmax(args: tuple, kwargs: dict) -> DLayer:
    if _arg(args, kwargs, 1, "dim") not in (1, -1):
        raise Unsupported("softmax over a dim other than channels")
    return kind_layer("softmax")


def _fn_interpolate(args: tuple, kwargs: dict) -> DLayer:
    """F.interpolate(x, size, scale_factor, mode, align_corners, ...)."""
    return upsample(
        _arg(args, kwargs, 1, "size"),
        _arg(args, kwargs, 2, "scale_factor"),
        _arg(args, kwargs, 3, "mode", "nearest"),
        _arg(args, kwargs, 4, "align_corners"),
    )


def _fn_permute(args: tuple, kwargs: dict) -> DLayer:
    """`x.permute(0, 2, 3, 1)` (or `torch.permute(x, (0, 2, 3, 1))`) with constant dims."""
    dims = tuple(args[1]) if len(args) == 2 and isinstance(args[1], (tuple, list)) \
        else tuple(args[1:]) or tuple(kwargs.get("dims", ()))
    if not dims or not all(isinstance(d, int) for d in dims):
        raise Unsupported("a permute whose order is computed in the forward")
    return _permute(*dims)


def pad_layer(pad: Any, value: float = 0.0) -> DLayer:
    """`pad` of torch's padding (left, right, top, bottom) of the last two axes, as archc
    writes it: one int, (h, w), or (top, bottom, left, right); a negative side crops."""
    if not (isinstance(pad, (tuple, list)) and len(pad) == 4
            and all(isinstance(v, int) for v in pad)):
        raise Unsupported(f"padding by {pad} (archc pads the height and width of an image "
                          "by whole pixels)")
    left, right, top, bottom = pad
    sides = (top, bottom, left, right)
    padding = top if len(set(sides)) == 1 else (top, left) if (top, left) == (bottom, right) \
        else sides
    return kind_layer("pad", [Arg("padding", padding, REQUIRED, "pad", positional=True),
                              Arg("value", value, 0.0, "value")])


def _fn_pad(args: tuple, kwargs: dict) -> DLayer:
    """`F.pad(x, (left, right, top, bottom), value=v)` (HGNetV2's stem pads with zeros)."""
    mode, value = _arg(args, kwargs, 2, "mode", "constant"), _arg(args, kwargs, 3, "value")
    if mode != "constant" or not isinstance(value, (int, float, type(None))):
        raise Unsupported(f"padding with mode={mode!r} (archc pads with a constant)")
    return pad_layer(_arg(args, kwargs, 1, "pad"), float(value or 0.0))


def _simple(kind: str) -> Callable[[tuple, dict], DLayer]:
    return lambda args, kwargs: kind_layer(kind)


# Unary functions and tensor methods of a forward, by target (functions) or name (methods).
FUNCTIONS: dict[Any, Callable[[tuple, dict], Any]] = {
    torch.relu: _simple("relu"),
    F.relu: _simple("relu"),
    torch.relu_: _simple("relu"),
    torch.sigmoid: _simple("sigmoid"),
    torch.tanh: _simple("tanh"),
    F.relu6: _simple("relu6"),
    F.silu: _simple("silu"),
    F.hardswish: _simple("hardswish"),
    F.mish: _simple("mish"),
    F.hardsigmoid: _simple("hardsigmoid"),
    torch.flatten: _flatten_fn,
    torch.mean: _mean,
    F.adaptive_avg_pool2d: lambda a, k: adaptive("adaptiveavgpool", _arg(a, k, 1, "output_size")),
    F.adaptive_max_pool2d: lambda a, k: adaptive("adaptivemaxpool", _arg(a, k, 1, "output_size")),
    F.max_pool2d: _fn_pool("maxpool"),
    F.avg_pool2d: _fn_pool("avgpool"),
    F.dropout: _fn_dropout,
    F.softmax: _fn_softmax,
    F.interpolate: _fn_interpolate,
    torch.permute: _fn_permute,
    F.pad: _fn_pad,
}
METHODS: dict[str, Callable[[tuple, dict], Any]] = {
    "relu": _simple("relu"),
    "relu_": _simple("relu"),
    "sigmoid": _simple("sigmoid"),
    "tanh": _simple("tanh"),
    "flatten": _flatten_fn,
    "mean": _mean,
    "softmax": _fn_softmax,
    "permute": _fn_permute,
}
# Ops that merge two or more tensors.
ADDS = {operator.add, operator.iadd, torch.add}
MULTIPLIES = {operator.mul, operator.imul, torch.mul}
MAXIMUMS = {torch.maximum, torch.max}  # torch.max of two tensors (max_op checks there are two)
SUBTRACTS = {operator.sub, operator.isub, torch.sub, torch.subtract}
PASS_THROUGH = {"contiguous", "clone"}
