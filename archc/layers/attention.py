"""Attention and the transformer's MLP: the kinds of an encoder block."""

from __future__ import annotations

import math
from typing import Any

from archc.layers.core import (
    FC,
    RESHAPE,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    ShapeRule,
    Style,
    check_positive,
    check_probability,
    fmt,
    image,
    weighted_composite,
)
from archc.layers.tokens import token_module, tokens

ATTENTION = Style("attention", "#fee391")


def _heads_divide(kind: str, channels: int, heads: int) -> None:
    """A ShapeProblem unless `heads` divides the channels."""
    if channels % heads:
        raise ShapeProblem(
            "E201",
            f"{kind}: {heads} heads must divide the channels ({channels})",
            "pick a number of heads that divides the hidden size",
        )


def _self_attention_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    _, c = tokens("self-attention", inp)
    check_positive("self-attention", p, "heads")
    check_probability("self-attention", p, "dropout")
    _heads_divide("self-attention", c, p["heads"])
    return inp


def _self_attention_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.token_modules import SelfAttention

    return SelfAttention(inp[1], p["heads"], p["dropout"])


def _self_attention_macs(inp: Shape, out: Shape, p: dict[str, Any]) -> int:
    t, c = inp
    return 4 * t * c * c + 2 * t * t * c  # q, k, v and output projections; scores; sum


def _mlp_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    check_positive("mlp", p, "hidden", "out")
    check_probability("mlp", p, "dropout")
    return (*inp[:-1], _mlp_out(inp, p))


def _mlp_out(inp: Shape, p: dict[str, Any]) -> int:
    out: int = inp[-1] if p["out"] is None else p["out"]
    return out


def _mlp_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.token_modules import MLP

    return weighted_composite(MLP, inp[-1], p["hidden"], _mlp_out(inp, p), p["dropout"])


def _mlp_params(inp: Shape, p: dict[str, Any]) -> int:
    h: int = p["hidden"]
    c, o = inp[-1], _mlp_out(inp, p)
    return c * h + h + h * o + o


def _mlp_macs(inp: Shape, out: Shape, p: dict[str, Any]) -> int:
    hidden: int = p["hidden"]
    return math.prod(inp[:-1]) * hidden * (inp[-1] + _mlp_out(inp, p))


def channel_last(kind: str, inp: Shape) -> tuple[int, int, int]:
    """`inp` as a channel-last image H×W×C, or a ShapeProblem."""
    if len(inp) != 3:
        raise ShapeProblem(
            "E203",
            f"{kind} expects a channel-last image H×W×C, got {fmt(inp)}",
            "make the image channel-last with `permute((0, 2, 3, 1))`",
        )
    return inp


def _padded(size: int, window: int) -> int:
    """`size` padded up to whole windows."""
    return size + -size % window


def _window_attention_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    _, _, c = channel_last("window-attention", inp)
    check_positive("window-attention", p, "heads", "window")
    check_probability("window-attention", p, "dropout")
    check_probability("window-attention", p, "attention_dropout")
    _heads_divide("window-attention", c, p["heads"])
    if not 0 <= p["shift"] < p["window"]:
        raise ShapeProblem(
            "E204",
            f"window-attention: shift must be in [0, window), got {p['shift']}",
            f"Swin shifts by half a window: shift={p['window'] // 2}",
        )
    if p["version"] == 2 and p["window"] < 2:
        raise ShapeProblem("E204", "window-attention version 2 needs a window of at least 2")
    return inp


def _window_attention_params(inp: Shape, p: dict[str, Any]) -> int:
    heads: int = p["heads"]
    w: int = p["window"]
    c = inp[2]
    projections = 4 * c * c + 4 * c  # qkv and proj, with biases
    if p["version"] == 1:
        return projections + (2 * w - 1) ** 2 * heads  # the bias table
    return projections + heads + 2 * _CPB + _CPB + _CPB * heads  # logit scale, cpb MLP


_CPB = 512  # hidden size of Swin v2's continuous-position-bias MLP


def _window_attention_macs(inp: Shape, out: Shape, p: dict[str, Any]) -> int:
    h, w, c = inp
    win: int = p["window"]
    pixels = _padded(h, win) * _padded(w, win)  # every window attends within itself
    macs = 4 * pixels * c * c + 2 * pixels * win * win * c
    if p["version"] == 2:  # the bias MLP runs on every relative offset
        heads: int = p["heads"]
        macs += (2 * win - 1) ** 2 * (2 * _CPB + _CPB * heads)
    return macs


def _window_attention_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.token_modules import WindowAttention

    return WindowAttention(inp[2], p["heads"], p["window"], p["shift"], p["version"],
                           p["dropout"], p["attention_dropout"])


def _patch_merging_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    h, w, c = channel_last("patch-merging", inp)
    return (-(-h // 2), -(-w // 2), 2 * c)


def _patch_merging_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.token_modules import PatchMerging

    return PatchMerging(inp[2], p["version"], p["affine"])


def _patch_merging_params(inp: Shape, p: dict[str, Any]) -> int:
    c = inp[2]
    norm = (4 if p["version"] == 1 else 2) * c  # the channels the norm sees
    return 8 * c * c + (2 * norm if p["affine"] else 2 * c)  # else the reduction's bias


_VERSION = Param("version", "int", 1, "1 (Swin) or 2 (Swin V2)")


def _check_version(rule: ShapeRule) -> ShapeRule:
    """`rule`, refusing a version other than 1 and 2."""

    def checked(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
        if p["version"] not in (1, 2):
            raise ShapeProblem("E204", f"version must be 1 or 2, got {p['version']}")
        return rule(inp, p, ctx)

    return checked


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "self-attention",
        "Multi-head self-attention over T×C tokens, with nn.MultiheadAttention's weights as "
        "torchvision's ViT keys them: `in_proj_weight` (3C×C), `in_proj_bias`, `out_proj`.",
        (
            Param("heads", "int", doc="attention heads; must divide the channels",
                  aliases=("num_heads",)),
            Param("dropout", "float", 0.0, "dropout of the attention weights"),
        ),
        _self_attention_shape,
        _self_attention_torch,
        ATTENTION,
        ("mha", "multihead-attention", "attention"),
        (None, ("heads",)),
        lambda inp, p: 4 * inp[1] * inp[1] + 4 * inp[1],
        _self_attention_macs,
        summary=lambda p: f"{p['heads']} heads",
    ),
    LayerKind(
        "mlp",
        "The transformer's MLP over the last axis: Linear to `hidden`, GELU, dropout, Linear "
        "to `out` (the input's size by default), dropout; keyed `0` and `3` as torchvision's "
        "MLPBlock.",
        (
            Param("hidden", "int", doc="hidden size", aliases=("mlp_dim",)),
            Param("out", "int?", None, "output size; none: the input's"),
            Param("dropout", "float", 0.0, "dropout after each Linear"),
        ),
        _mlp_shape,
        _mlp_torch,
        FC,
        ("mlp-block", "ffn"),
        (None, ("hidden",)),
        _mlp_params,
        _mlp_macs,
        summary=lambda p: f"{p['hidden']}",
    ),
    LayerKind(
        "window-attention",
        "Swin's window attention on a channel-last image H×W×C: attention within each "
        "window×window window (the image padded to whole windows), with a learnt relative "
        "position bias; `shift` rolls the image first and masks across the seams. "
        "`version=2` is Swin V2's: cosine attention with a learnt logit scale and a "
        "continuous position bias MLP. Keys as torchvision's ShiftedWindowAttention(V2).",
        (
            Param("heads", "int", doc="attention heads; must divide the channels",
                  aliases=("num_heads",)),
            Param("window", "int", 7, "side of a square window", ("window_size",)),
            Param("shift", "int", 0, "roll by this many pixels (half a window in every "
                  "second block)", ("shift_size",)),
            _VERSION,
            Param("dropout", "float", 0.0, "dropout of the output"),
            Param("attention_dropout", "float", 0.0, "dropout of the attention weights"),
        ),
        _check_version(_window_attention_shape),
        _window_attention_torch,
        ATTENTION,
        ("shifted-window-attention", "swin-attention"),
        (None, ("heads",)),
        _window_attention_params,
        _window_attention_macs,
        summary=lambda p: f"{p['heads']} heads, {p['window']}×{p['window']}"
        + (f", shift {p['shift']}" if p["shift"] else "") + (", v2" if p["version"] == 2 else ""),
    ),
    LayerKind(
        "patch-merging",
        "Swin's downsampling of a channel-last image: every 2×2 block of pixels (odd sides "
        "padded) concatenated, H×W×C → ⌈H/2⌉×⌈W/2⌉×4C, then LayerNorm and a Linear to 2C; "
        "`version=2` puts the Linear first and normalises 2C. Keys `reduction`, `norm`. "
        "`affine=false` (what `--for inference` writes for v1) gives the norm no scale and "
        "shift and the Linear a bias.",
        (_VERSION, Param("affine", "bool", True, "the norm learns a scale and shift; false: "
                         "none, and the Linear has a bias")),
        _check_version(_patch_merging_shape),
        _patch_merging_torch,
        FC,
        ("patchmerging", "patch-merge"),
        count_params=_patch_merging_params,
        count_macs=lambda inp, out, p: math.prod(out[:2]) * 8 * inp[2] ** 2,
        summary=lambda p: ", ".join((["v2"] if p["version"] == 2 else [])
                                    + ([] if p["affine"] else ["no affine"])),
    ),
)


# --------------------------------------------------------------------------- MaxViT


def _partition_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    c, h, w = image("partition", inp)
    check_positive("partition", p, "size")
    _divides("partition", p["size"], h, w)
    s = p["size"]
    return ((h // s) * (w // s), s * s, c)


def _divides(kind: str, size: int, h: int, w: int) -> None:
    """A ShapeProblem unless `size` divides the height and width."""
    if h % size or w % size:
        raise ShapeProblem(
            "E202",
            f"{kind} size {size} must divide the height and width, got {h}×{w}",
            "pick an input size whose feature maps divide by the partition size (MaxViT: "
            "224 for size 7)",
        )


def _partition_groups(kind: str, inp: Shape, p: dict[str, Any]) -> tuple[int, int, int]:
    """(groups, group size, channels) of a partitioned tensor, checked against `size`."""
    if len(inp) != 3 or inp[1] != p["size"] ** 2:
        raise ShapeProblem(
            "E203",
            f"{kind} expects groups×{p['size']}²×C from `partition({p['size']})`, "
            f"got {fmt(inp)}",
            "partition the image first, with the same size",
        )
    return inp


def _departition_height(inp: Shape, p: dict[str, Any]) -> int:
    size: int = p["size"]
    rows = p["height"] // size if p["height"] else math.isqrt(inp[0])
    return rows * size


def _departition_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    g, _, c = _partition_groups("departition", inp, p)
    h = _departition_height(inp, p)
    rows = h // p["size"]
    if rows < 1 or g % rows:
        raise ShapeProblem(
            "E201",
            f"departition: {g} groups do not fill an image of height {h}",
            "give height= the partitioned image's height",
        )
    return (c, h, g // rows * p["size"])


def _relative_attention_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    _, _, c = _partition_groups("relative-attention", inp, p)
    check_positive("relative-attention", p, "head_dim")
    if c % p["head_dim"]:
        raise ShapeProblem(
            "E201",
            f"relative-attention: head_dim {p['head_dim']} must divide the channels ({c})",
        )
    return inp


def _relative_attention_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.token_modules import RelativeAttention

    return RelativeAttention(inp[2], p["head_dim"], p["size"])


def _departition_torch(inp: Shape, p: dict[str, Any]) -> Any:
    from archc.layers.token_modules import Departition

    return Departition(p["size"], _departition_height(inp, p), p["mode"])


_MODE = Param("mode", "choice", "window", "`window` (neighbours) or `grid` (dilated)",
              choices=("window", "grid"))
_SIZE = Param("size", "int", doc="side of a group (MaxViT's partition size)",
              aliases=("partition_size",))

MAXVIT_KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "partition",
        "MaxViT's partition of an image into groups of size×size pixels, C×H×W → "
        "(H/size·W/size)×size²×C: `window` groups neighbours, `grid` pixels H/size apart.",
        (_SIZE, _MODE),
        _partition_shape,
        token_module("Partition", "size", "mode"),
        RESHAPE,
        ("block-partition", "grid-partition"),
        (None, ("size",)),
        summary=lambda p: f"{p['size']}×{p['size']} {p['mode']}",
    ),
    LayerKind(
        "departition",
        "The inverse of `partition` (same size and mode): groups×size²×C → C×H×W, for an "
        "image `height` pixels high (square by default).",
        (_SIZE, _MODE, Param("height", "int?", None, "the image's height; none: square")),
        _departition_shape,
        _departition_torch,
        RESHAPE,
        (),
        (None, ("size",)),
        summary=lambda p: f"{p['size']}×{p['size']} {p['mode']}",
    ),
    LayerKind(
        "relative-attention",
        "MaxViT's attention within each group of a `partition`, with a learnt relative "
        "position bias over the size×size group; keys `to_qkv`, `merge`, "
        "`relative_position_bias_table`, buffer `relative_position_index`.",
        (Param("head_dim", "int", 32, "channels per head; must divide the channels"), _SIZE),
        _relative_attention_shape,
        _relative_attention_torch,
        ATTENTION,
        ("rel-attention", "relative-position-attention"),
        count_params=lambda inp, p: 4 * inp[2] ** 2 + 4 * inp[2]
        + (2 * p["size"] - 1) ** 2 * (inp[2] // p["head_dim"]),
        count_macs=lambda inp, out, p: inp[0] * (4 * inp[1] * inp[2] ** 2
                                                 + 2 * inp[1] ** 2 * inp[2]),
        summary=lambda p: f"head_dim {p['head_dim']}, {p['size']}×{p['size']}",
    ),
)

KINDS = KINDS + MAXVIT_KINDS
