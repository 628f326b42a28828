"""Tensor operations with static shapes: a channel slice, a constant scale, a learnt
scalar affine, a reshape, a centre crop, a pad (or crop) by side, space-to-depth and blur
pooling (TResNet's anti-aliased downsampling).

Their torch modules are in `tensor_modules` (imported when a module is built).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from archc.layers.core import (
    CONV,
    POOL,
    RESHAPE,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    check_positive,
    fmt,
    image,
    same_shape,
)
from archc.layers.window import sides, window


def tensor_module(cls: str, *names: str, **fixed: Any) -> Callable[[Shape, dict[str, Any]], Any]:
    """The constructor of `tensor_modules.<cls>(p[name], ..., **fixed)`."""

    def make(inp: Shape, p: dict[str, Any]) -> Any:
        from archc.layers import tensor_modules

        return getattr(tensor_modules, cls)(*(p[n] for n in names), **fixed)

    return make


def _slice_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    start, end = p["start"], p["end"]
    if not 0 <= start < end <= inp[0]:
        raise ShapeProblem(
            "E204",
            f"channel-slice [{start}, {end}) must lie inside the {inp[0]} channels of "
            f"{fmt(inp)} and hold at least one",
            f"pick 0 <= start < end <= {inp[0]}",
        )
    return (end - start, *inp[1:])


def _reshape_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    shape = p["shape"]
    if not shape or any(d < 1 for d in shape) or math.prod(shape) != math.prod(inp):
        raise ShapeProblem(
            "E204",
            f"reshape{tuple(shape)} must hold the {math.prod(inp)} values of {fmt(inp)} "
            f"(the batch axis is kept and not written)",
            "give every axis as a positive number whose product is the input's size",
        )
    return tuple(shape)


def _crop_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    c, h, w = image("crop", inp)
    check_positive("crop", p, "height", "width")
    if p["height"] > h or p["width"] > w:
        raise ShapeProblem(
            "E204",
            f"crop to {p['height']}×{p['width']} is larger than its input {fmt(inp)}",
            "crop to at most the input's height and width",
        )
    return (c, p["height"], p["width"])


def _kept(n: int, size: int) -> int | None:
    """A crop's output size on an axis of `n`: `size`, if the input has that many."""
    return size if n >= size else None


def _pad_sides(p: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The pad's ((top, bottom), (left, right)); E204 for "tf-same", which needs a window."""
    if isinstance(p["padding"], str):
        raise ShapeProblem("E204", 'pad takes numbers, not "tf-same" (that is a conv\'s or '
                           "pool's padding, worked out from its window)",
                           "give (top, bottom, left, right), e.g. pad((0, 1, 0, 1))")
    return sides(p["padding"])


def _pad_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    c, h, w = image("pad", inp)
    (top, bottom), (left, right) = _pad_sides(p)
    out = (c, h + top + bottom, w + left + right)
    if min(out[1:]) < 1:
        raise ShapeProblem(
            "E202",
            f"pad {p['padding']} makes {fmt(inp)} {fmt(out)}",
            "a negative side crops: crop less than the image holds",
        )
    return out


def _pad_torch(inp: Shape, p: dict[str, Any]) -> Any:
    """nn.ZeroPad2d, or nn.ConstantPad2d for another value: torch's sides are (left,
    right, top, bottom)."""
    import torch.nn as nn

    (top, bottom), (left, right) = _pad_sides(p)
    torch_sides = (left, right, top, bottom)
    if p["value"] == 0.0:
        return nn.ZeroPad2d(torch_sides)
    return nn.ConstantPad2d(torch_sides, p["value"])


def _pad_axis(n: int, axis: int, p: dict[str, Any]) -> int | None:
    """A pad's output size on an axis of `n` (0: height, 1: width), None below 1."""
    before, after = _pad_sides(p)[axis]
    return n + before + after if n + before + after >= 1 else None


def _space_to_depth_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    c, h, w = image("space-to-depth", inp)
    check_positive("space-to-depth", p, "block")
    s = p["block"]
    if h % s or w % s:
        raise ShapeProblem(
            "E203",
            f"space-to-depth with block={s} needs a height and width divisible by {s}, "
            f"got {fmt(inp)}",
            f"give it an input whose sides are multiples of {s}",
        )
    return (c * s * s, h // s, w // s)


def blur_padding(p: dict[str, Any]) -> int:
    """The padding on each side of a blur pool: (filter - 1 + stride - 1) // 2 (timm's)."""
    size: int = p["filter"] - 1 + p["stride"] - 1
    return size // 2


def _blur_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    c, h, w = image("blur-pool", inp)
    check_positive("blur-pool", p, "filter", "stride")
    pad = blur_padding(p)
    if p["pad_mode"] == "reflect" and pad >= min(h, w):
        raise ShapeProblem(
            "E202",
            f"blur-pool reflects {pad} rows and columns, more than its input {fmt(inp)} has",
            "use a larger input, or pad_mode=\"replicate\"",
        )
    out_h, out_w = window("blur-pool", inp, p, ctx, p["filter"], p["stride"], pad)
    return (c, out_h, out_w)


def _blur_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.tensor_modules import BlurPool2d

    return BlurPool2d(inp[0], p["filter"], p["stride"], p["pad_mode"])


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "channel-slice",
        "Channels [start, end) of the input, `x[:, start:end]` (GhostNet keeps the first "
        "`out` of its concatenated channels; DPN splits its dual path).",
        (
            Param("start", "int", doc="the first channel taken (counting from 0)"),
            Param("end", "int", doc="one past the last channel taken"),
        ),
        _slice_shape,
        tensor_module("ChannelSlice", "start", "end"),
        RESHAPE,
        ("slice",),
        summary=lambda p: f"[{p['start']}:{p['end']}]",
    ),
    LayerKind(
        "constant-scale",
        "`x · factor + shift` with fixed numbers, nothing learnt (Inception-ResNet's branch "
        "scale, NF-ResNet's α and β, darknet's crop `2x − 1`).",
        (
            Param("factor", "float", doc="the number every value is multiplied by",
                  aliases=("scale",)),
            Param("shift", "float", 0.0, "added after the multiplication"),
        ),
        same_shape,
        tensor_module("ConstantScale", "factor", "shift"),
        RESHAPE,
        ("const-scale", "mul-const"),
        (None, ("factor",)),
        summary=lambda p: f"×{p['factor']:g}" + (f" {p['shift']:+g}" if p["shift"] else ""),
    ),
    LayerKind(
        "affine",
        "`x · scale + shift` with one learnt number each (HGNetV2's LearnableAffineBlock; "
        "after `squared-relu`, MetaFormer's StarReLU). Its weights are `scale` and `bias` of "
        "shape (1,), timm's keys.",
        (
            Param("scale", "float", 1.0, "the initial scale", aliases=("scale_value",)),
            Param("shift", "float", 0.0, "the initial shift (its key is `bias`)",
                  aliases=("bias_value",)),
        ),
        same_shape,
        tensor_module("LearnableAffine", "scale", "shift"),
        CONV,
        ("learnable-affine", "scalar-affine"),
        count_params=lambda inp, p: 2,
        summary=lambda p: "learnt ·a + b",
    ),
    LayerKind(
        "reshape",
        "Views each sample as `shape` (the batch axis kept and not written); the shapes are "
        "static, so the sizes must multiply to the input's (`reshape((1, 64))` before a 1-D "
        "conv along the channels).",
        (Param("shape", "ints", doc="the new shape of a sample, without the batch axis"),),
        _reshape_shape,
        tensor_module("Reshape", "shape"),
        RESHAPE,
        ("view",),
        summary=lambda p: fmt(p["shape"]),
    ),
    LayerKind(
        "crop",
        "The centre height×width window of an image (darknet's [crop] at inference: it starts "
        "(H − height) // 2 rows and (W − width) // 2 columns in).",
        (
            Param("height", "int", doc="rows kept", aliases=("crop_height",)),
            Param("width", "int", doc="columns kept", aliases=("crop_width",)),
        ),
        _crop_shape,
        tensor_module("CenterCrop", "height", "width"),
        RESHAPE,
        ("center-crop", "centercrop"),
        axis_size=lambda n, axis, p: _kept(n, (p["height"], p["width"])[axis]),
        summary=lambda p: f"{p['height']}×{p['width']}",
    ),
    LayerKind(
        "pad",
        "Pads each side of an image by its own amount, `padding=(top, bottom, left, right)`, "
        "with `value` (zeros: torch's ZeroPad2d); a negative side crops that many rows or "
        "columns (NASNet's `ZeroPad2d((-1, 1, -1, 1))` shifts the image by one pixel).",
        (
            Param("padding", "sides", doc="an int, (h, w) or (top, bottom, left, right); "
                  "negative crops", aliases=("pad", "sides")),
            Param("value", "float", 0.0, "what the padding holds"),
        ),
        _pad_shape,
        _pad_torch,
        RESHAPE,
        ("zero-pad", "zeropad2d", "constant-pad"),
        axis_size=_pad_axis,
        summary=lambda p: f"pad {p['padding']}" + (f" with {p['value']:g}" if p["value"] else ""),
    ),
    LayerKind(
        "space-to-depth",
        "Each block×block patch of pixels moved into the channels (TResNet's stem): "
        "C×H×W → C·block²×(H/block)×(W/block), in timm's channel order.",
        (Param("block", "int", 4, "the patch side", ("block_size",)),),
        _space_to_depth_shape,
        tensor_module("SpaceToDepth", "block"),
        RESHAPE,
        ("spacetodepth",),
        (None, ("block",)),
        spatial=lambda p: (p["block"], p["block"], 0, 1, False),  # a window per output pixel
        axis_size=lambda n, axis, p: None if n % p["block"] else n // p["block"],
        summary=lambda p: f"÷{p['block']}",
    ),
    LayerKind(
        "blur-pool",
        "Anti-aliased downsampling (TResNet, Zhang 2019): each channel blurred by a fixed "
        "binomial filter (a buffer, not in the state_dict), then sampled with `stride`; "
        "padded (filter − 1 + stride − 1) // 2 on each side.",
        (
            Param("filter", "int", 3, "the binomial filter's size", ("filt_size",)),
            Param("stride", "int", 2, "the sampling step"),
            Param("pad_mode", "choice", "reflect", "how the border is padded",
                  choices=("reflect", "replicate", "constant")),
        ),
        _blur_shape,
        _blur_torch,
        POOL,
        ("blurpool", "blur-pool2d", "anti-alias"),
        (None, ("stride",)),
        count_macs=lambda inp, out, p: math.prod(out) * p["filter"] ** 2,
        spatial=lambda p: (p["filter"], p["stride"], blur_padding(p), 1, False),
        summary=lambda p: f"{p['filter']}×{p['filter']}, /{p['stride']}",
    ),
)
