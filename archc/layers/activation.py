"""Activations: element-wise non-linearities, softmax and maxout."""

from __future__ import annotations

from typing import Any

from archc.layers.core import (
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


def _maxout_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    check_positive("maxout", p, "k")
    if inp[0] % p["k"]:
        raise ShapeProblem(
            "E201",
            f"maxout with k={p['k']} needs channels divisible by {p['k']}, got {inp[0]}",
            f"give the layer before it a multiple of {p['k']} channels",
        )
    return (inp[0] // p["k"],) + tuple(inp[1:])


def _prelu_torch(inp: Shape, p: dict[str, Any]) -> Any:
    import torch.nn as nn

    return nn.PReLU(inp[0] if p["per_channel"] else 1, init=p["init"])


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
    LayerKind(
        "relu6",
        "ReLU capped at 6: min(max(0, x), 6) (MobileNet).",
        (),
        same_shape,
        nn_module("ReLU6"),
        ACT,
    ),
    LayerKind(
        "silu",
        "SiLU (swish): x·sigmoid(x) (EfficientNet).",
        (),
        same_shape,
        nn_module("SiLU"),
        ACT,
        ("swish",),
    ),
    LayerKind(
        "hardswish",
        "Hard swish: x·relu6(x + 3)/6 (MobileNetV3).",
        (),
        same_shape,
        nn_module("Hardswish"),
        ACT,
        ("hswish", "hard-swish"),
    ),
    LayerKind(
        "hardsigmoid",
        "Hard sigmoid: relu6(x + 3)/6 (MobileNetV3's SE gate).",
        (),
        same_shape,
        nn_module("Hardsigmoid"),
        ACT,
        ("hsigmoid", "hard-sigmoid"),
    ),
    LayerKind(
        "gelu",
        "Gaussian error linear unit: x·Φ(x), exact or with the tanh approximation (ConvNeXt).",
        (
            Param(
                "approximate",
                "choice",
                "none",
                "`none` (exact erf) or `tanh`",
                choices=("none", "tanh"),
            ),
        ),
        same_shape,
        nn_module("GELU", "approximate"),
        ACT,
        summary=lambda p: "tanh" if p["approximate"] == "tanh" else "",
    ),
    LayerKind("mish", "Mish: x·tanh(softplus(x)).", (), same_shape, nn_module("Mish"), ACT),
    LayerKind(
        "prelu",
        "Parametric ReLU: max(0, x) + a·min(0, x) with a learnt slope a.",
        (
            Param("per_channel", "bool", False, "one slope per channel instead of one in all"),
            Param("init", "float", 0.25, "the slope's initial value"),
        ),
        same_shape,
        _prelu_torch,
        ACT,
        count_params=lambda inp, p: inp[0] if p["per_channel"] else 1,
    ),
    LayerKind("tanh", "Hyperbolic tangent.", (), same_shape, nn_module("Tanh"), ACT),
    LayerKind(
        "squared-relu",
        "ReLU squared: max(0, x)² (Primer; MetaFormer's SquaredReLU, and with `affine` its "
        "StarReLU).",
        (),
        same_shape,
        archc_module("SquaredReLU"),
        ACT,
        ("relu-squared",),
    ),
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
