"""Activations: element-wise non-linearities, softmax and maxout."""

from __future__ import annotations

from .core import (
    ACT,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    archc_module,
    check_positive,
    nn_module,
    same_shape,
)


def _maxout_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    check_positive("maxout", p, "k")
    if inp[0] % p["k"]:
        raise ShapeProblem(
            "E201",
            f"maxout with k={p['k']} needs channels divisible by {p['k']}, got {inp[0]}",
            f"give the layer before it a multiple of {p['k']} channels",
        )
    return (inp[0] // p["k"],) + tuple(inp[1:])


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "softmax",
        "Softmax over channels/classes.",
        (),
        same_shape,
        nn_module("Softmax", dim=1),
        ACT,
    ),
    LayerKind("relu", "Rectified linear unit: max(0, x).", (), same_shape, nn_module("ReLU"), ACT),
    LayerKind("sigmoid", "Logistic sigmoid.", (), same_shape, nn_module("Sigmoid"), ACT),
    LayerKind("tanh", "Hyperbolic tangent.", (), same_shape, nn_module("Tanh"), ACT),
    LayerKind(
        "leakyrelu",
        "Leaky ReLU: max(slope·x, x); the lecture uses slope 0.1.",
        (Param("slope", "float", 0.01, "negative slope", ("negative_slope",)),),
        same_shape,
        nn_module("LeakyReLU", "slope"),
        ACT,
        ("leaky-relu", "lrelu"),
        (None, ("slope",)),
        summary=lambda p: f"{p['slope']}",
    ),
    LayerKind(
        "elu",
        "Exponential linear unit.",
        (Param("alpha", "float", 1.0, "saturation"),),
        same_shape,
        nn_module("ELU", "alpha"),
        ACT,
        (),
        (None, ("alpha",)),
    ),
    LayerKind(
        "maxout",
        "Maxout: the maximum over groups of k consecutive channels.",
        (Param("k", "int", 2, "pieces per output channel", ("pieces",)),),
        _maxout_shape,
        archc_module("Maxout", "k"),
        ACT,
        (),
        ("k", ()),
        summary=lambda p: f"k={p['k']}",
    ),
)
