"""Drafts of many instances → blocks with parameters, and drafts → IR.

The instances of one module class whose drafts have the same skeleton become one block.
Every argument slot that is the same in all of them is written as its value (or left out
when that is the default); a slot that differs becomes a block parameter, or an
expression of one found earlier (`c*4` for a bottleneck's expansion). Consecutive equal
items become `xN`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, cast

from archc.compiler import ir
from archc.importers.torch_draft import (
    REQUIRED,
    Arg,
    DBind,
    DCall,
    DFor,
    DGroup,
    DItem,
    DLayer,
    DMerge,
    DRef,
    DShortcut,
    DTap,
    Symbol,
    TensorName,
    shortcut_args,
    skeleton,
    slots,
    walk,
)

CHANNELS = "c"  # the key of channel counts
RELATED = {CHANNELS, "groups"}  # keys related to each other by equality or whole factors
# Kinds without weights that end a unit (`conv3-64 relu`) rather than start one.
FOLLOWERS = {
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "leakyrelu",
    "elu",
    "silu",
    "hardswish",
    "gelu",
    "mish",
    "hardsigmoid",
    "bn",
    "flatten",
}
# How the hand-written specs spell kinds that have no paper notation to show.
SPELLING = {
    "globalavgpool": "global-avgpool",
    "adaptiveavgpool": "adaptive-avgpool",
    "adaptivemaxpool": "adaptive-maxpool",
    "leakyrelu": "leaky-relu",
}


@dataclass
class _Param:
    """A block parameter being found: the key it came from and its value per instance."""

    key: str
    values: tuple
    default: Any = REQUIRED
    name: str = ""


@dataclass(frozen=True)
class _Ref:
    """An expression of a parameter: `param`, `param * factor` or `param // factor`."""

    param: _Param
    op: str = ""
    factor: int = 1


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type (1, 1.0 and True are three different arguments)."""
    return type(a) is type(b) and a == b


def literal(value: Any) -> ir.Expr:
    """A Python value as an IR expression."""
    if isinstance(value, bool):
        return ir.Name(id="true" if value else "false")
    if isinstance(value, float):  # 0.07500000000000001 (a schedule's arithmetic) is 0.075
        return ir.Num(value=float(f"{value:.12g}"))
    if isinstance(value, int):
        return ir.Num(value=value)
    if isinstance(value, Symbol):
        return ir.Name(id=value.name)
    if isinstance(value, TensorName):
        return ir.TensorRef(id=value.name)
    if isinstance(value, tuple):
        return ir.Tuple(items=[literal(v) for v in value])
    if value in ("same", "valid"):
        return ir.Name(id=value)
    return ir.Str(value=str(value))


# --------------------------------------------------------------------------- unification


class Unified:
    """The parameters of a group of instance drafts, and each slot's expression."""

    def __init__(self, bodies: list[list[DItem]], root: bool = False):
        self.root = root  # the network: a `Symbol` is its own parameter, written by name
        self.params: list[_Param] = []
        columns = list(zip(*(slots(b) for b in bodies)))
        self.exprs: list[Any] = [self.slot(col) for col in columns]
        self.name_params()

    def slot(self, column: tuple[Arg, ...]) -> Any:
        """None (leave the argument out), a literal value, or a `_Ref` to a parameter."""
        values = tuple(a.value for a in column)
        first = column[0]
        if isinstance(values[0], Symbol) and not self.root:
            return self.passed_down(values)
        if all(same(v, values[0]) for v in values):
            if first.default is not REQUIRED and same(values[0], first.default):
                return None
            return ("value", values[0])
        return self.relate(values, first.key)

    def passed_down(self, values: tuple) -> _Ref:
        """A network parameter used in a block: the block's parameter of the same name."""
        symbol = values[0]
        for p in self.params:
            if p.key == symbol.name and p.values == values:
                return _Ref(p)
        param = _Param(symbol.name, values)
        self.params.append(param)
        return _Ref(param)

    def relate(self, values: tuple, key: str) -> _Ref:
        """The parameter (or `c*k`, `c//k` of one) whose values these are; else a new one."""
        kind = CHANNELS if key in RELATED else key
        for p in self.params:
            if (CHANNELS if p.key in RELATED else p.key) != kind:
                continue
            if all(same(v, u) for v, u in zip(values, p.values)):
                return _Ref(p)
            if kind == CHANNELS and all(isinstance(v, int) for v in values):
                ratio = _factor(values, p.values)
                if ratio:
                    return _Ref(p, "*", ratio)
                ratio = _factor(p.values, values)
                if ratio:
                    return _Ref(p, "//", ratio)
        param = _Param(key, values)
        if key not in (CHANNELS, "n"):  # a stride, a kernel size: the most common value is
            # the default; channels and loop counts are what tells the instances apart
            param.default = Counter(values).most_common(1)[0][0]
        self.params.append(param)
        return _Ref(param)

    def name_params(self) -> None:
        """`c` when one channel parameter, else `c1`, `c2`, ...; likewise for every key."""
        counts = Counter(p.key for p in self.params)
        seen: Counter = Counter()
        for p in self.params:
            seen[p.key] += 1
            p.name = p.key if counts[p.key] == 1 else f"{p.key}{seen[p.key]}"

    @property
    def ordered(self) -> list[_Param]:
        """Required parameters first, then those with a default, each in order found."""
        return [p for p in self.params if p.default is REQUIRED] + [
            p for p in self.params if p.default is not REQUIRED
        ]

    def signature(self, tensors: list[str] | None = None) -> list[ir.Param]:
        """The block's parameters as IR: the required ones, the `@` tensor parameters
        (`tensors`), then those with a default."""
        params = [
            ir.Param(name=p.name, default=None if p.default is REQUIRED else literal(p.default))
            for p in self.ordered
        ]
        at = sum(p.default is None for p in params)
        named = [ir.Param(name=t, tensor=True) for t in tensors or []]
        return [*params[:at], *named, *params[at:]]

    def call_args(self, instance: int) -> list[Arg]:
        """The arguments of one instance's call: required ones by position (the tensor
        arguments, added by the caller, follow them)."""
        return [
            Arg(
                p.name,
                p.values[instance],
                p.default,
                key=p.key if p.key in RELATED else p.name,
                positional=p.default is REQUIRED,
            )
            for p in self.ordered
        ]

    def expr(self, made: Any) -> ir.Expr:
        """A slot's IR expression."""
        if isinstance(made, tuple):
            return literal(made[1])
        name = ir.Name(id=made.param.name)
        if not made.op:
            return name
        return ir.BinOp(op=made.op, left=name, right=ir.Num(value=made.factor))


def _factor(values: tuple, base: tuple) -> int | None:
    """k when values == base * k for one whole k ≥ 2, else None."""
    if not all(isinstance(b, int) and b > 0 for b in base) or values[0] % base[0]:
        return None
    k = values[0] // base[0]
    ok = k >= 2 and all(v == b * k for v, b in zip(values, base))
    return k if ok else None


# --------------------------------------------------------------------------- loops

_NUMBERED = re.compile(r"([A-Za-z_][\w-]*?)(\d+)\Z")
LOOP_AT_LEAST = 3  # shorter runs read better written out


def fold_loops(items: list[DItem]) -> list[DItem]:
    """Runs of items equal but for a number in their labels (`denselayer1`, `denselayer2`,
    ...) → one `for i in range(...)` whose item has the label `denselayer{i}`."""
    items = [_fold_inside(i) for i in items]
    out: list[DItem] = []
    i = 0
    while i < len(items):
        first = _numbered(items[i])
        run = 1
        while first and i + run < len(items):
            nxt = _numbered(items[i + run])
            if not nxt or nxt[1] != first[1] or nxt[0] != first[0] + run:
                break
            run += 1
        if first and run >= LOOP_AT_LEAST:  # (a run needs a first item)
            body = _template(items[i], first[0])
            out.append(DFor(body, first[0], Arg("count", run, key="n")))
            i += run
        else:
            out.append(items[i])
            i += 1
    return out


def _fold_inside(item: DItem) -> DItem:
    if isinstance(item, DGroup):
        return DGroup(fold_loops(item.items), item.label)
    return item


def _labels(item: DItem) -> list[str]:
    return [i.label for i in walk([item]) if i.label]


def _numbered(item: DItem) -> tuple[int, tuple] | None:
    """(n, what the item is with n taken out of its labels) when its labels share one n."""
    numbers = {m.group(2) for m in map(_NUMBERED.match, _labels(item)) if m}
    if len(numbers) != 1 or isinstance(item, DFor):
        return None
    n = int(numbers.pop())
    templated = _template(item, n)
    values = tuple((type(a.value), a.value) for a in slots([templated]))
    return n, (skeleton([templated]), values)


def _template(item: DItem, n: int) -> DItem:
    """A copy of `item` with the number n in its labels written as `{i}`."""
    copy = _copy(item)
    for inner in walk([copy]):
        match = _NUMBERED.match(inner.label or "")
        if match and int(match.group(2)) == n:
            inner.label = match.group(1) + "{i}"
    return copy


def _copy(item: DItem) -> DItem:
    if isinstance(item, DGroup):
        return DGroup([_copy(i) for i in item.items], item.label)
    if isinstance(item, DMerge):
        return DMerge(item.mode, [_copy(i) for i in item.branches], item.label)
    if isinstance(item, DTap):
        return DTap(_copy(item.head), item.label)
    if isinstance(item, DFor):
        return DFor(_copy(item.body), item.start, item.count, item.label)
    return replace(item)


# --------------------------------------------------------------------------- drafts → IR


class Emitter:
    """Writes one draft body as IR, taking each argument's expression in slot order."""

    def __init__(self, unified: Unified):
        self.unified = unified
        self.exprs = iter(unified.exprs)

    def items(self, items: list[DItem]) -> list:
        """A body as IR, runs of equal items as `xN`; an unlabelled group in a sequence
        (one op of the forward that is two layers: `x.mean((2, 3))`) is spliced in."""
        out: list = []
        for item in items:
            made = self.item(item)
            plain = isinstance(made, ir.Group) and made.label is None and made.repeat is None
            out.extend(made.items if plain else [made])
        return compress(out)

    def item(self, item: DItem):
        """One draft item as IR."""
        if isinstance(item, (DLayer, DShortcut)):
            callee = item.callee if isinstance(item, DLayer) else "shortcut"
            callee = SPELLING.get(callee, callee)
            return ir.Layer(callee=callee, args=self.args(item.args), label=item.label)
        if isinstance(item, DGroup):
            return ir.Group(items=self.items(item.items), label=item.label)
        if isinstance(item, DMerge):
            return ir.Merge(  # pydantic checks the mode against the IR's
                mode=cast(ir.MergeMode, item.mode), branches=[self.item(b) for b in item.branches],
                label=item.label,
            )
        if isinstance(item, DTap):
            return ir.Tap(head=self.item(item.head), label=item.label)
        if isinstance(item, DRef):
            return ir.Ref(name=item.name)
        if isinstance(item, DBind):
            return ir.Bind(names=item.names)
        if isinstance(item, DFor):
            count = self.unified.expr(next(self.exprs))
            stop: ir.Expr = ir.BinOp(op="+", left=count, right=ir.Num(value=item.start))
            if isinstance(count, ir.Num):
                stop = ir.Num(value=count.value + item.start)
            iterable = ir.Call(func="range", args=[ir.Num(value=item.start), stop])
            return ir.For(names=["i"], iterable=iterable, items=[self.item(item.body)])
        raise TypeError(f"unresolved draft item {item!r}")  # pragma: no cover

    def args(self, args: list[Arg]) -> list[ir.Arg]:
        """Arguments as written: by position while they can be, then by name."""
        out: list[ir.Arg] = []
        by_position = True  # once an argument is left out or named, the rest are named
        for arg in args:
            made = next(self.exprs)
            if made is None:
                by_position = False
                continue
            by_position = by_position and arg.positional
            out.append(
                ir.Arg(name=None if by_position else arg.name, value=self.unified.expr(made))
            )
        return out


def _follower(item) -> bool:
    """An activation (a kind without weights) that reads as the end of a unit, not its start."""
    return isinstance(item, ir.Layer) and item.callee in FOLLOWERS


def compress(items: list) -> list:
    """Runs of equal unlabelled items (or sequences of up to four) → `item xN`."""
    out: list = []
    i = 0
    while i < len(items):
        best_len, best_count = 1, 1
        for length in range(1, 5):
            chunk = items[i : i + length]
            if len(chunk) < length or any(getattr(c, "label", None) for c in chunk):
                break
            if any(isinstance(c, (ir.Merge, ir.For, ir.Ref, ir.Bind)) for c in chunk):
                break  # `.arch` repeats neither: a repeated merge is a block's job; a name
                # is given and read once
            if length > 1 and _follower(chunk[0]):
                continue  # `[relu conv3-256] x2` reads worse than `conv3-256 relu` twice
            count = 1
            while items[i + count * length : i + (count + 1) * length] == chunk:
                count += 1
            if count > 1 and length * (count - 1) > best_len * (best_count - 1):
                best_len, best_count = length, count
        if best_count == 1:
            out.append(items[i])
            i += 1
            continue
        chunk = items[i : i + best_len]
        unit = chunk[0] if best_len == 1 else ir.Group(items=chunk)
        if unit.repeat is not None:
            out.extend(chunk)
            i += best_len
            continue
        out.append(unit.model_copy(update={"repeat": ir.Num(value=best_count)}))
        i += best_len * best_count
    return out


# --------------------------------------------------------------------------- blocks


class Blocks:
    """Block definitions for the module classes of a model, made on first use.

    `bodies` maps id(instance) to its draft; `instances` maps a class key to its instances
    in model order; `names` to the block name its class gets.
    """

    def __init__(
        self,
        bodies: dict[int, list[DItem]],
        instances: dict[Any, list],
        names: dict[Any, str],
        class_of,
        reshapes=lambda module: False,
        tensor_params: dict[int, list[str | None]] | None = None,
        output_names: dict[int, list[str]] | None = None,
    ):
        self.bodies, self.instances, self.names, self.class_of = bodies, instances, names, class_of
        self.reshapes = reshapes  # module → True when its output shape is not its input's
        self.tensor_params = tensor_params or {}  # id(instance) → its `@` parameters
        self.output_names = output_names or {}  # id(instance) → the tensors it returns
        self.definitions: list[ir.BlockDef] = []
        self.calls: dict[int, DLayer] = {}

    def resolve(self, items: list[DItem]) -> list[DItem]:
        """A copy of `items` with every module call replaced by its block call."""
        return [self.resolved(i) for i in items]

    def resolved(self, item: DItem) -> DItem:
        """`item` with its module calls (at any depth) replaced by block calls."""
        if isinstance(item, DCall):
            if id(item.module) not in self.calls:
                self.define(self.class_of(item.module))
            call = self.calls[id(item.module)]
            params = self.tensors_of(item.module)
            tensors = [Arg(p, TensorName(t), REQUIRED, p, positional=True)
                       for p, t in zip(params, item.tensors)]
            required = sum(a.default is REQUIRED for a in call.args)
            args = [*call.args[:required], *tensors, *call.args[required:]]
            return DLayer(call.callee, args, item.label)
        if isinstance(item, DGroup):
            return DGroup(self.resolve(item.items), item.label)
        if isinstance(item, DMerge):
            return DMerge(item.mode, self.resolve(item.branches), item.label)
        if isinstance(item, DTap):
            return DTap(self.resolved(item.head), item.label)
        return item

    def define(self, key: Any) -> None:
        """Unify the instances of one class into one block per skeleton. Instances that
        hold others of their class (DLA's tree of trees, a numbered nn.Sequential in a block
        in a stage) come after those: their bodies call them."""
        pending = list(self.instances[key])
        made = 0
        while pending:
            ready = [m for m in pending if not self.holds_own_class(m, pending)] or pending
            made = self.define_group(key, ready, made)
            pending = [m for m in pending if all(m is not r for r in ready)]

    def tensors_of(self, module: Any) -> list[str]:
        """The `@` parameters of `module`'s block: the tensors it reads after the first."""
        return [p for p in self.tensor_params.get(id(module), []) if p]

    @staticmethod
    def holds_own_class(module: Any, pending: list) -> bool:
        """Whether `module` holds, at any depth, one of the `pending` instances of its class."""
        waiting = {id(m) for m in pending if m is not module}
        return any(id(d) in waiting for d in module.modules())

    def define_group(self, key: Any, modules: list, made: int) -> int:
        """Blocks for `modules` of class `key`, numbered after the `made` ones before;
        returns how many blocks of the class there are now."""
        bodies = [fold_loops(self.resolve(self.bodies[id(m)])) for m in modules]
        bodies = optional_residuals(bodies, [self.reshapes(m) for m in modules])
        variants: dict[tuple, list[int]] = {}
        for i, body in enumerate(bodies):
            variant = (skeleton(body), tuple(self.tensors_of(modules[i])),
                       tuple(self.output_names.get(id(modules[i]), [])))
            variants.setdefault(variant, []).append(i)
        for n, members in enumerate(variants.values(), start=made):
            name = self.names[key] + (f"_{n + 1}" if n else "")
            group = [bodies[i] for i in members]
            _fill_shortcut_labels(group)
            unified = Unified(group)
            emitted = Emitter(unified).items(group[0])
            tensors = self.tensors_of(modules[members[0]])
            outputs = self.output_names.get(id(modules[members[0]]), [])
            self.definitions.append(ir.BlockDef(name=name, params=unified.signature(tensors),
                                                outputs=outputs, body=emitted))
            for j, i in enumerate(members):
                self.calls[id(modules[i])] = DLayer(name, unified.call_args(j))
        return made + len(variants)


def optional_residuals(bodies: list[list[DItem]], reshapes: list[bool]) -> list[list[DItem]]:
    """MobileNet's block adds its input only where the shapes allow: `x + conv(x)` in some
    instances, `conv(x)` in those that change the shape. Both become one block with
    `add: [shortcut(optional=true), conv]`, which archc reduces the same way."""
    residual = [_residual(b) for b in bodies]
    forms = {skeleton([r[0]]): r[1] for r in residual if r}
    plain = [
        i
        for i, (body, r) in enumerate(zip(bodies, residual))
        if r is None and reshapes[i] and len(body) == 1 and skeleton(body) in forms
    ]
    if not plain:
        return bodies
    out = []
    for i, (body, r) in enumerate(zip(bodies, residual)):
        if i in plain:
            at, item = forms[skeleton(body)], body[0]
        elif r is not None:
            item, at = r
        else:
            out.append(body)
            continue
        branches = [item]
        branches.insert(at, DShortcut(shortcut_args(optional=True)))
        out.append([DMerge("add", branches, body[0].label if i not in plain else None)])
    return out


def _residual(body: list[DItem]) -> tuple[DItem, int] | None:
    """(the other branch, where the identity is) of a body that is `x + f(x)`, else None."""
    if len(body) != 1 or not isinstance(body[0], DMerge) or body[0].mode != "add":
        return None
    branches = body[0].branches
    plain_identity = [
        isinstance(b, DShortcut) and not any(a.value for a in b.args[1:]) and b.args[0].value
        for b in branches
    ]
    if len(branches) != 2 or sum(plain_identity) != 1:
        return None
    at = plain_identity.index(True)
    return branches[1 - at], at


def _fill_shortcut_labels(bodies: list[list[DItem]]) -> None:
    """An identity shortcut has no module; it takes the label its projecting twins have."""
    columns = zip(*([i for i in walk(b) if isinstance(i, DShortcut)] for b in bodies))
    for column in columns:
        label = next((s.label for s in column if s.label), None)
        for s in column:
            s.label = label
