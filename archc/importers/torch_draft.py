"""The draft tree the PyTorch importer builds before it writes IR.

A draft holds concrete values (ints, floats, bools) where the IR will hold expressions:
the instances of one module class are drafted separately, then unified into one block
whose parameters are the values that differ (see `torch_blocks`). Nothing here imports
torch.
"""

from __future__ import annotations

import re
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


@dataclass(frozen=True)
class TensorName:
    """The value of a block call's tensor argument: `@name`, a tensor named in the caller."""

    name: str


@dataclass
class DCall:
    """A call of a user module instance, replaced by a block call once blocks are known;
    `tensors` names the caller's tensors it takes after the current one (`@shortcut`)."""

    module: Any  # the nn.Module instance
    path: str
    label: str | None = None
    tensors: list[str] = field(default_factory=list)
    takes: list[str | None] = field(default_factory=list)  # the callee's `@` parameters,
    # None for a tensor passed that it does not read


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


@dataclass
class DRef:
    """`@name`: continue from the tensor named `name`; as a merge branch, the branch is
    that tensor."""

    name: str
    label: str | None = None


@dataclass
class DBind:
    """`-> name`: name the current tensor (after a call with several outputs, `-> a, b`
    names them in order), so a later `@name` reads it."""

    names: list[str]
    label: str | None = None


DItem = Union[DLayer, DCall, DGroup, DMerge, DShortcut, DTap, DFor, DRef, DBind]


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
        return ("layer", item.callee, item.label, tuple(
            (a.name, a.positional, a.value if isinstance(a.value, TensorName) else None)
            for a in item.args))
    if isinstance(item, DShortcut):
        return ("shortcut", tuple(a.name for a in item.args))
    if isinstance(item, DCall):
        raise TypeError("unresolved module call in a skeleton")  # pragma: no cover
    if isinstance(item, (DRef, DBind)):
        return (type(item).__name__, item.name if isinstance(item, DRef) else tuple(item.names))
    inner = tuple(_skeleton(i) for i in children(item))
    extra: str | int = item.mode if isinstance(item, DMerge) else ""
    extra = item.start if isinstance(item, DFor) else extra
    return (type(item).__name__, item.label, extra, inner)


_NUMBERED = re.compile(r"([A-Za-z_][\w-]*)\.(\d+)\Z")  # `conv_kxk.0`: a ModuleList's member


def nest_numbered(items: list[DItem]) -> None:
    """Write the members of a ModuleList that sit side by side (MobileOne's `conv_kxk.0`,
    `conv_kxk.1`, ... summed as branches of one `add:`) as archc writes a numbered
    submodule: a run of items labelled `P.0` ... `P.n-1`, each one module, becomes `P:`
    holding them unlabelled (so numbered 0 ... n-1): a nested merge of the same kind where
    they were branches of an `add:` or `concat:` (the same sum, grouped), a sequence where
    they ran one after another. In place, at every level; other dotted labels are left
    for the caller to report."""
    for item in walk(items):
        if isinstance(item, DGroup):
            item.items[:] = _nest_runs(item.items, None)
        elif isinstance(item, DMerge) and item.mode in ("add", "concat"):
            flat = _spliced(item.branches, item.mode)
            if any(_NUMBERED.match(getattr(b, "label", None) or "") for b in flat):
                item.branches[:] = flat  # `out += ck(x)` in a loop: ((a + b) + c) + d
            item.branches[:] = _nest_runs(item.branches, item.mode)
    items[:] = _nest_runs(items, None)


def _spliced(branches: list[DItem], mode: str) -> list[DItem]:
    """The branches with each unlabelled merge of the same kind among them spliced in (a
    bare merge as a branch starts at the same fork)."""
    out: list[DItem] = []
    for branch in branches:
        if isinstance(branch, DMerge) and branch.mode == mode and branch.label is None:
            out.extend(_spliced(branch.branches, mode))
        else:
            out.append(branch)
    return out


def _nest_runs(items: list[DItem], mode: str | None) -> list[DItem]:
    """`items` with each complete run `P.0` ... `P.n-1` of single modules put under `P`."""
    out: list[DItem] = []
    i = 0
    while i < len(items):
        run = _numbered_run(items, i)
        if not run:
            out.append(items[i])
            i += 1
            continue
        prefix = _NUMBERED.match(items[i].label or "")
        assert prefix is not None  # a run starts with a numbered label
        members = items[i:i + run]
        for member in members:
            member.label = None
        nested: DItem = (DMerge(mode, members, prefix.group(1)) if mode and run > 1
                         else DGroup(members, prefix.group(1)))
        out.append(nested)
        i += run
    return out


def _numbered_run(items: list[DItem], start: int) -> int:
    """The length of the run `P.0`, `P.1`, ... of single modules starting at `start` (0
    when there is none, or when `P` has members elsewhere, which no grouping can keep)."""
    first = _NUMBERED.match(getattr(items[start], "label", None) or "")
    if first is None or first.group(2) != "0":
        return 0
    prefix, n = first.group(1), 0
    while start + n < len(items):
        found = _NUMBERED.match(getattr(items[start + n], "label", None) or "")
        if found is None or found.group(1) != prefix or int(found.group(2)) != n:
            break
        if not isinstance(items[start + n], (DLayer, DCall)):
            return 0
        n += 1
    rest = items[:start] + items[start + n:]
    if any((getattr(i, "label", None) or "").startswith(prefix + ".") for i in rest):
        return 0
    return n
