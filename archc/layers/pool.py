"""Pooling: windowed, adaptive and global."""

from __future__ import annotations

from typing import Any, Callable

from .core import POOL, LayerKind, Param, Shape, ShapeContext, ShapeProblem, check_positive, image
from .window import AXES, by_axis, pair, window


def _pool_stride(p: dict) -> int:
    return p["kernel"] if p.get("stride") is None else p["stride"]


def _pool_shape(kind: str) -> Callable[[Shape, dict, ShapeContext], Shape]:
    def rule(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
        check_positive(kind, p, "kernel", "stride")
        per_axis = isinstance(p["padding"], tuple) or isinstance(p["kernel"], tuple)
        for axis, pad, k in zip(AXES, pair(p["padding"]), pair(p["kernel"])):
            if pad * 2 > k:
                raise ShapeProblem(
                    "E204",
                    f"{kind} padding ({pad}) must be at most half the kernel ({k})"
                    + (f" in {axis}" if per_axis else ""),
                )
        h, w = window(kind, inp, p, ctx, p["kernel"], _pool_stride(p), p["padding"], ceil=p["ceil"])
        return (inp[0], h, w)

    return rule


def _pool_torch(cls: str) -> Callable[[Shape, dict], Any]:
    """The constructor of nn.MaxPool2d or nn.AvgPool2d from a pool's parameters."""

    def make(inp: Shape, p: dict):
        import torch.nn as nn

        return getattr(nn, cls)(p["kernel"], _pool_stride(p), p["padding"], ceil_mode=p["ceil"])

    return make


def _adaptive_shape(kind: str) -> Callable[[Shape, dict, ShapeContext], Shape]:
    def rule(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
        c, _, _ = image(kind, inp)
        check_positive(kind, p, "size")
        return (c, p.get("size", 1), p.get("size", 1))

    return rule


def _adaptive_torch(cls: str) -> Callable[[Shape, dict], Any]:
    """The constructor of nn.AdaptiveAvgPool2d or nn.AdaptiveMaxPool2d (size 1: global)."""

    def make(inp: Shape, p: dict):
        import torch.nn as nn

        return getattr(nn, cls)(p.get("size", 1))

    return make


_POOL_PARAMS = (
    Param("kernel", "int2", 2, "window size, or (h, w)"),
    Param("stride", "int2?", None, "step, or (h, w); defaults to the kernel"),
    Param("padding", "int2", 0, "zero padding, or (h, w)", ("pad",)),
    Param("ceil", "bool", False, "ceil mode: keep a partial last window", ("ceil_mode",)),
)


def _pool_spatial(p: dict) -> tuple[int, int, int, int, bool]:
    return (p["kernel"], _pool_stride(p), p["padding"], 1, p["ceil"])


def _pool_summary(p: dict) -> str:
    kh, kw = pair(p["kernel"])
    return f"{kh}×{kw}, /{by_axis(_pool_stride(p))}"


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "maxpool",
        "Max pooling; `maxpool` alone is VGG's 2×2 window with stride 2.",
        _POOL_PARAMS,
        _pool_shape("maxpool"),
        _pool_torch("MaxPool2d"),
        POOL,
        ("max-pool", "maxpool2d", "pool"),
        ("kernel", ("stride",)),
        spatial=_pool_spatial,
        summary=_pool_summary,
    ),
    LayerKind(
        "avgpool",
        "Average pooling.",
        _POOL_PARAMS,
        _pool_shape("avgpool"),
        _pool_torch("AvgPool2d"),
        POOL,
        ("avg-pool", "avgpool2d", "averagepool"),
        ("kernel", ("stride",)),
        spatial=_pool_spatial,
        summary=_pool_summary,
    ),
    LayerKind(
        "adaptiveavgpool",
        "Adaptive average pooling to size×size.",
        (Param("size", "int", 1, "output height and width"),),
        _adaptive_shape("adaptive-avgpool"),
        _adaptive_torch("AdaptiveAvgPool2d"),
        POOL,
        ("adaptive-avgpool",),
        (None, ("size",)),
        summary=lambda p: f"→{p['size']}×{p['size']}",
    ),
    LayerKind(
        "adaptivemaxpool",
        "Adaptive max pooling to size×size.",
        (Param("size", "int", 1, "output height and width"),),
        _adaptive_shape("adaptive-maxpool"),
        _adaptive_torch("AdaptiveMaxPool2d"),
        POOL,
        ("adaptive-maxpool",),
        (None, ("size",)),
        summary=lambda p: f"→{p['size']}×{p['size']}",
    ),
    LayerKind(
        "globalavgpool",
        "Global average pooling: C×H×W → C×1×1.",
        (),
        _adaptive_shape("global-avgpool"),
        _adaptive_torch("AdaptiveAvgPool2d"),
        POOL,
        ("global-avgpool", "gap", "globalavgpooling"),
    ),
)
