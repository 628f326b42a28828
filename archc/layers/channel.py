"""Channel operations: shuffle, a learnable scale per channel, and Linear over channels."""

from __future__ import annotations

import math
from typing import Any

from archc.layers.core import (
    CONV,
    FC,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    check_positive,
    fmt,
    groups_shape,
    image,
    weighted,
)
from archc.layers.dense import linear_params


def _shuffle_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.modules import ChannelShuffle

    return ChannelShuffle(p["groups"])


def _scale_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.modules import LayerScale

    return LayerScale(inp[0], p["init"], p.get("flat", False))  # (older callers omit it)


def _channel_axis(p: dict[str, Any]) -> int:
    """Where the channels of a channel-fc's input are: first (C×H×W) or last (H×W×C)."""
    return -1 if p["last"] else 0


def _channel_fc_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    if len(inp) != 3:
        raise ShapeProblem(
            "E203",
            f"channel-fc expects an image tensor, got {fmt(inp)}",
            "on flat features use `fc`",
        )
    check_positive("channel-fc", p, "out")
    out = list(inp)
    out[_channel_axis(p)] = p["out"]
    return tuple(out)


def _channel_fc_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from torch import nn

    from archc.layers.modules import ChannelLinear

    cls = nn.Linear if p["last"] else ChannelLinear  # nn.Linear works on the last axis
    return weighted(cls, inp[_channel_axis(p)], p["out"], bias=p["bias"])


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "channel-shuffle",
        "Channel shuffle (ShuffleNet): the channels of `groups` groups interleaved.",
        (Param("groups", "int", doc="number of groups; must divide the channels"),),
        groups_shape("channel-shuffle"),
        _shuffle_torch,
        CONV,
        ("shuffle", "channelshuffle"),
        (None, ("groups",)),
        summary=lambda p: f"groups={p['groups']}",
    ),
    LayerKind(
        "scale",
        "A learnable scale per channel, x·γ with γ of shape (C, 1, 1) (ConvNeXt's layer "
        "scale). Its state_dict key is the layer's own name, without `.weight`: label it "
        "`layer_scale:` for torchvision's key.",
        (Param("init", "float", 1.0, "the initial value of every γ"),
         Param("flat", "bool", False, "γ is kept as a vector (C,) and reshaped to (C, 1, 1) "
               "when applied, as timm's `gamma` (ConvNeXt, RDNet)")),
        lambda inp, p, ctx: image("scale", inp),
        _scale_torch,
        CONV,
        ("layer-scale", "layerscale"),
        count_params=lambda inp, p: inp[0],
        summary=lambda p: f"γ={p['init']}",
    ),
    LayerKind(
        "channel-fc",
        "Linear over the channel axis of an image, at every pixel: C×H×W → out×H×W, with "
        "torchvision's (out, in) Linear weights (not a 1×1 conv's). `last=true` takes a "
        "channel-last H×W×C image (after `permute((0, 2, 3, 1))`), as ConvNeXt's block does.",
        (
            Param("out", "int", doc="output channels", aliases=("features",)),
            Param("bias", "bool", True, "learn a bias"),
            Param("last", "bool", False, "the channels are the last axis (H×W×C)"),
        ),
        _channel_fc_shape,
        _channel_fc_torch,
        FC,
        ("channel-linear", "pointwise-linear"),
        (None, ("out",)),
        lambda inp, p: linear_params(inp[_channel_axis(p)], p),
        lambda inp, out, p: math.prod(out) * inp[_channel_axis(p)],
        summary=lambda p: f"{p['out']}",
    ),
)
