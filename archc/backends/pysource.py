"""The Python-source backend: a checked `Network` → one standalone, readable PyTorch file.

The file imports only torch (and OrderedDict when a sequence has named children) and reads
like torchvision's model files: one class per distinct block structure with a straight-line
`forward`, `nn.Sequential` for plain sequences, and a network class whose `__init__` builds the
whole tree with explicit constructor calls. Its state_dict keys, shapes and outputs are those of
`archc.build`, so weights move between the two unchanged.

Block classes take their stateful children (convs, norms, nested blocks) as constructor
arguments and build their stateless ones (activations, pools) themselves: that gives one class
per block *structure* rather than one per channel configuration. Stateless children without a
Python name (an unlabelled `relu` is child "2") get one, and identical ones share a module, as
torchvision's `self.relu` does; they hold no state, so the state_dict is unaffected.
"""
from __future__ import annotations

import inspect
import json
import keyword
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import reduce
from pathlib import Path

import torch
from torch import nn

from archc.backends.module import class_name, layer_module
from archc.backends.weights import Heads, class_heads
from archc.compiler import document
from archc.compiler.document import INDENT, WIDTH, fits, sections
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
    containers,
    layers,
    takes_tensors,
)
from archc.layers import MERGES, fmt, tensor_modules

_RESERVED_CLASSES = {"OrderedDict", "Tensor"}
# The attribute an unnamed stateless layer gets, where its kind's name reads badly.
_ATTRIBUTE_NAMES = {"adaptiveavgpool": "avgpool", "globalavgpool": "avgpool",
                    "adaptivemaxpool": "maxpool", "leakyrelu": "leaky_relu"}

def _attribute_name(kind: str) -> str:
    """The attribute an unnamed stateless layer of `kind` gets (`channel_shuffle`)."""
    return _ATTRIBUTE_NAMES.get(kind, kind.replace("-", "_"))


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expr:
    """A bracketed expression `head(arg, ..., key=value)`, kept as a tree so it can wrap."""

    head: str
    args: tuple[Code, ...] = ()
    kwargs: tuple[tuple[str, Code], ...] = ()
    brackets: str = "()"


@dataclass(frozen=True)
class Sum:
    """`a + b + ...` (the add merge), or `a * b * ...` (mul) with `op` "*"."""

    terms: tuple[Code, ...]
    op: str = "+"


Code = str | Expr | Sum


def _items(expr: Expr) -> list[tuple[str, Code]]:
    return [("", a) for a in expr.args] + [(f"{k}=", v) for k, v in expr.kwargs]


def flat(code: Code) -> str:
    """`code` on one line."""
    if isinstance(code, str):
        return code
    if isinstance(code, Sum):
        return f" {code.op} ".join(flat(t) for t in code.terms)
    inner = ", ".join(p + flat(v) for p, v in _items(code))
    return f"{code.head}{code.brackets[0]}{inner}{code.brackets[1]}"


def render(code: Code, indent: str, prefix: str = "", suffix: str = "") -> list[str]:
    """`code` as lines at `indent`, wrapped the way ruff format wraps what is too long:
    first the arguments on one indented line, else one argument a line."""
    line = f"{indent}{prefix}{flat(code)}{suffix}"
    if fits(line) or isinstance(code, str):
        return [line]
    inner = indent + INDENT
    if isinstance(code, Sum):
        lines = [f"{indent}{prefix}("]
        for i, term in enumerate(code.terms):
            lines += render(term, inner, f"{code.op} " if i else "")
        return lines + [f"{indent}){suffix}"]
    items = _items(code)
    opening = f"{indent}{prefix}{code.head}{code.brackets[0]}"
    closing = f"{indent}{code.brackets[1]}{suffix}"
    joined = inner + ", ".join(p + flat(v) for p, v in items)
    if fits(joined):
        return [opening, joined, closing]
    lines = [opening]
    for p, v in items:
        lines += render(v, inner, p, ",")
    return lines + [closing]


def literal(value: object) -> str:
    """A Python literal for a constructor argument (double-quoted strings, as ruff writes)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(map(literal, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def is_identifier(name: str) -> bool:
    """True when `name` can be written as a Python name."""
    return name.isidentifier() and not keyword.iskeyword(name)


def is_attribute(name: str) -> bool:
    """True when a child called `name` can be a plain `self.name` attribute of a module."""
    return (is_identifier(name) and not name.startswith("_") and name != "self"
            and not hasattr(nn.Module, name))


# --------------------------------------------------------------------------- layers


def _read(module: nn.Module, name: str) -> object:
    """A constructor argument read back from the module it built."""
    value = getattr(module, name)
    if name == "bias":
        return value is not None
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        return value[0]  # Conv2d keeps kernel_size=3 as (3, 3)
    return value


def _is_default(module: nn.Module, name: str, value: object, default: object) -> bool:
    if default is None and name == "stride":  # pools: no stride means stride = kernel
        return value == _read(module, "kernel_size")
    return type(value) is type(default) and value == default


def settings(module: nn.Module) -> list[tuple[str, object, bool]]:
    """(name, value, required) of each constructor argument a human would write for `module`:
    the required ones and those that differ from their defaults."""
    out = []
    params = list(inspect.signature(type(module).__init__).parameters.values())[1:]
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("device", "dtype"):
            continue
        value = _read(module, p.name)
        required = p.default is p.empty
        if required or not _is_default(module, p.name, value, p.default):
            out.append((p.name, value, required))
    return out


def constructor(module: nn.Module, symbols: dict[str, str] | None = None) -> Expr:
    """`nn.Conv2d(64, 128, kernel_size=3, stride=2, padding=1, bias=False)` for a module.

    Required arguments go positionally, except kernel_size (torchvision spells it out);
    `symbols` replaces some values by names (out_features → num_classes).
    """
    cls = type(module)
    head = f"nn.{cls.__name__}" if getattr(nn, cls.__name__, None) is cls else cls.__name__
    args: list[Code] = []
    kwargs: list[tuple[str, Code]] = []
    for name, value, required in settings(module):
        text = (symbols or {}).get(name) or literal(value)
        if required and name != "kernel_size" and not kwargs:
            args.append(text)
        else:
            kwargs.append((name, text))
    return Expr(head, tuple(args), tuple(kwargs))


def meta_module(layer: LayerNode) -> nn.Module:
    """The layer's torch module, on the meta device: no memory, no initialisation cost."""
    with torch.device("meta"):
        return layer_module(layer)


class NotParameterizable(Exception):
    """The class count enters a layer in a way a `num_classes` argument cannot express."""


def class_symbols(heads: Heads) -> dict[str, dict[str, str]]:
    """Per head layer path, the constructor arguments that are `num_classes`."""
    out: dict[str, dict[str, str]] = {}
    for path, (layer, probe) in heads.layers.items():
        if probe is None:  # its arguments at another class count cannot be told
            raise NotParameterizable(path)
        mine, theirs = settings(meta_module(layer)), settings(meta_module(probe))
        if [s[0] for s in mine] != [s[0] for s in theirs]:
            raise NotParameterizable(path)
        symbols = {}
        for (name, a, _), (_, b, _) in zip(mine, theirs):
            if a == b:
                continue
            if (a, b) != (heads.num_classes, heads.probe):
                raise NotParameterizable(path)
            symbols[name] = "num_classes"
        out[path] = symbols
    return out


# --------------------------------------------------------------------------- spec comments


def _definition(net: Network, word: str, name: str) -> tuple[list[str], str, str] | None:
    """The comment above `block NAME` (or `network NAME`), its header line, and its file."""
    pattern = re.compile(rf"^{word}\s+{re.escape(name)}\b[^#\n]*", re.MULTILINE)
    for path, text in net.sources.items():
        found = pattern.search(text)
        if found is None:
            continue
        comment: list[str] = []
        for line in reversed(text[:found.start()].splitlines()):
            if not line.lstrip().startswith("#"):
                break
            comment.insert(0, line.strip().lstrip("#").strip())
        return comment, found.group(0).strip().rstrip(":").strip(), Path(path).name
    return None


def _header_comment(net: Network) -> list[str]:
    """The comment block that opens the spec file."""
    lines = []
    for line in net.sources.get(net.spec_path, "").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def docstring(lines: list[str], indent: str) -> list[str]:
    """A docstring of `lines`, each wrapped to the line length."""
    text: list[str] = []
    for line in lines:
        line = line.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        text += textwrap.wrap(line, WIDTH - len(indent) - 3, break_on_hyphens=False) or [""]
    while text and not text[-1]:
        text.pop()
    if len(text) == 1 and len(indent) + len(text[0]) + 6 <= WIDTH:
        return [f'{indent}"""{text[0]}"""']
    return ([f'{indent}"""{text[0]}'] + [f"{indent}{t}" if t else "" for t in text[1:]]
            + [f'{indent}"""'])


# --------------------------------------------------------------------------- forward code


def _has_parallel(op: Op) -> bool:
    if isinstance(op, Parallel):
        return True
    if isinstance(op, Seq):
        return any(_has_parallel(o) for o in op.ops)
    return isinstance(op, TapOut) and _has_parallel(op.op)


def _has_taps(op: Op) -> bool:
    if isinstance(op, Seq):
        return any(_has_taps(o) for o in op.ops)
    return isinstance(op, TapOut)


class Forward:
    """Straight-line `forward` code from a plan: one statement per module call."""

    def __init__(self, access: Callable[[str], str], depth: int = 2,
                 tensors: dict[str, tuple[list[str], list[str]]] | None = None,
                 inputs: Sequence[str] = ()):
        self.access = access  # child name → `self.conv1`
        self.lines: list[str] = []
        self.depth = depth
        self.used = {"x", "self", "torch", "nn"}
        self.taps: list[str] = []
        self.helpers: set[str] = set()  # archc functions the code calls (`add_into`)
        # child name → the named tensors it reads and writes (the caller's names)
        self.tensors = tensors or {}
        self.names: dict[str, str] = {}  # named tensor → the local variable holding it
        for name in inputs:  # a block's tensor parameters are arguments of its forward
            self.names[name] = self.fresh(_variable(name))

    def call(self, child: str, src: str) -> Code:
        """A child's call; one that returns named tensors is unpacked into variables."""
        reads, writes = self.tensors.get(child, ((), ()))
        code = Expr(self.access(child), (src, *[self.names[r] for r in reads]))
        if not writes:
            return code
        main = self.fresh("y")
        targets = [main]
        for name in writes:
            targets.append(self.fresh(_variable(name)) if name else "_")
            if name:
                self.names[name] = targets[-1]
        self.lines += render(code, INDENT * self.depth, ", ".join(targets) + " = ")
        return main

    def fresh(self, base: str) -> str:
        """An unused local name like `base`."""
        name, n = base, 2
        while name in self.used:
            name, n = f"{base}_{n}", n + 1
        self.used.add(name)
        return name

    def assign(self, var: str, code: Code) -> None:
        """Emit `var = code`."""
        self.lines += render(code, INDENT * self.depth, f"{var} = ")

    def value(self, op: Op, src: str, dst: str) -> Code:
        """Emit the statements of `op` on `src`; return the expression of its result.

        Statements assign `dst` or fresh names, never `src`, so parallel branches all see
        the same input.
        """
        if isinstance(op, Call):
            return self.call(op.child, src)
        if isinstance(op, Identity):
            return src
        if isinstance(op, Save):  # `-> a`: keep the tensor under a name of its own
            var = self.fresh(_variable(op.name))
            self.assign(var, src)
            self.names[op.name] = var
            return src
        if isinstance(op, Load):
            return self.names[op.name]
        if isinstance(op, Seq):
            cur = src
            for o in op.ops:
                if isinstance(o, Load):  # go on from the named tensor's variable
                    cur = self.names[o.name]
                    continue
                code = self.value(o, cur, dst)
                if code != cur:
                    self.assign(dst, code)
                    cur = dst
            return cur
        if isinstance(op, Parallel):
            return self.parallel(op, src, dst)
        if isinstance(op, TapOut):
            self.tap(op, src)
            return src
        raise TypeError(f"unknown plan op {op!r}")  # pragma: no cover

    def parallel(self, op: Parallel, src: str, dst: str) -> Code:
        """Branches with several steps become statements; a single call stays inline.

        A call before a multi-step branch is hoisted too, so branches run in plan order
        (it matters for dropout's random numbers).
        """
        last = max((i for i, b in enumerate(op.branches)
                    if not isinstance(b, Call | Identity | Load)), default=-1)
        stated = [i for i, b in enumerate(op.branches)
                  if i <= last and not isinstance(b, Identity | Load)]
        merge = MERGES[op.mode]
        inputs = [src] * len(op.branches)
        if merge.splits:  # `x1, x2 = x.chunk(2, 1)`: each branch gets its slice
            inputs = [self.fresh(f"x{i + 1}") for i in range(len(op.branches))]
            self.assign(", ".join(inputs), merge.python_inputs(src, len(inputs), op.sizes))
            # MixNet's sizes' rule is archc's: the file gets a copy (stated sizes need none)
            if merge.slicing != "equal" and op.sizes is None:
                self.helpers.add("mix_split_sizes")
        terms: list[Code] = []
        for i, branch in enumerate(op.branches):
            if i not in stated:
                terms.append(self.value(branch, inputs[i], dst))
                continue
            var = dst if dst != src and len(stated) == 1 else self.fresh(f"branch{i + 1}")
            code = self.value(branch, inputs[i], var)
            if code != var:
                self.assign(var, code)
            terms.append(var)
        function = merge.function
        if function is not None:  # `torch.maximum(torch.maximum(a, b), c)`
            if merge.helper:  # archc's own function: the file gets a copy of it
                self.helpers.add(function)
            return reduce(lambda a, b: Expr(function, (a, b)), terms)
        if merge.operator is None:
            return Expr("torch.cat", (Expr("", tuple(terms), brackets="[]"), "1"))
        return Sum(tuple(terms), merge.operator)

    def tap(self, op: TapOut, src: str) -> None:
        """An auxiliary head: computed in training only, returned after the logits."""
        var = self.fresh(op.name if is_identifier(op.name) else "aux")
        self.lines.append(f"{INDENT * self.depth}if self.training:")
        self.depth += 1
        code = self.value(op.op, src, var)
        if code != var:
            self.assign(var, code)
        self.depth -= 1
        self.taps.append(var)

    def body(self, plan: Op, outputs: Sequence[str] = ()) -> list[str]:
        """The whole forward body: statements, then the return (with `outputs`, the named
        tensors the block returns after its main output)."""
        dst = "out" if _has_parallel(plan) else "x"
        self.used.add(dst)
        ops = plan.ops if isinstance(plan, Seq) else (plan,)
        # A final merge is returned as it is made (`return torch.cat([...], 1)`).
        direct = bool(ops) and isinstance(ops[-1], Parallel) and not _has_taps(plan)
        result = self.value(Seq(ops[:-1]) if direct else plan, "x", dst)
        if direct:
            assert isinstance(result, str)  # a Seq's value is the variable holding it
            result = self.value(ops[-1], result, dst)
        pad = INDENT * self.depth
        if self.taps:
            taps = ", ".join([flat(result), *self.taps])
            self.lines += [f"{pad}if self.training:", f"{pad}{INDENT}return {taps}"]
        if outputs:
            return self.lines + [
                f"{pad}return " + ", ".join([flat(result), *(self.names[o] for o in outputs)])]
        return self.lines + render(result, pad, "return ")


def _variable(name: str) -> str:
    """A Python variable for a named tensor (a keyword gets a trailing underscore)."""
    return name + "_" if keyword.iskeyword(name) or not is_identifier(name) else name


# --------------------------------------------------------------------------- classes


def _access(name: str) -> str:
    """`self.conv1`, `getattr(self, "0")`, or `self.convs["0"]` for a dotted name."""
    first, *rest = name.split(".")
    head = f"self.{first}" if is_attribute(first) else f"getattr(self, {literal(first)})"
    return head + "".join(f"[{literal(part)}]" for part in rest)


@dataclass
class Slot:
    """A child module of a generated class.

    `name` is its registered name: the spec's for stateful children (the state_dict needs it),
    a chosen one for unnamed stateless children. `built` is the layer the class builds itself;
    None means the class takes the child as a constructor argument.
    """

    name: str
    built: Expr | None = None

    @property
    def access(self) -> str:
        """How code in the class reaches it (a dotted name, `convs.0`, through the
        nn.ModuleDict containers it sits in: `self.convs["0"]`)."""
        return _access(self.name)

    @property
    def param(self) -> str:
        """The constructor argument that carries it."""
        return self.name if is_attribute(self.name) else "m_" + re.sub(r"\W", "_", self.name)


@dataclass
class BlockClass:
    """One generated class: a block structure shared by one or more scopes."""

    base: str  # the name it wants; variants of a block get suffixes
    first: Scope  # its first instance: docstring and plan
    slots: list[Slot]  # registration order
    plan: Op | None  # the plan over slot names; None for an nn.Sequential subclass
    order: int
    name: str = ""

    @property
    def sequential(self) -> bool:
        """True for an nn.Sequential subclass (children passed positionally)."""
        return self.plan is None


def _rename(op: Op, names: dict[str, str]) -> Op:
    """The plan with children called by their slot names."""
    if isinstance(op, Call):
        return Call(names[op.child])
    if isinstance(op, Seq):
        return Seq(tuple(_rename(o, names) for o in op.ops))
    if isinstance(op, Parallel):
        return replace(op, branches=tuple(_rename(b, names) for b in op.branches))
    if isinstance(op, TapOut):
        return TapOut(_rename(op.op, names), op.name)
    return op


def _tensor_key(scope: Scope) -> tuple:
    """What a class's code depends on besides its plan: the named tensors it takes and
    returns, and those its children read and write."""
    return (tuple(scope.inputs), tuple(scope.outputs),
            tuple((c.name, tuple(c.reads), tuple(c.writes)) for c in scope.children
                  if takes_tensors(c)))


_NAMED_EXTRAS = 2  # at most this many added children go into a block variant's class name


def _fresh_name(base: str, taken: set[str]) -> str:
    name, n = base, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    taken.add(name)
    return name


@dataclass
class Source:
    """Collects the classes of a network, then writes the file."""

    net: Network
    classes: dict[tuple, BlockClass] = field(default_factory=dict)
    by_scope: dict[int, BlockClass] = field(default_factory=dict)
    # Maxout, add_into: classes and functions copied into the file
    custom: dict[str, Callable] = field(default_factory=dict)
    ordered_dict: bool = False
    symbols: dict[str, dict[str, str]] = field(default_factory=dict)
    num_classes: int | None = None
    inference: bool = False  # the network is archc.passes' folded, eval-only form

    def __post_init__(self) -> None:
        heads = class_heads(self.net)
        if heads is not None:
            try:
                self.symbols = class_symbols(heads)
                self.num_classes = heads.num_classes
            except NotParameterizable:
                self.symbols = {}  # the file keeps the class count as a fixed number

    # ---------------------------------------------------------------- analysis

    def layer(self, layer: LayerNode, symbolic: bool = True) -> Expr:
        """The constructor call of a layer (`num_classes` where it is the class count)."""
        module = meta_module(layer)
        cls = type(module)
        # archc's own classes are copied, bases first (LayerScale needs OwnParameter)
        for c in reversed(cls.__mro__):
            if c.__module__.startswith("archc.") and getattr(nn, c.__name__, None) is not c:
                self.custom.setdefault(c.__name__, c)
        return constructor(module, self.symbols.get(layer.path) if symbolic else None)

    def stateless(self, child: LayerNode | Scope) -> bool:
        """True for a layer with no parameters or buffers whose settings do not involve
        `num_classes` (a block builds those itself, where `num_classes` is not in scope)."""
        return (isinstance(child, LayerNode) and not self.symbols.get(child.path)
                and not meta_module(child).state_dict())

    def slots(self, scope: Scope) -> tuple[list[Slot], dict[str, str]]:
        """The slots of a class scope, and each child's slot name."""
        # names in use, the containers of dotted labels (`convs` of `convs.0`) among them
        taken = {c.name.split(".")[0] for c in scope.children
                 if is_attribute(c.name.split(".")[0])}
        slots: list[Slot] = []
        names: dict[str, str] = {}
        shared: dict[str, Slot] = {}  # an unnamed stateless child reuses an identical one
        for child in scope.children:
            if not self.stateless(child):
                slot = Slot(child.name)
            else:
                assert isinstance(child, LayerNode)  # only a layer is stateless
                built = self.layer(child, symbolic=False)
                if not is_attribute(child.name) and flat(built) in shared:
                    names[child.name] = shared[flat(built)].name
                    continue
                name = (child.name if is_attribute(child.name) else
                        _fresh_name(_attribute_name(child.kind), taken))
                slot = Slot(name, built)
                shared.setdefault(flat(built), slot)
            slots.append(slot)
            names[child.name] = slot.name
        return slots, names

    def needs_class(self, scope: Scope) -> bool:
        """Blocks get a class, and so do groups with branches; plain groups are nn.Sequential."""
        return scope.kind == "block" or not scope.is_sequential

    def as_sequential(self, scope: Scope) -> bool:
        """A plain sequence with stateful children that have no Python name (`0`, `1`, ...):
        an nn.Sequential subclass keeps their names without getattr calls."""
        return scope.is_sequential and any(
            not is_attribute(c.name) and not self.stateless(c) for c in scope.children)

    def collect(self, scope: Scope) -> None:
        """Register the classes of everything below `scope`, inner blocks first."""
        for child in scope.children:
            if isinstance(child, Scope):
                self.collect(child)
        if scope is self.net.root or not self.needs_class(scope):
            return
        base = class_name(scope.title or (scope.name if is_identifier(scope.name) else "group"))
        slots: list[Slot]
        plan: Op | None
        if self.as_sequential(scope):
            key: tuple = (base, "sequential", tuple(c.name for c in scope.children))
            slots, plan = [], None
        else:
            slots, names = self.slots(scope)
            plan = _rename(scope.plan, names)
            key = (base, plan, tuple((s.name, flat(s.built) if s.built else None) for s in slots),
                   _tensor_key(scope))
        if key not in self.classes:
            self.classes[key] = BlockClass(base, scope, slots, plan, len(self.classes))
        self.by_scope[id(scope)] = self.classes[key]

    def name_classes(self, taken: set[str]) -> None:
        """Final class names: a block's simplest structure gets the block's name, others a
        suffix from the children they add (`BasicDownsample`) or a number."""
        groups: dict[str, list[BlockClass]] = {}
        for cls in self.classes.values():
            groups.setdefault(cls.base, []).append(cls)
        primaries = {base: min(group, key=lambda c: (len(c.slots), c.order))
                     for base, group in groups.items()}
        for base, primary in primaries.items():
            primary.name = _fresh_name(base, taken)
        for base, group in groups.items():
            known = {s.name for s in primaries[base].slots}
            for cls in group:
                if cls is not primaries[base]:
                    added = [class_name(s.name) for s in cls.slots
                             if s.name not in known and is_identifier(s.name)]
                    # a few added children name the variant; many (a DenseNet block of 24
                    # layers beside one of 6) would make a name of hundreds of letters
                    extra = "".join(added) if len(added) <= _NAMED_EXTRAS else ""
                    cls.name = _fresh_name(primaries[base].name + extra, taken)

    # ---------------------------------------------------------------- call sites

    def instance(self, node: LayerNode | Scope) -> Code:
        """The expression that builds `node` in the network's `__init__`."""
        if isinstance(node, LayerNode):
            return self.layer(node)
        cls = self.by_scope.get(id(node))
        if cls is None:
            return Expr("nn.Sequential", self.sequence(node))
        if cls.sequential:
            return Expr(cls.name, self.sequence(node))
        return Expr(cls.name, kwargs=tuple(
            (s.param, self.instance(node.child(s.name))) for s in cls.slots if s.built is None))

    def sequence(self, scope: Scope) -> tuple[Code, ...]:
        """nn.Sequential's arguments: the children, or an OrderedDict when they have names."""
        names = [c.name for c in scope.children]
        values = [self.instance(c) for c in scope.children]
        if names == [str(i) for i in range(len(names))]:
            return tuple(values)
        self.ordered_dict = True
        if all(is_identifier(n) for n in names):
            return (Expr("OrderedDict", kwargs=tuple(zip(names, values))),)
        pairs = tuple(Expr("", (literal(n), v)) for n, v in zip(names, values))
        return (Expr("OrderedDict", (Expr("", pairs, brackets="[]"),)),)

    # ---------------------------------------------------------------- writing

    def block_class(self, cls: BlockClass) -> list[str]:
        """The source of a block class."""
        base = "nn.Sequential" if cls.sequential else "nn.Module"
        lines = [f"class {cls.name}({base}):", *docstring(self.block_doc(cls), INDENT)]
        if cls.sequential:
            return lines
        params = tuple(f"{s.param}: nn.Module" for s in cls.slots if s.built is None)
        lines += ["", *render(Expr("def __init__", ("self", *params)), INDENT, suffix=" -> None:"),
                  f"{INDENT * 2}super().__init__()"]
        made: set[str] = set()
        for slot in cls.slots:
            lines += self.register(slot, slot.built or slot.param, made)
        assert cls.plan is not None  # only an nn.Sequential subclass has none
        return lines + ["", *self.forward(cls.slots, cls.plan, scope=cls.first)]

    def block_doc(self, cls: BlockClass) -> list[str]:
        scope = cls.first
        if not scope.title:
            return [f"The `{scope.name}` group: its branches, merged."]
        found = _definition(self.net, "block", scope.title)
        if found is None:
            return [f"The `{scope.title}` block."]
        comment, header, file = found
        return [*(comment or [f"The `{scope.title}` block."]), "", f"From `{header}` in {file}."]

    def register(self, slot: Slot, code: Code, made: set[str]) -> list[str]:
        """`self.name = code` (or add_module for a name Python cannot spell); a dotted name
        (`convs.0`) first makes the containers it sits in that `made` does not hold yet."""
        pad = INDENT * 2
        lines: list[str] = []
        for outer in containers(slot.name):
            if outer not in made:
                made.add(outer)
                lines += self.assign(outer, Expr("nn.ModuleDict"), pad)
        return lines + self.assign(slot.name, code, pad)

    @staticmethod
    def assign(name: str, code: Code, pad: str) -> list[str]:
        """The line that registers `code` under `name` (a dotted one inside its container)."""
        if "." in name:
            return render(code, pad, f"{_access(name)} = ")
        if is_attribute(name):
            return render(code, pad, f"self.{name} = ")
        return render(Expr("self.add_module", (literal(name), code)), pad)

    def forward(self, slots: list[Slot], plan: Op, root: bool = False,
                scope: Scope | None = None) -> list[str]:
        access = {s.name: s.access for s in slots}
        tensors = {c.name: (c.reads, c.writes) for c in (scope.children if scope else ())
                   if takes_tensors(c)}
        inputs = scope.inputs if scope is not None and not root else []
        gen = Forward(access.__getitem__, tensors=tensors, inputs=inputs)
        outputs = scope.outputs if scope is not None and not root else []
        body = gen.body(plan, outputs)
        for name in sorted(gen.helpers):  # copied into the file beside Maxout & co.
            self.custom[name] = getattr(tensor_modules, name)
        returns = "" if gen.taps else " -> torch.Tensor"
        if outputs:
            returns = f" -> tuple[{', '.join(['torch.Tensor'] * (len(outputs) + 1))}]"
        args = ("self", "x: torch.Tensor", *(f"{gen.names[i]}: torch.Tensor" for i in inputs))
        head = render(Expr("def forward", args), INDENT, suffix=f"{returns}:")
        if root and gen.taps:
            head += docstring([f"The logits; in training mode (logits, {', '.join(gen.taps)})."],
                              INDENT * 2)
        return head + body

    def network_class(self) -> list[str]:
        """The source of the network class, which builds the whole tree."""
        root, net = self.net.root, self.net
        sequential = self.as_sequential(root)
        lines = [f"class {class_name(net.name)}({'nn.Sequential' if sequential else 'nn.Module'}):",
                 *docstring(self.network_doc(), INDENT), ""]
        params = ("self", f"num_classes: int = {self.num_classes}") if self.symbols else ("self",)
        lines += render(Expr("def __init__", params), INDENT, suffix=" -> None:")
        if sequential:
            return lines + render(Expr("super().__init__", self.sequence(root)), INDENT * 2)
        lines.append(f"{INDENT * 2}super().__init__()")
        slots, names = self.slots(root)
        made: set[str] = set()
        for slot in slots:
            lines += self.register(slot, slot.built or self.instance(root.child(slot.name)),
                                   made)
        return lines + ["", *self.forward(slots, _rename(root.plan, names), root=True,
                                          scope=root)]

    def network_doc(self) -> list[str]:
        net = self.net
        found = _definition(net, "network", net.name)
        comment = found[0] if found and found[0] else [f"The `{net.name}` network."]
        if net.aux_outputs:
            comment += ["", "In training mode `forward` also returns the auxiliary heads' logits."]
        return comment

    def module_doc(self) -> list[str]:
        net = self.net
        params = ", ".join(f"{k}={literal(v)}" for k, v in net.params.items())
        if self.inference:
            return [*(_header_comment(net) or [f"The `{net.name}` network."]), "",
                    f"Generated by archc for inference from {Path(net.spec_path).name}: network "
                    f"`{net.name}`" + (f" ({params})" if params else "")
                    + f", input {fmt(net.input_shape)}.",
                    "Eval mode only: batch norms are folded into the convs and linears before",
                    "them; dropout and auxiliary heads are gone. Standalone: it needs only",
                    "PyTorch; `archc compile --for inference --init W` writes its weights."]
        return [*(_header_comment(net) or [f"The `{net.name}` network."]), "",
                f"Generated by archc from {Path(net.spec_path).name}: network `{net.name}`"
                + (f" ({params})" if params else "") + f", input {fmt(net.input_shape)}.",
                # one line each, so no `code span` breaks across lines
                "Standalone: it needs only PyTorch. Its state_dict keys match `archc.build`, so",
                "the weights that `archc compile --init` writes next to it load with",
                "`model.load_state_dict(safetensors.torch.load_file(path))`."]

    def text(self) -> str:
        """The whole file."""
        net = self.net
        for layer in layers(net.root):  # find the copied classes (Maxout) before naming blocks
            self.layer(layer)
        self.collect(net.root)
        self.name_classes({class_name(net.name), *self.custom, *_RESERVED_CLASSES})
        network = self.network_class()  # before `imports`: it finds out about OrderedDict
        blocks = [self.block_class(c) for c in self.classes.values()]
        imports = ["from collections import OrderedDict", ""] if self.ordered_dict else []
        imports += ["import torch", "from torch import nn"]
        copied = [inspect.getsource(c).rstrip("\n").splitlines() for c in self.custom.values()]
        parts = [imports, *copied, *blocks, network]
        # the module docstring, a blank line, then two blank lines between the sections
        return document.text(docstring(self.module_doc(), "")) + "\n" + sections(parts, blank=2)


def python_source(net: Network, inference: bool = False) -> str:
    """Standalone PyTorch source for `net`: same state_dict and outputs as `archc.build(net)`.

    `inference` marks `net` as the folded eval-mode form (archc.passes makes it).
    """
    return Source(net, inference=inference).text()


def _quiet(message: str) -> None:
    """The default `note`: library code says nothing; the CLI passes a printer."""


def write_python(net: Network, path: Path, init: str | None = None,
                 note: Callable[[str], None] = _quiet, model=None,
                 inference: bool = False) -> list[Path]:
    """Write the source to `path`; with `init` (or a `model` whose weights to keep) also its
    weights as `<stem>.safetensors`. Returns the paths written. `note` receives the
    initialiser's messages (re-initialised heads). `inference`: `net` is the folded form.
    """
    path = Path(path)
    source = python_source(net, inference=inference)
    if init is not None:  # before writing anything: bad weights leave no half-written output
        from archc.backends.module import to_module
        from archc.backends.weights import init_model

        model = to_module(net)
        for message in init_model(model, net, init):
            note(message)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    if model is None:
        return [path]
    from archc.backends.weights import save_weights

    return [path, save_weights(model, path.with_suffix(".safetensors"), net)]
