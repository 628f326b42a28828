"""Normalisation layers."""

from __future__ import annotations

from typing import Any, Callable

from archc.layers.core import (
    NORM,
    LayerKind,
    Param,
    Shape,
    groups_shape,
    image_same_shape,
    same_shape,
)


def _bn_params(inp: Shape, p: dict[str, Any]) -> int:
    return 2 * inp[0] if p["affine"] else 0


def _bn_torch(inp: Shape, p: dict[str, Any]) -> Any:
    import torch.nn as nn

    cls = nn.BatchNorm2d if len(inp) == 3 else nn.BatchNorm1d
    return cls(inp[0], eps=p["eps"], momentum=p["momentum"], affine=p["affine"])


def _lrn_torch(inp: Shape, p: dict[str, Any]) -> Any:
    import torch.nn as nn

    return nn.LocalResponseNorm(p["size"], alpha=p["alpha"], beta=p["beta"], k=p["k"])


def _affine_params(axis: int) -> Callable[[Shape, dict[str, Any]], int]:
    """A norm's parameter count: a scale and a shift per element of `axis`, when affine (the
    shift only where the kind has a `bias` that is true)."""
    return lambda inp, p: (1 + p.get("bias", True)) * inp[axis] if p["affine"] else 0


def _layernorm_torch(axis: int) -> Callable[[Shape, dict[str, Any]], Any]:
    """nn.LayerNorm over the last axis (axis -1), or LayerNorm2d over the channels (axis 0)."""

    def make(inp: Shape, p: dict[str, Any]) -> Any:
        from torch.nn import LayerNorm

        cls: type[LayerNorm] = LayerNorm
        if axis == 0:
            from archc.layers.modules import LayerNorm2d

            cls = LayerNorm2d

        return cls(inp[axis], eps=p["eps"], elementwise_affine=p["affine"],
                   bias=p["affine"] and p["bias"])

    return make


def _groupnorm_torch(inp: Shape, p: dict[str, Any]) -> Any:
    import torch.nn as nn

    return nn.GroupNorm(p["groups"], inp[0], eps=p["eps"], affine=p["affine"])


_EPS = Param("eps", "float", 1e-5, "added to the variance")
_AFFINE = Param("affine", "bool", True, "learn scale and shift")
_BIAS = Param("bias", "bool", True, "with `affine`, learn the shift too; false: a scale only "
              "(timm's LayerNorm2dNoBias)")


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
    LayerKind(
        "layernorm",
        "Layer normalisation over the last axis: flat features F, or a channel-last image "
        "H×W×C after `permute((0, 2, 3, 1))`. Weights `weight`, `bias` of shape (F,) (no "
        "`bias` with `bias=false`).",
        (_EPS, _AFFINE, _BIAS),
        same_shape,
        _layernorm_torch(-1),
        NORM,
        ("layer-norm", "ln"),
        count_params=_affine_params(-1),
    ),
    LayerKind(
        "layernorm2d",
        "Layer normalisation over the channels of a C×H×W image, at every pixel (ConvNeXt's "
        "LayerNorm2d). Weights `weight`, `bias` of shape (C,) (no `bias` with `bias=false`).",
        (_EPS, _AFFINE, _BIAS),
        image_same_shape("layernorm2d"),
        _layernorm_torch(0),
        NORM,
        ("channel-layernorm",),
        count_params=_affine_params(0),
    ),
    LayerKind(
        "groupnorm",
        "Group normalisation: channels in `groups` groups, each normalised over its channels "
        "and pixels.",
        (Param("groups", "int", doc="number of groups; must divide the channels"), _EPS, _AFFINE),
        groups_shape("groupnorm"),
        _groupnorm_torch,
        NORM,
        ("group-norm", "gn"),
        (None, ("groups",)),
        _affine_params(0),
        summary=lambda p: f"groups={p['groups']}",
    ),
)
