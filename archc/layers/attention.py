"""Attention and the transformer's MLP: the kinds of an encoder block."""

from __future__ import annotations

import math

from .core import (
    FC,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    Style,
    check_positive,
    check_probability,
)
from .tokens import tokens

ATTENTION = Style("attention", "#fee391")


def _heads_divide(kind: str, channels: int, heads: int) -> None:
    """A ShapeProblem unless `heads` divides the channels."""
    if channels % heads:
        raise ShapeProblem(
            "E201",
            f"{kind}: {heads} heads must divide the channels ({channels})",
            "pick a number of heads that divides the hidden size",
        )


def _self_attention_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    _, c = tokens("self-attention", inp)
    check_positive("self-attention", p, "heads")
    check_probability("self-attention", p, "dropout")
    _heads_divide("self-attention", c, p["heads"])
    return inp


def _self_attention_torch(inp: Shape, p: dict):
    from ..backends.token_modules import SelfAttention

    return SelfAttention(inp[1], p["heads"], p["dropout"])


def _self_attention_macs(inp: Shape, out: Shape, p: dict) -> int:
    t, c = inp
    return 4 * t * c * c + 2 * t * t * c  # q, k, v and output projections; scores; sum


def _mlp_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    check_positive("mlp", p, "hidden", "out")
    check_probability("mlp", p, "dropout")
    return (*inp[:-1], _mlp_out(inp, p))


def _mlp_out(inp: Shape, p: dict) -> int:
    return inp[-1] if p["out"] is None else p["out"]


def _mlp_torch(inp: Shape, p: dict):
    from ..backends.token_modules import MLP

    return MLP(inp[-1], p["hidden"], _mlp_out(inp, p), p["dropout"])


def _mlp_params(inp: Shape, p: dict) -> int:
    c, h, o = inp[-1], p["hidden"], _mlp_out(inp, p)
    return c * h + h + h * o + o


def _mlp_macs(inp: Shape, out: Shape, p: dict) -> int:
    return math.prod(inp[:-1]) * p["hidden"] * (inp[-1] + _mlp_out(inp, p))


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
)
