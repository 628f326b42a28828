"""The draft tree the PyTorch importer builds before it writes IR.

A draft holds concrete values (ints, floats, bools) where the IR will hold expressions:
the instances of one module class are drafted separately, then unified into one block
whose parameters are the values that differ (see `torch_blocks`). Nothing here imports
torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Union

REQUIRED = object()  # an argument that is always written (no default to leave it out)


@dataclass(frozen=True)
class Symbol:
    """A value that stands for a network parameter (`num_classes`): blocks that use it take
    it as a parameter of their own, and the network passes its parameter down."""

    name: str


NUM_CLASSES = Symbol("num_classes")


@dataclass
class Arg:
    """One argument slot of a layer or block call.

    `key` names the parameter a block would make of it when it varies (`out` → `c`);
    `positional` asks for `maxpool(3, ...)` rather than `maxpool(kernel=3, ...)`.
    """

    name: str
    value: Any
    default: Any = REQUIRED
    key: str = ""
    positional: bool = False


@dataclass
class DLayer:
    """A layer of a registry kind, or (after unification) a call of a block."""

    callee: str
    args: list[Arg] = field(default_factory=list)
    label: str | None = None


@dataclass
class DCall:
    """A call of a user module instance, replaced by a block call once blocks are known."""

    module: Any  # the nn.Module instance
    path: str
    label: str | None = None


@dataclass
class DGroup:
    """A sequence; with a label, a named submodule."""

    items: list["DItem"]
    label: str | None = None


@dataclass
class DMerge:
    """Parallel branches on one input, added or concatenated."""

    mode: str
    branches: list["DItem"]
    label: str | None = None


@dataclass
class DShortcut:
    """An `add:` branch that is the identity, or a 1×1 projection archc builds itself."""

    args: list[Arg] = field(default_factory=list)
    label: str | None = None


def shortcut_args(
    bn: bool = True, bias: bool = False, always: bool = False, optional: bool = False
) -> list[Arg]:
    """The options of `shortcut`: the identity unless shapes differ (or `always`), then a
    1×1 conv (with a bias if `bias`) followed by a bn (if `bn`); with `optional`, no
    residual at all where shapes differ."""
    return [
        Arg("bn", bn, True, "bn"),
        Arg("bias", bias, False, "bias"),
        Arg("always", always, False, "always"),
        Arg("optional", optional, False, "optional"),
    ]


@dataclass
class DTap:
    """A side head (an auxiliary classifier) off the main path."""

    head: "DItem"
    label: str | None = None


@dataclass
class DFor:
    """`for i in range(start, start + count):` one item whose labels carry `{i}` (DenseNet's
    `denselayer{i}`); `count` is an argument slot, so blocks of different lengths unify."""

    body: "DItem"
    start: int
    count: Arg
    label: str | None = None

    @property
    def args(self) -> list[Arg]:
        """The loop's one argument slot: how many times it runs."""
        return [self.count]


DItem = Union[DLayer, DCall, DGroup, DMerge, DShortcut, DTap, DFor]


def children(item: DItem) -> list[DItem]:
    """The items directly inside `item`."""
    if isinstance(item, DGroup):
        return item.items
    if isinstance(item, DMerge):
        return item.branches
    if isinstance(item, (DTap, DFor)):
        return [item.head] if isinstance(item, DTap) else [item.body]
    return []


def walk(items: list[DItem]) -> Iterator[DItem]:
    """Every item in `items` and below, depth first."""
    for item in items:
        yield item
        yield from walk(children(item))


def slots(items: list[DItem]) -> list[Arg]:
    """Every argument slot, in a fixed traversal order (aligned across unifiable bodies)."""
    return [
        a for item in walk(items) if isinstance(item, (DLayer, DShortcut, DFor)) for a in item.args
    ]


def skeleton(items: list[DItem]) -> tuple:
    """The shape of a body with its argument values left out: bodies with equal skeletons
    are instances of one block. An identity shortcut's missing label matches any label."""
    return tuple(_skeleton(i) for i in items)


def _skeleton(item: DItem) -> tuple:
    if isinstance(item, DLayer):
        return ("layer", item.callee, item.label, tuple((a.name, a.positional) for a in item.args))
    if isinstance(item, DShortcut):
        return ("shortcut", tuple(a.name for a in item.args))
    if isinstance(item, DCall):
        raise TypeError("unresolved module call in a skeleton")  # pragma: no cover
    inner = tuple(_skeleton(i) for i in children(item))
    extra: str | int = item.mode if isinstance(item, DMerge) else ""
    extra = item.start if isinstance(item, DFor) else extra
    return (type(item).__name__, item.label, extra, inner)
