"""Layers that only move data around."""

from __future__ import annotations

from .core import RESHAPE, LayerKind, nn_module, same_shape

KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "identity", "Passes its input through.", (), same_shape, nn_module("Identity"), RESHAPE
    ),
)
