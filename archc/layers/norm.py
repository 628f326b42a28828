"""Normalisation layers."""

from __future__ import annotations

from .core import NORM, LayerKind, Param, Shape, image_same_shape, same_shape


def _bn_params(inp: Shape, p: dict) -> int:
    return 2 * inp[0] if p["affine"] else 0


def _bn_torch(inp: Shape, p: dict):
    import torch.nn as nn

    cls = nn.BatchNorm2d if len(inp) == 3 else nn.BatchNorm1d
    return cls(inp[0], eps=p["eps"], momentum=p["momentum"], affine=p["affine"])


def _lrn_torch(inp: Shape, p: dict):
    import torch.nn as nn

    return nn.LocalResponseNorm(p["size"], alpha=p["alpha"], beta=p["beta"], k=p["k"])


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "bn",
        "Batch normalisation (2-D for images, 1-D for features).",
        (
            Param("eps", "float", 1e-5, "added to the variance"),
            Param("momentum", "float", 0.1, "running-average momentum"),
            Param("affine", "bool", True, "learn scale and shift"),
        ),
        same_shape,
        _bn_torch,
        NORM,
        ("batchnorm", "batchnorm2d", "bnorm"),
        (None, ()),
        _bn_params,
    ),
    LayerKind(
        "lrn",
        "Local response normalisation across channels (AlexNet). PyTorch's formula: "
        "alpha is divided by size.",
        (
            Param("size", "int", 5, "channels in the window", ("n",)),
            Param("alpha", "float", 1e-4, "scale"),
            Param("beta", "float", 0.75, "exponent"),
            Param("k", "float", 1.0, "additive constant"),
        ),
        image_same_shape("lrn"),
        _lrn_torch,
        NORM,
        ("localresponsenorm",),
        (None, ("size",)),
        summary=lambda p: f"n={p['size']}",
    ),
)
