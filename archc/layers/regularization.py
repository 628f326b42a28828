"""Regularisation: layers that act in training only."""

from __future__ import annotations

from typing import Callable

from archc.layers.core import (
    REG,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    archc_module,
    check_probability,
    image,
    nn_module,
)


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
    LayerKind(
        "stochastic-depth",
        "Stochastic depth (torchvision.ops.StochasticDepth): in training, drops a sample's whole "
        "input (`row`) or the batch's (`batch`) with probability p and scales the rest by "
        "1/(1-p); the identity in eval mode.",
        (
            Param("p", "float", doc="drop probability"),
            Param(
                "mode", "choice", "row", "`row` (per sample) or `batch`", choices=("row", "batch")
            ),
        ),
        _dropout_check("stochastic-depth", False),
        archc_module("StochasticDepth", "p", "mode"),
        REG,
        ("drop-path", "droppath"),
        (None, ("p",)),
        summary=lambda p: f"p={p['p']}, {p['mode']}",
    ),
)
