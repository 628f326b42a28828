"""Resizing: upsampling an image by a whole factor (YOLO's and FPN's nearest neighbour)."""

from __future__ import annotations

from archc.layers.core import POOL, LayerKind, Param, Shape, ShapeContext, check_positive, image


def _upsample_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    """C×H×W → C×(H·scale)×(W·scale)."""
    c, h, w = image("upsample", inp)
    check_positive("upsample", p, "scale")
    return (c, h * p["scale"], w * p["scale"])


def _upsample_torch(inp: Shape, p: dict):
    """nn.Upsample(scale_factor=scale, mode=mode)."""
    import torch.nn as nn

    return nn.Upsample(scale_factor=p["scale"], mode=p["mode"])


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "upsample",
        "Upsampling by a whole factor: C×H×W → C×(H·scale)×(W·scale); `nearest` repeats "
        "each pixel scale×scale times (darknet's [upsample]), `bilinear` interpolates "
        "(align_corners=false). No parameters, no multiply-accumulates.",
        (
            Param("scale", "int", 2, "the factor on height and width", ("scale_factor",)),
            Param("mode", "choice", "nearest", "`nearest` or `bilinear`",
                  choices=("nearest", "bilinear")),
        ),
        _upsample_shape,
        _upsample_torch,
        # drawn with the pools: it changes the spatial size, the other way
        POOL,
        ("upsampling", "upsample2d"),
        (None, ("scale",)),
        summary=lambda p: f"×{p['scale']}, {p['mode']}",
    ),
)
