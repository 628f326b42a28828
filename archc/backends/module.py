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
    Load,
    Network,
    Op,
    Parallel,
    Save,
    Scope,
    Seq,
    TapOut,
    takes_tensors,
)
from archc.layers import MERGES, REGISTRY
from archc.layers.core import init_deferred

# A compiled step takes the owner's `_modules`, the tensor, the aux-output list (None in
# eval mode) and the named tensors of this forward (`-> name`). It never captures a module,
# so deepcopy, DDP and state_dict stay sound.
Step = Callable[[dict, torch.Tensor, "list | None", dict], torch.Tensor]


def compile_plan(op: Op, scope: Scope | None = None) -> Step:
    """Turn a plan into nested closures that only call modules by name. `scope` (the plan's
    owner) tells which children take or return named tensors."""
    if isinstance(op, Call):
        return _compile_call(op, scope)
    if isinstance(op, Identity):
        return lambda mods, x, aux, env: x
    if isinstance(op, Save):
        key = op.name

        def save(mods, x, aux, env):
            env[key] = x
            return x

        return save
    if isinstance(op, Load):
        key = op.name
        return lambda mods, x, aux, env: env[key]
    if isinstance(op, Seq):
        steps = tuple(compile_plan(o, scope) for o in op.ops)
        if len(steps) == 1:
            return steps[0]

        def run_seq(mods, x, aux, env):
            for step in steps:
                x = step(mods, x, aux, env)
            return x

        return run_seq
    if isinstance(op, Parallel):
        steps = tuple(compile_plan(b, scope) for b in op.branches)
        merge = MERGES[op.mode]
        combine, n, sizes = merge.combine, len(steps), op.sizes
        if not merge.splits:
            return lambda mods, x, aux, env: combine([s(mods, x, aux, env) for s in steps])

        def run_split(mods, x, aux, env):  # each branch gets its slice of the channels
            parts = merge.inputs(x, n, sizes)
            return combine([s(mods, part, aux, env) for s, part in zip(steps, parts)])

        return run_split
    if isinstance(op, TapOut):
        head = compile_plan(op.op, scope)

        def run_tap(mods, x, aux, env):
            if aux is not None:  # auxiliary heads run in training only
                aux.append(head(mods, x, aux, env))
            return x

        return run_tap
    raise TypeError(f"unknown plan op {op!r}")  # pragma: no cover


def _compile_call(op: Call, scope: Scope | None) -> Step:
    """A child's call; a child that takes named tensors gets them after its input, and one
    that returns some gives (main, *extras), the extras stored under the caller's names."""
    name = op.child
    child = scope.child(name) if scope is not None else None
    if "." in name:  # a dotted label: the module sits in containers, `convs` then `0`
        find = _finder(name)
    else:
        def find(mods):
            return mods[name]
    if child is None or not takes_tensors(child):
        return lambda mods, x, aux, env: find(mods)(x)
    reads, writes = tuple(child.reads), tuple(child.writes)

    def call(mods, x, aux, env):
        out = find(mods)(x, *[env[r] for r in reads])
        if not writes:
            return out
        for key, value in zip(writes, out[1:]):
            if key:
                env[key] = value
        return out[0]

    return call


def _finder(path: str) -> Callable[[dict], nn.Module]:
    """The lookup of a module registered at a dotted path, from its owner's `_modules`."""
    first, *rest = path.split(".")

    def find(mods):
        module = mods[first]
        for part in rest:
            module = module._modules[part]
        return module

    return find


def register(owner: nn.Module, name: str, module: nn.Module) -> None:
    """`owner.add_module(name, module)`, where a dotted name (`convs.0`) registers the module
    inside containers (nn.ModuleDict) made as needed, so its state_dict keys are
    `convs.0.weight`, ..."""
    *outer, last = name.split(".")
    for part in outer:
        inner = owner._modules.get(part)
        if inner is None:
            inner = nn.ModuleDict()
            owner.add_module(part, inner)
        owner = inner
    owner.add_module(last, module)


class Block(nn.Module):
    """A spec scope with parallel branches: children by name, forward from the plan."""

    def __init__(self, children: "OrderedDict[str, nn.Module]", plan: Op,
                 scope: Scope | None = None):
        super().__init__()
        for name, module in children.items():
            register(self, name, module)
        self.plan = plan
        self.inputs = tuple(scope.inputs) if scope is not None else ()
        self.outputs = tuple(scope.outputs) if scope is not None else ()
        self._step = compile_plan(plan, scope)

    def forward(self, x: torch.Tensor, *tensors: torch.Tensor):
        """The block on `x`; named tensors it reads come after it, in `inputs` order, and
        with `outputs` it returns (main, *those tensors)."""
        env = dict(zip(self.inputs, tensors))
        out = self._step(self._modules, x, None, env)
        if self.outputs:
            return (out, *[env[name] for name in self.outputs])
        return out


class Net(Block):
    """The network root. In training mode with taps it returns (logits, *aux_logits)."""

    def __init__(self, children: "OrderedDict[str, nn.Module]", plan: Op, aux_names: tuple,
                 scope: Scope | None = None):
        super().__init__(children, plan, scope)
        self.aux_names = aux_names

    # the network takes its input alone (a block may take named tensors after it)
    def forward(self, x: torch.Tensor):  # type: ignore[override]
        if self.training and self.aux_names:
            aux: list = []
            out = self._step(self._modules, x, aux, {})
            return (out, *aux)
        return self._step(self._modules, x, None, {})


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
    assert layer.in_shape is not None  # a checked network knows every shape
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
    return cls(children, scope.plan, scope)


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
    return _named(net.name, Net)(children, root.plan, tuple(net.aux_outputs), root)


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
