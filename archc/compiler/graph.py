"""The resolved network: every block expanded, every parameter a value, every shape known.

This is what the backends (torch module, Python source, graphviz, summary, ONNX) read.
A `Scope` is a module boundary (the network, a block call, a labelled group); its
`plan` says how data flows through its children. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, TypeGuard, Union

from archc.compiler.ir import Span
from archc.layers import Shape

# --------------------------------------------------------------------------- plan ops


@dataclass(frozen=True)
class Call:
    """Run the child module called `child`."""

    child: str


@dataclass(frozen=True)
class Seq:
    """Run the ops one after the other."""

    ops: tuple["Op", ...]


@dataclass(frozen=True)
class Parallel:
    """Run every branch on the same input, then concat (channels) or add the results."""

    mode: str
    branches: tuple["Op", ...]
    sizes: tuple[int, ...] | None = None  # a `split`'s stated slices, in channels


@dataclass(frozen=True)
class Identity:
    """Pass the input through (an identity shortcut)."""


@dataclass(frozen=True)
class TapOut:
    """Run `op` on the current tensor as an auxiliary output; the main path is unchanged."""

    op: "Op"
    name: str


@dataclass(frozen=True)
class Save:
    """Name the current tensor (`-> name`); it passes through unchanged."""

    name: str


@dataclass(frozen=True)
class Load:
    """Continue from a named tensor (`@name`) instead of the current one."""

    name: str


Op = Union[Call, Seq, Parallel, Identity, TapOut, Save, Load]

# --------------------------------------------------------------------------- modules


@dataclass(frozen=True)
class ClassDependence:
    """How a layer follows the network's `num_classes` (its classifier heads, and layers whose
    input is the class scores): the arguments whose expressions read it, through block
    arguments, parameter defaults and loop rows; and the layer's arguments and input shape at
    one class more, None where that cannot be told (archc.compiler.heads)."""

    args: frozenset[str]
    params: dict[str, Any] | None
    in_shape: Shape | None


@dataclass
class LayerNode:
    """One layer of a registry kind, with its final parameters and shapes."""

    name: str
    path: str
    kind: str
    params: dict[str, Any]
    in_shape: Shape | None
    out_shape: Shape | None
    span: Span
    n_params: int = 0
    macs: int = 0
    classes: ClassDependence | None = None  # set when the layer follows `num_classes`


@dataclass
class Scope:
    """A submodule: the network, a block call, or a labelled group, merge or tap head."""

    name: str
    path: str
    kind: str  # "network", "block", "group"
    title: str  # the block or network name, or "" for a group
    span: Span
    args: dict[str, Any] = field(default_factory=dict)
    children: list["Module"] = field(default_factory=list)
    plan: Op = field(default_factory=lambda: Seq(()))
    in_shape: Shape | None = None
    out_shape: Shape | None = None
    # Named tensors that cross the scope's boundary besides its input and output: `inputs`
    # and `outputs` are their names inside, `reads` and `writes` the caller's names for them
    # (a labelled group uses the same names; a block's tensor parameters and outputs rename).
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)  # "" where the caller names none
    output_shapes: list[Shape | None] = field(default_factory=list)  # of `outputs`
    # name -> child, rebuilt when `children` has grown: a scan per lookup made drawing or
    # building a scope of n children cost n² (20,000 relus took 26 s to draw)
    _by_name: dict[str, "Module"] = field(default_factory=dict, repr=False, compare=False)

    def child(self, name: str) -> "Module":
        """The child module called `name`."""
        if len(self._by_name) != len(self.children) or name not in self._by_name:
            self._by_name = {}
            for c in self.children:
                self._by_name.setdefault(c.name, c)  # the first of a name, as a scan finds
        return self._by_name[name]

    @property
    def is_sequential(self) -> bool:
        """True when the plan runs every child once, in order, and nothing else, and every
        child sits directly in the scope (a dotted label, `convs.0`, sits in a container)."""
        if not isinstance(self.plan, Seq) or self.inputs or self.outputs:
            return False
        if any("." in c.name for c in self.children):
            return False
        calls = [op for op in self.plan.ops if isinstance(op, Call)]
        return (len(calls) == len(self.plan.ops)
                and [op.child for op in calls] == [c.name for c in self.children])


Module = Union[LayerNode, Scope]


def containers(name: str) -> list[str]:
    """The containers a dotted label makes, outermost first: `a.b.c` → [`a`, `a.b`]; none
    for a plain name."""
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def walk(module: Module) -> Iterator[Module]:
    """Every module below and including `module`, depth first, in registration order."""
    yield module
    if isinstance(module, Scope):
        for child in module.children:
            yield from walk(child)


def layers(module: Module) -> Iterator[LayerNode]:
    """Every layer below `module`, in registration order."""
    return (m for m in walk(module) if isinstance(m, LayerNode))


def takes_tensors(module: Module) -> TypeGuard[Scope]:
    """True when a module is called with named tensors besides its input, or returns some."""
    return isinstance(module, Scope) and bool(module.inputs or module.outputs)


@dataclass
class Network:
    """The result of checking a spec: the module tree plus what the checker learned."""

    name: str
    root: Scope
    input_shape: Shape
    output_shape: Shape | None
    aux_outputs: dict[str, Shape | None]
    params: dict[str, Any]
    train: dict[str, Any]
    explain: list[tuple[Span, str]]
    spec_path: str
    sources: dict[str, str]
    # The layers that follow `num_classes`, in registration order; None when the network has
    # no whole-number `num_classes` or the class count changes its structure (a repeat
    # count, an `if`, a loop or a label reads it)
    class_heads: tuple[LayerNode, ...] | None = None

    @property
    def n_params(self) -> int:
        """Total learnable parameters."""
        return sum(layer.n_params for layer in layers(self.root))

    @property
    def macs(self) -> int:
        """Total multiply-accumulates of one training forward pass (conv and fc layers),
        auxiliary heads included."""
        return sum(layer.macs for layer in layers(self.root))

    @property
    def inference_macs(self) -> int:
        """Multiply-accumulates of one forward pass at inference: the auxiliary heads (taps,
        children of the network named in `aux_outputs`) run in training only."""
        return sum(
            layer.macs
            for child in self.root.children
            if child.name not in self.aux_outputs
            for layer in layers(child)
        )
