"""The parts every layer family shares: the kind record, shapes, and the shape helpers.

Nothing here imports torch: `archc check` stays instant. Torch constructors import it
when they are called.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

Shape = tuple[int, ...]  # (C, H, W) for images, (F,) for flat features

# (kernel, stride, padding, dilation, ceil) of a sliding window: each of the first four an
# int or (h, w), the padding also ((top, bottom), (left, right)) when uneven; they are the
# layer's parameters as given, so Any (readers take them apart with window.pair)
Spatial = tuple[Any, Any, Any, Any, bool]

REQUIRED = object()  # default of a parameter that must be given

# a layer kind's shape rule: (input shape, parameters, context) → output shape
ShapeRule = Callable[[Shape, dict[str, Any], "ShapeContext"], Shape]


@dataclass(frozen=True)
class Param:
    """One parameter of a layer kind: its name, type and default."""

    name: str
    type: str  # a key of TYPE_WORDS
    default: Any = REQUIRED
    doc: str = ""
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()  # the words a "choice" parameter accepts

    @property
    def required(self) -> bool:
        """True when the parameter has no default."""
        return self.default is REQUIRED

    @property
    def expects(self) -> str:
        """What a value must be, in words: `an integer`, `one of "none", "tanh"`."""
        if self.type == "choice":
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        return TYPE_WORDS[self.type]

    def check(self, value: Any) -> Any:
        """`value` as the parameter holds it (an int given for a float becomes a float),
        or INVALID when it has the wrong type."""
        is_int = isinstance(value, int) and not isinstance(value, bool)
        ok = {
            "int": is_int,
            "int?": is_int or value is None,
            "float": is_int or isinstance(value, float),
            "bool": isinstance(value, bool),
            "padding": is_int or value in ("same", "valid", "tf-same") or _is_pair(value),
            "int2": is_int or _is_pair(value),
            "sides": is_int or value == "tf-same" or _is_pair(value) or _is_ints(value, 4),
            "int2?": is_int or value is None or _is_pair(value),
            "choice": value in self.choices,
            "ints": isinstance(value, tuple)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
        }.get(self.type, True)
        if not ok:
            return INVALID
        return float(value) if self.type == "float" else value


def _is_pair(value: Any) -> bool:
    """True for (h, w): a tuple of two integers."""
    return _is_ints(value, 2)


def _is_ints(value: Any, n: int) -> bool:
    """True for a tuple of `n` integers."""
    return (
        isinstance(value, tuple)
        and len(value) == n
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


INVALID = object()  # what Param.check returns for a value of the wrong type

TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "padding": 'an integer, a pair (h, w), `same`, `valid` or "tf-same"',
    "int?": "an integer or none",
    "int2": "an integer or a pair (h, w) of integers",
    "sides": 'an integer, a pair (h, w), the four sides (top, bottom, left, right) or "tf-same"',
    "int2?": "an integer, a pair (h, w) of integers or none",
    "ints": "a tuple of integers",
}


class ShapeProblem(Exception):
    """Raised by a shape rule; the checker turns it into a located diagnostic."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass
class ShapeContext:
    """What a shape rule may report besides its result: warnings."""

    warnings: list[tuple[str, str, str | None]] = field(default_factory=list)

    def warn(self, code: str, message: str, hint: str | None = None) -> None:
        """Record a warning for the layer being checked."""
        self.warnings.append((code, message, hint))


@dataclass(frozen=True)
class Style:
    """How a kind is drawn: fill colour, node shape, and its legend group."""

    group: str
    fill: str
    shape: str = "box"


@dataclass(frozen=True)
class LayerKind:
    """A registry entry: one kind of layer."""

    name: str
    doc: str
    params: tuple[Param, ...]
    shape: Callable[[Shape, dict[str, Any], ShapeContext], Shape]
    torch: Callable[[Shape, dict[str, Any]], Any]
    style: Style
    aliases: tuple[str, ...] = ()
    sugar: tuple[str | None, tuple[str, ...]] = (None, ())  # (head digits -> param, dash parts)
    count_params: Callable[[Shape, dict[str, Any]], int] = lambda shape, p: 0
    count_macs: Callable[[Shape, Shape, dict[str, Any]], int] = lambda inp, out, p: 0
    spatial: Callable[[dict[str, Any]], Spatial | None] = lambda p: None
    # the output size of one axis (0: height, 1: width) for an input size, None where the
    # kind refuses it: for kinds that are no sliding window (a crop, space-to-depth)
    axis_size: Callable[[int, int, dict[str, Any]], int | None] | None = None
    summary: Callable[[dict[str, Any]], str] = lambda p: ""

    def param(self, name: str) -> Param | None:
        """The parameter called `name` (or one of its aliases), if any."""
        for p in self.params:
            if name == p.name or name in p.aliases:
                return p
        return None


# The diagram styles of the families (their legend groups).
CONV = Style("conv", "#9ecae1")
POOL = Style("pool", "#fdd0a2", "box")
NORM = Style("norm", "#c7e9c0")
ACT = Style("activation", "#fcbba1", "box")
FC = Style("fc", "#bcbddc")
REG = Style("regularization", "#e0e0e0")
RESHAPE = Style("reshape", "#f0f0f0")


def normalize(word: str) -> str:
    """The lookup key of a kind name: case-, dash- and underscore-insensitive."""
    return word.lower().replace("-", "").replace("_", "")


def fmt(shape: Shape | None) -> str:
    """A shape as the paper writes it: 64×56×56."""
    return "?" if shape is None else "×".join(str(d) for d in shape)


# --------------------------------------------------------------------------- shape helpers


def image(kind: str, inp: Shape) -> tuple[int, int, int]:
    """`inp` as C×H×W, or a ShapeProblem saying the kind needs an image."""
    if len(inp) != 3:
        raise ShapeProblem(
            "E203",
            f"{kind} expects an image tensor C×H×W, got {fmt(inp)}",
            "it gets tokens T×C: turn them back into an image with `untokens`"
            if len(inp) == 2
            else "it comes after a flatten or fc; move it before them",
        )
    return inp


def check_positive(kind: str, p: dict[str, Any], *names: str) -> None:
    """A ShapeProblem when one of the named parameters is below 1."""
    for name in names:
        value = p.get(name)
        values = value if isinstance(value, tuple) else (value,)  # (h, w) pairs: each side
        if any(v is not None and v < 1 for v in values):
            raise ShapeProblem("E204", f"{kind}: {name} must be at least 1, got {value}")


def groups_shape(kind: str) -> Callable[[Shape, dict[str, Any], ShapeContext], Shape]:
    """The shape rule of a layer that keeps its shape and splits the channels into
    `groups` groups (channel shuffle, group norm): the groups must divide the channels."""

    def rule(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
        check_positive(kind, p, "groups")
        if inp[0] % p["groups"]:
            raise ShapeProblem(
                "E201",
                f"{kind} groups={p['groups']} must divide the channels ({inp[0]})",
                "pick a number of groups that divides the channels",
            )
        return inp

    return rule


def check_probability(kind: str, p: dict[str, Any], name: str = "p") -> None:
    """A ShapeProblem when the probability `p[name]` is outside [0, 1]."""
    if not 0 <= p[name] <= 1:
        raise ShapeProblem("E204", f"{kind} probability {name} must be in [0, 1], got {p[name]}")


def same_shape(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
    """The shape rule of a layer that keeps its input's shape (any rank)."""
    return inp


def image_same_shape(kind: str) -> Callable[[Shape, dict[str, Any], ShapeContext], Shape]:
    """The shape rule of a layer that keeps its input's shape and needs an image."""

    def rule(inp: Shape, p: dict[str, Any], ctx: ShapeContext) -> Shape:
        return image(kind, inp)

    return rule


def nn_module(cls: str, *names: str, **fixed: Any) -> Callable[[Shape, dict[str, Any]], Any]:
    """The constructor of `torch.nn.<cls>(p[name], ..., **fixed)`: a layer whose torch
    arguments are its parameters, in order."""

    def make(inp: Shape, p: dict[str, Any]) -> Any:
        import torch.nn as nn

        return getattr(nn, cls)(*(p[n] for n in names), **fixed)

    return make


def archc_module(cls: str, *names: str, **fixed: Any) -> Callable[[Shape, dict[str, Any]], Any]:
    """Like `nn_module`, for a module of archc.layers.modules (what PyTorch lacks)."""

    def make(inp: Shape, p: dict[str, Any]) -> Any:
        from archc.layers import modules

        return getattr(modules, cls)(*(p[n] for n in names), **fixed)

    return make


# --------------------------------------------------------------------------- weights drawn once

_INIT_DEFERRED: ContextVar[bool] = ContextVar("archc_init_deferred", default=False)


@contextmanager
def init_deferred() -> Iterator[None]:
    """Within this block, `weighted` modules skip torch's default initialisation: the caller
    promises to initialise every weight and bias of them itself (the torch backend does, with
    torchvision's scheme). A context variable, so other threads keep torch's defaults."""
    token = _INIT_DEFERRED.set(True)
    try:
        yield
    finally:
        _INIT_DEFERRED.reset(token)


def weighted(cls: type, *args: Any, **kwargs: Any) -> Any:
    """`cls(*args, **kwargs)` for a conv or linear module; inside `init_deferred()` its
    weights are left unset instead of drawn from torch's default distribution only to be
    drawn again (a third of a MobileNet's build). The result is an exact `cls`."""
    if not _INIT_DEFERRED.get():
        return cls(*args, **kwargs)
    module = _without_reset(cls)(*args, **kwargs)
    module.__class__ = cls  # the same object layout: only `reset_parameters` differed
    return module


def weighted_composite(cls: type, *args: Any, **kwargs: Any) -> Any:
    """`cls(*args, **kwargs)` for a module built of linears and convs only (the transformer's
    MLP); inside `init_deferred()` it is built on the meta device and given uninitialised
    memory, so none of its layers draws torch's default weights only to have `initialize`
    draw them again (half of a ViT's build). A module with any other parameter or a buffer
    is built as usual: `initialize` would not set those."""
    if not _INIT_DEFERRED.get():
        return cls(*args, **kwargs)
    import torch
    from torch import nn

    # the caller's device: a build inside `with torch.device("meta")` stays on meta, and one
    # inside `with torch.device("cuda")` is given its memory there
    target = torch.empty(0).device
    with torch.device("meta"):
        module = cls(*args, **kwargs)
    owners = [m for m in module.modules() if any(True for _ in m.parameters(recurse=False))]
    if any(True for _ in module.buffers()) or not all(
            isinstance(m, nn.Linear | nn.Conv2d) for m in owners):
        return cls(*args, **kwargs)
    return module if target.type == "meta" else module.to_empty(device=target)


@lru_cache(maxsize=None)
def _without_reset(cls: type) -> type:
    """A subclass of `cls` whose constructor leaves the parameters as allocated."""
    return type(cls.__name__, (cls,), {"reset_parameters": lambda self: None})


def mix_split_sizes(channels: int, n: int) -> list[int]:
    """MixNet's split of `channels` into `n` groups: C // n each, and the first group also
    takes what is left over (100 into 3: 34, 33, 33)."""
    sizes = [channels // n] * n
    sizes[0] += channels - sum(sizes)
    return sizes
