"""Regularisation: layers that act in training only."""

from __future__ import annotations

from typing import Callable

from .core import REG, LayerKind, Param, Shape, ShapeContext, check_probability, image, nn_module


def _dropout_check(kind: str, image_only: bool) -> Callable[[Shape, dict, ShapeContext], Shape]:
    def rule(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
        check_probability(kind, p)
        return image(kind, inp) if image_only else inp

    return rule


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "dropout",
        "Dropout of single activations.",
        (Param("p", "float", 0.5, "drop probability"),),
        _dropout_check("dropout", False),
        nn_module("Dropout", "p"),
        REG,
        (),
        (None, ("p",)),
        summary=lambda p: f"p={p['p']}",
    ),
    LayerKind(
        "dropout2d",
        "Dropout of whole channels.",
        (Param("p", "float", 0.5, "drop probability"),),
        _dropout_check("dropout2d", True),
        nn_module("Dropout2d", "p"),
        REG,
        (),
        (None, ("p",)),
        summary=lambda p: f"p={p['p']}",
    ),
)
