"""Pooling: windowed, adaptive and global."""

from __future__ import annotations

from typing import Any, Callable

from archc.layers.core import (
    POOL,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    Spatial,
    check_positive,
    image,
)
from archc.layers.window import (
    AXES,
    TF_SAME,
    by_axis,
    is_asymmetric,
    pair,
    sides,
    square,
    tf_same_sides,
    window,
    window_axis_size,
)


def _pool_stride(p: dict[str, Any]) -> int:
    stride: int = p["kernel"] if p.get("stride") is None else p["stride"]
    return stride


def _even_padding(value: int | tuple[int, int] | tuple[int, int, int, int]
                  ) -> int | tuple[int, int]:
    """A padding with equal sides on each axis as PyTorch's pools take it: an int or (h, w)
    (four equal-per-axis sides (t, t, l, l) are (t, l))."""
    (top, _), (left, _) = sides(value)
    return value if isinstance(value, int) else square((top, left))


def _pool_shape(kind: str) -> Callable[[Shape, dict[str, Any], ShapeContext], Shape]:
    def rule(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
        check_positive(kind, p, "kernel", "stride")
        if p["padding"] == TF_SAME:
            return _tf_same_shape(kind, inp, p, ctx)
        if is_asymmetric(p["padding"]):
            return _uneven_shape(kind, inp, p, ctx)
        padding = _even_padding(p["padding"])
        per_axis = isinstance(padding, tuple) or isinstance(p["kernel"], tuple)
        for axis, pad, k in zip(AXES, pair(padding), pair(p["kernel"])):
            if pad * 2 > k:
                raise ShapeProblem(
                    "E204",
                    f"{kind} padding ({pad}) must be at most half the kernel ({k})"
                    + (f" in {axis}" if per_axis else ""),
                )
        h, w = window(kind, inp, p, ctx, p["kernel"], _pool_stride(p), padding, ceil=p["ceil"])
        return (inp[0], h, w)

    return rule


def _avgpool_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    """An average pool's shape: a max pool's, and padding by side counts the zeros."""
    if not p.get("count_include_pad", True) and (is_asymmetric(p["padding"])
                                                 or p["padding"] == TF_SAME):
        raise ShapeProblem(
            "E204",
            'avgpool with padding (top, bottom, left, right) or "tf-same" counts its zero '
            "padding: it takes no count_include_pad=false",
            "pad the same on both sides of each axis, or count the padding",
        )
    return _pool_shape("avgpool")(inp, p, ctx)


def _uneven_shape(kind: str, inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    """The shape of a pool padded (top, bottom, left, right) with unequal sides (darknet's
    2×2 stride-1 max pool pads the bottom and right only): each axis padded (before, after).
    Each side pads 0 to kernel - 1, so every window holds an input pixel."""
    c, _, _ = image(kind, inp)
    for axis, ends, k in zip(AXES, sides(p["padding"]), pair(p["kernel"])):
        if min(ends) < 0 or max(ends) >= k:
            raise ShapeProblem(
                "E204",
                f"{kind} padding {p['padding']} must pad each side by 0 to {k - 1} (the "
                f"kernel less one) in {axis}",
            )
    if p["ceil"]:
        raise ShapeProblem(
            "E204",
            f"{kind} with padding (top, bottom, left, right) takes no ceil=true",
            "pad the bottom or right side by one more instead",
        )
    out_h, out_w = window(kind, inp, p, ctx, p["kernel"], _pool_stride(p), sides(p["padding"]))
    return (c, out_h, out_w)


def _tf_same_shape(kind: str, inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    """The shape of a pool with TensorFlow's `SAME` padding: ⌈size / stride⌉ per axis."""
    c, _, _ = image(kind, inp)
    if p["ceil"]:
        raise ShapeProblem("E204", f'{kind} with padding="tf-same" takes no ceil=true',
                           "tf-same already keeps every partial window")
    stride = _pool_stride(p)
    h, w = window(kind, inp, p, ctx, p["kernel"], stride, tf_same_sides(inp, p, stride))
    return (c, h, w)


def _pool_torch(cls: str) -> Callable[[Shape, dict[str, Any]], Any]:
    """The constructor of nn.MaxPool2d or nn.AvgPool2d from a pool's parameters; with
    unequal sides of padding or `tf-same`, archc's PaddedPool2d (PyTorch's pools pad
    evenly)."""

    def make(inp: Shape, p: dict[str, Any]) -> Any:
        import torch.nn as nn

        if is_asymmetric(p["padding"]) or p["padding"] == TF_SAME:
            from archc.layers.modules import PaddedPool2d

            mode = "max" if cls == "MaxPool2d" else "avg"
            return PaddedPool2d(p["kernel"], _pool_stride(p), p["padding"], mode)
        # only an average pool has count_include_pad; leave torch's default where it is
        extra = {} if p.get("count_include_pad", True) else {"count_include_pad": False}
        return getattr(nn, cls)(
            p["kernel"], _pool_stride(p), _even_padding(p["padding"]), ceil_mode=p["ceil"],
            **extra,
        )

    return make


def _adaptive_shape(kind: str) -> Callable[[Shape, dict[str, Any], ShapeContext], Shape]:
    def rule(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
        c, _, _ = image(kind, inp)
        check_positive(kind, p, "size")
        return (c, p.get("size", 1), p.get("size", 1))

    return rule


def _adaptive_torch(cls: str) -> Callable[[Shape, dict[str, Any]], Any]:
    """The constructor of nn.AdaptiveAvgPool2d or nn.AdaptiveMaxPool2d (size 1: global)."""

    def make(inp: Shape, p: dict[str, Any]) -> Any:
        import torch.nn as nn

        return getattr(nn, cls)(p.get("size", 1))

    return make


_POOL_PARAMS = (
    Param("kernel", "int2", 2, "window size, or (h, w)"),
    Param("stride", "int2?", None, "step, or (h, w); defaults to the kernel"),
    Param(
        "padding", "sides", 0,
        'padding, (h, w), (top, bottom, left, right), or "tf-same" (TensorFlow\'s, for the '
        "input size)", ("pad",)
    ),
    Param("ceil", "bool", False, "ceil mode: keep a partial last window", ("ceil_mode",)),
)


def _pool_spatial(p: dict[str, Any]) -> Spatial:
    """(kernel, stride, padding, dilation, ceil); an uneven padding per axis as
    ((top, bottom), (left, right)), which window_out takes as (before, after); `tf-same`
    pads by the input size, which `window_axis_size` works out (0 here)."""
    if p["padding"] == TF_SAME:
        return (p["kernel"], _pool_stride(p), 0, 1, False)
    padding = sides(p["padding"]) if is_asymmetric(p["padding"]) else _even_padding(p["padding"])
    return (p["kernel"], _pool_stride(p), padding, 1, p["ceil"])


def _pool_summary(p: dict[str, Any]) -> str:
    kh, kw = pair(p["kernel"])
    uneven = f", pad {p['padding']}" if is_asymmetric(p["padding"]) else ""
    uneven += ", tf-same" if p["padding"] == TF_SAME else ""
    excluded = ", pad not counted" if not p.get("count_include_pad", True) else ""
    return f"{kh}×{kw}, /{by_axis(_pool_stride(p))}{uneven}{excluded}"


_AVGPOOL_PARAMS = (
    *_POOL_PARAMS,
    Param(
        "count_include_pad",
        "bool",
        True,
        "the zero padding counts in each window's average (false: Inception-v4's)",
        ("include_pad",),
    ),
)


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
        axis_size=window_axis_size(_pool_spatial),
        summary=_pool_summary,
    ),
    LayerKind(
        "avgpool",
        "Average pooling; `count_include_pad=false` divides each window by the input pixels "
        "it covers only, not the padding.",
        _AVGPOOL_PARAMS,
        _avgpool_shape,
        _pool_torch("AvgPool2d"),
        POOL,
        ("avg-pool", "avgpool2d", "averagepool"),
        ("kernel", ("stride",)),
        spatial=_pool_spatial,
        axis_size=window_axis_size(_pool_spatial),
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
