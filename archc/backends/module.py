"""The torch backend: a checked `Network` → a `torch.nn.Module`.

Submodules carry the spec's names, so `print(model)` and `state_dict()` read like the
spec (and line up with torchvision's keys). Purely sequential scopes become
`nn.Sequential`; scopes with branches or taps become a `Block`, whose forward runs a
plan compiled once, at construction, into plain Python closures: per call there is no
IR to interpret, only module calls, `torch.cat` and `+`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from archc.compiler.graph import (
    Call,
    Identity,
    LayerNode,
    Network,
    Op,
    Parallel,
    Scope,
    Seq,
    TapOut,
)
from archc.layers import MERGES, REGISTRY
from archc.layers.core import init_deferred

# A compiled step takes the owner's `_modules`, the tensor and the aux-output list (None
# in eval mode). It never captures a module, so deepcopy, DDP and state_dict stay sound.
Step = Callable[[dict, torch.Tensor, "list | None"], torch.Tensor]


def compile_plan(op: Op) -> Step:
    """Turn a plan into nested closures that only call modules by name."""
    if isinstance(op, Call):
        name = op.child
        return lambda mods, x, aux: mods[name](x)
    if isinstance(op, Identity):
        return lambda mods, x, aux: x
    if isinstance(op, Seq):
        steps = tuple(compile_plan(o) for o in op.ops)
        if len(steps) == 1:
            return steps[0]

        def run_seq(mods, x, aux):
            for step in steps:
                x = step(mods, x, aux)
            return x

        return run_seq
    if isinstance(op, Parallel):
        steps = tuple(compile_plan(b) for b in op.branches)
        merge = MERGES[op.mode]
        combine, n = merge.combine, len(steps)
        if not merge.splits:
            return lambda mods, x, aux: combine([s(mods, x, aux) for s in steps])

        def run_split(mods, x, aux):  # each branch gets its slice of the channels
            return combine([s(mods, part, aux) for s, part in zip(steps, merge.inputs(x, n))])

        return run_split
    if isinstance(op, TapOut):
        head = compile_plan(op.op)

        def run_tap(mods, x, aux):
            if aux is not None:  # auxiliary heads run in training only
                aux.append(head(mods, x, aux))
            return x

        return run_tap
    raise TypeError(f"unknown plan op {op!r}")  # pragma: no cover


class Block(nn.Module):
    """A spec scope with parallel branches: children by name, forward from the plan."""

    def __init__(self, children: "OrderedDict[str, nn.Module]", plan: Op):
        super().__init__()
        for name, module in children.items():
            self.add_module(name, module)
        self.plan = plan
        self._step = compile_plan(plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._step(self._modules, x, None)


class Net(Block):
    """The network root. In training mode with taps it returns (logits, *aux_logits)."""

    def __init__(self, children: "OrderedDict[str, nn.Module]", plan: Op, aux_names: tuple):
        super().__init__(children, plan)
        self.aux_names = aux_names

    def forward(self, x: torch.Tensor):
        if self.training and self.aux_names:
            aux: list = []
            out = self._step(self._modules, x, aux)
            return (out, *aux)
        return self._step(self._modules, x, None)


_CLASSES: dict[tuple[str, type], type] = {}


def class_name(title: str) -> str:
    """`basic_conv` → `BasicConv`: the Python class name a block gets."""
    parts = [p for p in title.replace("-", "_").split("_") if p]
    return "".join(p[:1].upper() + p[1:] for p in parts) or "Block"


def _named(title: str, base: type) -> type:
    """A subclass of `base` named after the block, so print(model) shows `Inception(...)`."""
    key = (title, base)
    if key not in _CLASSES:
        _CLASSES[key] = type(class_name(title), (base,), {"__module__": "archc.generated"})
    return _CLASSES[key]


def layer_module(layer: LayerNode) -> nn.Module:
    """The torch module of one layer, from its registry entry."""
    return REGISTRY[layer.kind].torch(layer.in_shape, layer.params)


def scope_module(scope: Scope) -> nn.Module:
    """The torch module of a scope: nn.Sequential when it is a plain sequence."""
    children = OrderedDict(
        (c.name, scope_module(c) if isinstance(c, Scope) else layer_module(c))
        for c in scope.children
    )
    if scope.is_sequential:
        cls = _named(scope.title, nn.Sequential) if scope.title else nn.Sequential
        return cls(children)
    cls = _named(scope.title, Block) if scope.title else Block
    return cls(children, scope.plan)


def to_module(net: Network, init: str = "kaiming") -> nn.Module:
    """Build the torch module of a checked network: with torchvision-style initialisation
    (`kaiming`, each weight drawn once), or with torch's defaults (`none`, for weights that
    are about to be loaded)."""
    if init != "kaiming":
        return _net_module(net)
    with init_deferred():  # convs and linears skip torch's default draw: `initialize` sets them
        model = _net_module(net)
    initialize(model)
    return model


def _net_module(net: Network) -> nn.Module:
    root = net.root
    children = OrderedDict(
        (c.name, scope_module(c) if isinstance(c, Scope) else layer_module(c))
        for c in root.children
    )
    return _named(net.name, Net)(children, root.plan, tuple(net.aux_outputs))


def initialize(model: nn.Module) -> None:
    """torchvision's scheme: Kaiming-normal convs, unit batch norms, N(0, 0.01) linears."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
