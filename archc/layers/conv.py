"""Convolution."""

from __future__ import annotations

import math
from typing import Any

from archc.layers.core import (
    CONV,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    Spatial,
    check_positive,
    image,
    weighted,
)
from archc.layers.window import (
    TF_SAME,
    by_axis,
    pair,
    resolve_padding,
    tf_same_sides,
    window,
    window_axis_size,
)


def conv_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    """A conv's output C×H×W for an image `inp` (the conv kinds share it)."""
    c, _, _ = image("conv", inp)
    check_positive("conv", p, "out", "kernel", "stride", "dilation", "groups")
    if c % p["groups"] or p["out"] % p["groups"]:
        raise ShapeProblem(
            "E201",
            f"conv groups={p['groups']} must divide both the input "
            f"channels ({c}) and out ({p['out']})",
        )
    pad = tf_same_sides(inp, p, p["stride"]) if p["padding"] == TF_SAME else resolve_padding(p)
    h, w = window("conv", inp, p, ctx, p["kernel"], p["stride"], pad, p["dilation"])
    return (p["out"], h, w)


def _std_conv_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    if p["padding"] == TF_SAME:
        raise ShapeProblem("E204", 'std-conv takes no padding="tf-same"',
                           "give the padding as a number, `same` or `valid`")
    return conv_shape(inp, p, ctx)


def conv_params(inp: Shape, p: dict[str, Any]) -> int:
    """A conv's weights and bias."""
    out: int = p["out"]
    groups: int = p["groups"]
    per_filter = inp[0] // groups * math.prod(pair(p["kernel"]))
    return out * per_filter + (out if p["bias"] else 0)


def conv_macs(inp: Shape, out: Shape, p: dict[str, Any]) -> int:
    """A conv's multiply-accumulates: each output value reads (C / groups)·k·k inputs."""
    groups: int = p["groups"]
    return math.prod(out) * (inp[0] // groups) * math.prod(pair(p["kernel"]))


def conv_summary(p: dict[str, Any]) -> str:
    """`3×3, 64, /2`; a non-square kernel reads `1×7, 192`."""
    kh, kw = pair(p["kernel"])
    stride = by_axis(p["stride"])
    return (f"{kh}×{kw}, {p['out']}" + (f", /{stride}" if stride != "1" else "")
            + (", tf-same" if p["padding"] == TF_SAME else ""))


def _std_conv_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.tensor_modules import ScaledStdConv2d

    return weighted(
        ScaledStdConv2d,
        inp[0],
        p["out"],
        p["kernel"],
        stride=p["stride"],
        padding=resolve_padding(p),
        dilation=p["dilation"],
        groups=p["groups"],
        bias=p["bias"],
        gamma=p["gamma"],
        eps=p["eps"],
    )


def _conv_torch(inp: Shape, p: dict[str, Any]) -> Any:
    import torch.nn as nn

    if p["padding"] == TF_SAME:
        from archc.layers.modules import TFSameConv2d

        return weighted(TFSameConv2d, inp[0], p["out"], p["kernel"], stride=p["stride"],
                        dilation=p["dilation"], groups=p["groups"], bias=p["bias"])
    return weighted(
        nn.Conv2d,
        inp[0],
        p["out"],
        p["kernel"],
        stride=p["stride"],
        padding=resolve_padding(p),
        dilation=p["dilation"],
        groups=p["groups"],
        bias=p["bias"],
    )


CONV_PARAMS = (
    Param("out", "int", doc="output channels", aliases=("channels", "filters")),
    Param("kernel", "int2", 3, "kernel size, or (h, w)", ("k", "kernel_size")),
    Param("stride", "int2", 1, "step, or (h, w)"),
    Param(
        "padding",
        "padding",
        "same",
        'a number, `same` (half the kernel), `valid` (0) or "tf-same" (TensorFlow\'s, '
        "for the input size)",
        ("pad",),
    ),
    Param("dilation", "int2", 1, "spacing of the kernel taps, or (h, w)"),
    Param("groups", "int", 1, "grouped convolution"),
    Param("bias", "bool", True, "learn a bias"),
)


def conv_spatial(p: dict[str, Any]) -> Spatial:
    """A conv's window (kernel, stride, padding, dilation, no ceil) for receptive fields;
    `tf-same` pads by the input size, which `window_axis_size` works out (0 here)."""
    pad = 0 if p["padding"] == TF_SAME else resolve_padding(p)
    return (p["kernel"], p["stride"], pad, p["dilation"], False)


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "conv",
        "2-D convolution; `convK-C` is a K×K conv with C filters and same padding.",
        CONV_PARAMS,
        conv_shape,
        _conv_torch,
        CONV,
        ("convolution", "conv2d"),
        ("kernel", ("out",)),
        conv_params,
        conv_macs,
        spatial=conv_spatial,
        axis_size=window_axis_size(conv_spatial),
        summary=conv_summary,
    ),
    LayerKind(
        "std-conv",
        "A conv with scaled weight standardisation (NF-ResNet; timm's ScaledStdConv2d): each "
        "filter's weights standardised (mean 0, variance 1, `eps` added to the variance), then "
        "scaled by gain · gamma / √fan-in, with `gain` (out, 1, 1, 1) learnt under timm's name.",
        (
            *CONV_PARAMS,
            Param("gamma", "float", 1.0, "the activation's gain folded into the weights"),
            Param("eps", "float", 1e-6, "added to each filter's variance"),
        ),
        _std_conv_shape,
        _std_conv_torch,
        CONV,
        ("scaled-std-conv", "stdconv", "ws-conv"),
        ("kernel", ("out",)),
        lambda inp, p: conv_params(inp, p) + p["out"],  # + the gain per filter
        conv_macs,
        spatial=conv_spatial,
        summary=conv_summary,
    ),
)
