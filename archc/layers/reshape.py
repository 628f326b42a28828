"""Layers that only move data around."""

from __future__ import annotations

from archc.layers.core import (
    RESHAPE,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    archc_module,
    fmt,
    nn_module,
    same_shape,
)


def _permute_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    dims = p["dims"]
    if sorted(dims) != list(range(len(inp) + 1)) or dims[0] != 0:
        raise ShapeProblem(
            "E204",
            f"permute{tuple(dims)} must reorder the axes 0..{len(inp)} of a batch of "
            f"{fmt(inp)} and keep the batch axis 0 first",
            "e.g. permute((0, 2, 3, 1)) makes C×H×W channel-last",
        )
    return tuple(inp[d - 1] for d in dims[1:])  # dims count the batch axis


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "identity", "Passes its input through.", (), same_shape, nn_module("Identity"), RESHAPE
    ),
    LayerKind(
        "permute",
        "Reorders the axes, counting the batch axis as 0 (torchvision's Permute): "
        "`permute((0, 2, 3, 1))` makes C×H×W channel-last.",
        (Param("dims", "ints", doc="the new order of the axes, batch axis 0 first"),),
        _permute_shape,
        archc_module("Permute", "dims"),
        RESHAPE,
        summary=lambda p: ",".join(map(str, p["dims"])),
    ),
)
