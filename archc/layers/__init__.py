"""The one registry of layer kinds.

Each `LayerKind` holds everything archc knows about a kind of layer: its parameter
schema, its paper-notation sugar, its shape rule, its parameter and MAC counts, its
torch constructor and its diagram style. The kinds live in one module per family
(conv, pool, dense, norm, regularization, activation, channel, reshape, resize,
tensor, attention_cnn); shared
helpers live in `core` and `window`. Adding a layer touches its family's module only.
The merges (add, concat, max, mul, split) are one table beside them, in `merges`.

This package must not import torch at import time: `archc check` stays instant. The
torch constructors import it when they are called.
"""

from __future__ import annotations

from archc.layers import (
    activation,
    attention,
    attention_cnn,
    channel,
    conv,
    dense,
    norm,
    pool,
    regularization,
    reshape,
    resize,
    tensor,
    tokens,
)
from archc.layers.core import (
    INVALID,
    REQUIRED,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    Style,
    fmt,
    normalize,
)
from archc.layers.merges import MERGES, MergeKind, merge_kind
from archc.layers.window import resolve_padding, window_out

__all__ = [
    "INVALID",
    "KINDS",
    "REGISTRY",
    "REQUIRED",
    "LayerKind",
    "MERGES",
    "MergeKind",
    "merge_kind",
    "Param",
    "Shape",
    "ShapeContext",
    "ShapeProblem",
    "Style",
    "fmt",
    "kind_names",
    "lookup",
    "normalize",
    "resolve_padding",
    "window_out",
]

KINDS: tuple[LayerKind, ...] = (
    *conv.KINDS,
    *pool.KINDS,
    *dense.KINDS,
    *regularization.KINDS,
    *norm.KINDS,
    *activation.KINDS,
    *channel.KINDS,
    *reshape.KINDS,
    *resize.KINDS,
    *tokens.KINDS,
    *attention.KINDS,
    *tensor.KINDS,
    *attention_cnn.KINDS,
)

REGISTRY: dict[str, LayerKind] = {k.name: k for k in KINDS}
_LOOKUP: dict[str, LayerKind] = {
    normalize(key): kind for kind in KINDS for key in (kind.name, *kind.aliases)
}


def lookup(word: str) -> LayerKind | None:
    """The kind a spec word names (`FC`, `soft-max`, `LRN`, ...), or None."""
    return _LOOKUP.get(normalize(word))


def kind_names() -> list[str]:
    """Every name and alias a spec may use for a layer kind."""
    return sorted({n for k in KINDS for n in (k.name, *k.aliases)})
