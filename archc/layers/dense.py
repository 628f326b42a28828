"""Flat features: flatten and the fully connected layer."""

from __future__ import annotations

import math

from archc.layers.core import (
    FC,
    RESHAPE,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    check_positive,
    fmt,
    nn_module,
    weighted,
)


def _flatten_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    return (math.prod(inp),)


def _fc_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    if len(inp) != 1:
        raise ShapeProblem(
            "E203",
            f"fc expects flat features, got {fmt(inp)}",
            "pool the tokens first (`token-pool`), or use `mlp` on every token"
            if len(inp) == 2
            else "add `flatten` before it (or `global-avgpool flatten`)",
        )
    check_positive("fc", p, "out")
    return (p["out"],)


def linear_params(features: int, p: dict) -> int:
    """The weights (out, features) and bias of a Linear layer with `features` inputs."""
    return features * p["out"] + (p["out"] if p["bias"] else 0)


def _fc_torch(inp: Shape, p: dict):
    import torch.nn as nn

    return weighted(nn.Linear, inp[0], p["out"], bias=p["bias"])


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "flatten",
        "Flatten C×H×W to C·H·W features.",
        (),
        _flatten_shape,
        nn_module("Flatten", start_dim=1),
        RESHAPE,
    ),
    LayerKind(
        "fc",
        "Fully connected layer; `FC-4096` has 4096 outputs, inputs are inferred.",
        (
            Param("out", "int", doc="output features", aliases=("features",)),
            Param("bias", "bool", True, "learn a bias"),
        ),
        _fc_shape,
        _fc_torch,
        FC,
        ("linear", "dense", "fullyconnected"),
        (None, ("out",)),
        lambda inp, p: linear_params(inp[0], p),
        lambda inp, out, p: inp[0] * p["out"],
        summary=lambda p: f"{p['out']}",
    ),
)
