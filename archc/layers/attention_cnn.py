"""Attention inside CNNs, along the channels: ECA's 1-D conv over the pooled channels, and
the split attention across branches of SKNet and ResNeSt (a softmax over branch scores),
alone or with the grouped conv that makes ResNeSt's branches (`splat-conv`); and among the
pixels: multi-head attention whose queries, keys and values a conv made (CPUBone's
ConvAttention).

Their torch modules are in `tensor_modules` (imported when a module is built).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from archc.layers.conv import (
    CONV_PARAMS,
    conv_macs,
    conv_params,
    conv_shape,
    conv_spatial,
    conv_summary,
)
from archc.layers.core import (
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    Style,
    check_positive,
    image,
)
from archc.layers.tensor import tensor_module
from archc.layers.window import TF_SAME, resolve_padding

ATTENTION = Style("attention", "#f4cae4")


def _eca_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    image("eca", inp)
    check_positive("eca", p, "kernel")
    if p["kernel"] % 2 == 0:
        raise ShapeProblem("E204", f"eca needs an odd kernel, got {p['kernel']}",
                           "timm's EcaModule pads (k - 1) / 2 on each side: use 3, 5, ...")
    return inp


def _pixel_attention_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    c, h, w = image("pixel-attention", inp)
    check_positive("pixel-attention", p, "heads", "head_dim")
    width = p["heads"] * p["head_dim"]
    if c != 3 * width:
        raise ShapeProblem(
            "E201",
            f"pixel-attention with {p['heads']} heads of {p['head_dim']} needs 3 × "
            f"{p['heads']} × {p['head_dim']} = {3 * width} input channels (each head's query, "
            f"key and value), got {c}",
            f"make the input {3 * width} channels, e.g. with a 1×1 conv before it",
        )
    return (width, h, w)


def _pixel_attention_macs(inp: Shape, out: Shape, p: dict[str, Any]) -> int:
    """q·kᵀ and the weights times v: two (pixels × pixels × head_dim) products per head."""
    pixels: int = inp[1] * inp[2]
    heads: int = p["heads"]
    head_dim: int = p["head_dim"]
    return 2 * heads * pixels * pixels * head_dim


def _split_attention_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    c, h, w = image("split-attention", inp)
    check_positive("split-attention", p, "radix", "hidden", "groups")
    if c % p["radix"]:
        raise ShapeProblem(
            "E201",
            f"split-attention radix={p['radix']} must divide its input channels ({c}): the "
            "input is the branches' outputs stacked",
            "concatenate `radix` branches of equal width before it",
        )
    out = c // p["radix"]
    if out % p["groups"] or p["hidden"] % p["groups"]:
        raise ShapeProblem(
            "E201",
            f"split-attention groups={p['groups']} must divide the branch width ({out}) and "
            f"hidden ({p['hidden']})",
        )
    return (out, h, w)


def _split_attention_params(inp: Shape, p: dict[str, Any]) -> int:
    hidden: int = p["hidden"]
    g: int = p["groups"]
    c: int = inp[0] // p["radix"]
    bias = hidden + inp[0] if p["bias"] else 0
    return hidden * (c // g) + inp[0] * (hidden // g) + bias + 2 * hidden  # fc1, fc2, bn


def _split_attention_macs(inp: Shape, out: Shape, p: dict[str, Any]) -> int:
    hidden: int = p["hidden"]
    g: int = p["groups"]
    c: int = inp[0] // p["radix"]
    return hidden * (c // g) + inp[0] * (hidden // g)  # two 1×1 convs on the pooled C×1×1


def _split_attention_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.tensor_modules import SplitAttention

    return SplitAttention(inp[0] // p["radix"], p["radix"], p["hidden"], p["groups"], p["bias"],
                          p["names"])


def _branches(p: dict[str, Any]) -> dict[str, Any]:
    """splat-conv's conv: radix·out filters in groups·radix groups, one group of branches
    per radix."""
    return p | {"out": p["out"] * p["radix"], "groups": p["groups"] * p["radix"]}


def _attention(p: dict[str, Any]) -> dict[str, Any]:
    """splat-conv's split attention (timm's SplitAttn always gives fc1 and fc2 a bias)."""
    return {"radix": p["radix"], "hidden": p["hidden"], "groups": p["groups"], "bias": True}


def _splat_conv_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    c, _, _ = image("splat-conv", inp)
    check_positive("splat-conv", p, "radix", "hidden", "groups")
    if p["padding"] == TF_SAME:  # its module pads as torch's conv does
        raise ShapeProblem("E204", 'splat-conv takes no padding="tf-same"',
                           "give the padding as a number, `same` or `valid`")
    if c % (p["groups"] * p["radix"]):
        raise ShapeProblem(
            "E201",
            f"splat-conv groups·radix = {p['groups']}·{p['radix']} must divide its input "
            f"channels ({c}): its conv has a group per branch and cardinal group",
            "give it input channels that groups·radix divides",
        )
    stacked = conv_shape(inp, _branches(p), ctx)  # (radix·out, H', W')
    return _split_attention_shape(stacked, _attention(p), ctx)


def _splat_conv_params(inp: Shape, p: dict[str, Any]) -> int:
    stacked: int = p["out"] * p["radix"]
    return (conv_params(inp, _branches(p)) + 2 * stacked  # conv, bn0
            + _split_attention_params((stacked,), _attention(p)))


def _splat_conv_macs(inp: Shape, out: Shape, p: dict[str, Any]) -> int:
    stacked = (out[0] * p["radix"], *out[1:])
    return (conv_macs(inp, stacked, _branches(p))
            + _split_attention_macs(stacked, out, _attention(p)))


def _splat_conv_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.tensor_modules import SplitAttentionConv

    return SplitAttentionConv(inp[0], p["out"], p["hidden"], p["kernel"], p["stride"],
                              resolve_padding(p), p["dilation"], p["groups"], p["radix"],
                              p["bias"])


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "pixel-attention",
        "Multi-head attention among the H·W pixels of an image whose channels hold, per "
        "head, its query, key and value of `head_dim` each (CPUBone's ConvAttention, after "
        "its 1×1 conv): 3·heads·head_dim×H×W → heads·head_dim×H×W, softmax(q·kᵀ/√head_dim)·v, "
        "the heads' outputs concatenated. No weights: the convs around it project.",
        (
            Param("heads", "int", doc="attention heads", aliases=("num_heads",)),
            Param("head_dim", "int", doc="channels of each head's query, key and value"),
        ),
        _pixel_attention_shape,
        tensor_module("PixelAttention", "heads", "head_dim"),
        ATTENTION,
        ("conv-attention",),
        count_macs=_pixel_attention_macs,
        summary=lambda p: f"{p['heads']} heads × {p['head_dim']}",
    ),
    LayerKind(
        "eca",
        "Efficient channel attention (ECA-Net): the input scaled per channel by the sigmoid "
        "of a `kernel`-tap 1-D conv (no bias) along the channels of its global average; the "
        "conv's weight is `conv.weight`, as in timm's EcaModule.",
        (Param("kernel", "int", 3, "taps of the 1-D conv along the channels", ("k",
                                                                             "kernel_size")),),
        _eca_shape,
        tensor_module("EfficientChannelAttention", "kernel"),
        ATTENTION,
        ("eca-module", "efficient-channel-attention"),
        (None, ("kernel",)),
        count_params=lambda inp, p: p["kernel"],
        count_macs=lambda inp, out, p: inp[0] * p["kernel"],
        summary=lambda p: f"k={p['kernel']}",
    ),
    LayerKind(
        "split-attention",
        "Attention across `radix` branches stacked in the channels (SKNet's selective kernel, "
        "ResNeSt's split attention): radix·C×H×W → C×H×W. The branches' sum is pooled, passed "
        "through fc1 (1×1 conv to `hidden`), a batch norm, ReLU and fc2 (1×1 conv to radix·C); "
        "a softmax across the branches (a sigmoid when radix is 1) weights them, and they are "
        "summed. `names` gives timm's keys: `\"resnest\"` (fc1, bn1, fc2) or `\"sk\"` "
        "(fc_reduce, bn, fc_select).",
        (
            Param("radix", "int", 2, "the number of branches stacked in the input",
                  ("num_paths", "paths")),
            Param("hidden", "int", doc="the attention's width", aliases=("attn_channels",)),
            Param("groups", "int", 1, "groups of fc1 and fc2 (ResNeSt's cardinality)"),
            Param("bias", "bool", True, "fc1 and fc2 learn a bias (ResNeSt's do, SKNet's not)"),
            Param("names", "choice", "resnest", "timm's child names",
                  choices=("resnest", "sk")),
        ),
        _split_attention_shape,
        _split_attention_torch,
        ATTENTION,
        ("splat", "selective-kernel-attention", "sk-attention"),
        count_params=_split_attention_params,
        count_macs=_split_attention_macs,
        summary=lambda p: f"radix={p['radix']}, {p['hidden']}",
    ),
    LayerKind(
        "splat-conv",
        "ResNeSt's split-attention convolution (timm's SplitAttn) whole: a conv to radix·out "
        "channels in groups·radix groups, a batch norm and ReLU make `radix` branches, and "
        "`split-attention` weights and sums them: out×H'×W'. Its keys are timm's: conv, bn0, "
        "fc1, bn1, fc2. `groups` is ResNeSt's cardinality; `bias` is the conv's (fc1 and fc2 "
        "always have one).",
        (
            *(replace(q, default=False) if q.name == "bias" else q for q in CONV_PARAMS),
            Param("radix", "int", 2, "the number of branches (timm's radix)"),
            Param("hidden", "int", doc="the attention's width", aliases=("attn_channels",)),
        ),
        _splat_conv_shape,
        _splat_conv_torch,
        ATTENTION,
        ("split-attention-conv", "split-attn"),
        ("kernel", ("out",)),
        count_params=_splat_conv_params,
        count_macs=_splat_conv_macs,
        spatial=conv_spatial,
        summary=lambda p: f"{conv_summary(p)}, radix={p['radix']}",
    ),
)
