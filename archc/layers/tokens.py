"""Token sequences, the third tensor form beside images (C×H×W) and flat features (F):
a T×C shape, T tokens of C channels each. The conversions are explicit layers: patch-embed
(conv + tokens), tokens (image → tokens) and untokens (back), a class token put before
the sequence, a position embedding added to it, and pooling over the tokens.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from archc.layers.core import (
    CONV,
    POOL,
    RESHAPE,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    Style,
    check_positive,
    fmt,
    image,
    weighted,
)
from archc.layers.window import window

# The diagram's colour for learned tensors added to or put into the sequence.
EMBED = Style("embedding", "#fde0ef")


def tokens(kind: str, inp: Shape) -> tuple[int, int]:
    """`inp` as T×C tokens, or a ShapeProblem saying the kind needs tokens."""
    if len(inp) != 2:
        hint = (
            "turn the image into tokens first: `tokens`, or `patch-embed(C, P)`"
            if len(inp) == 3
            else "it comes after a flatten, fc or token-pool; move it before them"
        )
        raise ShapeProblem("E203", f"{kind} expects tokens T×C, got {fmt(inp)}", hint)
    return inp  # type: ignore[return-value]


def token_module(cls: str, *names: str) -> Callable[[Shape, dict], Any]:
    """The constructor of `token_modules.<cls>(p[name], ...)`."""

    def make(inp: Shape, p: dict):
        from archc.layers import token_modules

        return getattr(token_modules, cls)(*(p[n] for n in names))

    return make


# --------------------------------------------------------------------------- conversions


def _tokens_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    c, h, w = image("tokens", inp)
    return (h * w, c)


def _untokens_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    t, c = tokens("untokens", inp)
    check_positive("untokens", p, "height")
    height = p["height"] if p["height"] is not None else math.isqrt(t)
    if height * (t // height) != t:
        raise ShapeProblem(
            "E201",
            f"untokens: {t} tokens do not fill "
            + (f"rows of {height}" if p["height"] else "a square grid"),
            "give height= a divisor of the token count; a class token must be pooled or "
            "dropped first",
        )
    return (c, height, t // height)


def _untokens_torch(inp: Shape, p: dict):
    from archc.layers.token_modules import Untokens

    return Untokens(p["height"] if p["height"] is not None else math.isqrt(inp[0]))


def _patchify_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    image("patch-embed", inp)
    check_positive("patch-embed", p, "out", "patch")
    h, w = window("patch-embed", inp, p, ctx, p["patch"], p["patch"], 0)
    return (h * w, p["out"])


def _patchify_torch(inp: Shape, p: dict):
    from archc.layers.token_modules import Patchify

    return weighted(Patchify, inp[0], p["out"], p["patch"])


# --------------------------------------------------------------------------- learned tensors


def _class_token_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    t, c = tokens("class-token", inp)
    return (t + 1, c)


def _pos_embedding_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    return tokens("pos-embedding", inp)


def _pos_embedding_torch(inp: Shape, p: dict):
    from archc.layers.token_modules import PositionEmbedding

    return PositionEmbedding(inp[0], inp[1])


def _class_token_torch(inp: Shape, p: dict):
    from archc.layers.token_modules import ClassToken

    return ClassToken(inp[1])


def _token_pool_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    _, c = tokens("token-pool", inp)
    return (c,)


_OWN_KEY = (
    " Its state_dict key is the layer's own name, without `.weight` (label it as "
    "torchvision names the tensor)."
)

KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "tokens",
        "An image to tokens, one per pixel in row-major order: C×H×W → (H·W)×C.",
        (),
        _tokens_shape,
        token_module("Tokens"),
        RESHAPE,
        ("to-tokens", "image-to-tokens"),
    ),
    LayerKind(
        "untokens",
        "Tokens back to an image of `height` rows (a square grid by default): "
        "(H·W)×C → C×H×W.",
        (Param("height", "int?", None, "rows of the image; none: a square grid"),),
        _untokens_shape,
        _untokens_torch,
        RESHAPE,
        ("to-image", "tokens-to-image"),
    ),
    LayerKind(
        "patch-embed",
        "ViT's patch embedding: a P×P conv of stride P with `out` filters, then tokens, "
        "C×H×W → (H/P·W/P)×out. Its weights are the conv's (label it `conv_proj`).",
        (
            Param("out", "int", doc="channels of each token (the hidden size)"),
            Param("patch", "int", doc="side of a square patch", aliases=("patch_size",)),
        ),
        _patchify_shape,
        _patchify_torch,
        CONV,
        ("patch-embedding", "patchembed"),
        (None, ("out", "patch")),
        lambda inp, p: p["out"] * inp[0] * p["patch"] ** 2 + p["out"],
        lambda inp, out, p: math.prod(out) * inp[0] * p["patch"] ** 2,
        spatial=lambda p: (p["patch"], p["patch"], 0, 1, False),
        summary=lambda p: f"{p['patch']}×{p['patch']}, {p['out']}, /{p['patch']}",
    ),
    LayerKind(
        "class-token",
        "A learned token put before the sequence (ViT's class token, zeros at first): "
        "T×C → (T+1)×C." + _OWN_KEY,
        (),
        _class_token_shape,
        _class_token_torch,
        EMBED,
        ("cls-token", "classtoken"),
        count_params=lambda inp, p: inp[1],
    ),
    LayerKind(
        "pos-embedding",
        "A learned position embedding added to the tokens, one C-vector per position: "
        "T×C + T×C. It fixes the token count, and so the input size." + _OWN_KEY,
        (),
        _pos_embedding_shape,
        _pos_embedding_torch,
        EMBED,
        ("position-embedding", "pos-embed"),
        count_params=lambda inp, p: inp[0] * inp[1],
    ),
    LayerKind(
        "token-pool",
        "Tokens to one feature vector: the class token (`mode=\"class\"`, ViT's `x[:, 0]`) "
        "or the mean over the tokens (`mode=\"mean\"`): T×C → C.",
        (
            Param(
                "mode", "choice", "class", "`class` (the first token) or `mean`",
                choices=("class", "mean"),
            ),
        ),
        _token_pool_shape,
        token_module("TokenPool", "mode"),
        POOL,
        ("pool-tokens", "tokenpool"),
        summary=lambda p: p["mode"],
    ),
)
