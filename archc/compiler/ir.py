"""The IR: what a spec says, as pydantic nodes, before anything is resolved.

Both front ends (the .arch parser and the YAML loader) produce these nodes, so every
later stage (resolve, shapes, backends) sees one language. Every node carries the
`Span` of the source it came from, which is what diagnostics point at.

Paper sugar is already gone here: `conv3-64` arrives as
`Layer(callee="conv", args=[kernel=3, out=64])`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, Self, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field


class Node(BaseModel):
    """Base of every IR node: immutable, no extra fields.

    The .arch parser builds nodes with `model_construct` (its tree is already well formed)
    and schemas are built on first validation (`defer_build`), so `archc check` does not
    pay for pydantic's schema generation; the YAML front end validates in full.

    `model_construct` and `model_copy` are pydantic's, made cheaper for a spec of a million
    nodes (they were half of the time and most of the memory of checking a 1 MB spec):
    defaults come from a per-class plan instead of a deep copy each (a default span is frozen,
    so it is shared), and nodes that set the same fields share one fields-set (pydantic's
    `model_copy` copies it before adding to it, and frozen nodes never change it otherwise).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:
        """A node from trusted values, without validation: pydantic's `model_construct`."""
        node = cls.__new__(cls)
        fields: dict[str, Any] = {}
        for name, default, fresh in _construct_plan(cls):
            if name in values:
                fields[name] = values[name]
            elif fresh is not None:
                fields[name] = fresh(default)
            elif default is not _REQUIRED:
                fields[name] = default
        _set = object.__setattr__
        _set(node, "__dict__", fields)
        _set(node, "__pydantic_fields_set__", _shared_fields_set(
            _fields_set if _fields_set is not None else values.keys() & fields.keys()))
        _set(node, "__pydantic_extra__", None)
        _set(node, "__pydantic_private__", None)
        return node

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with `update` applied (shallow unless `deep`): pydantic's `model_copy`."""
        if deep:
            return super().model_copy(update=update, deep=True)
        cls = type(self)
        node = cls.__new__(cls)
        fields = dict(self.__dict__)
        fields_set = self.__pydantic_fields_set__
        if update:
            fields.update(update)
            fields_set = fields_set | update.keys()
        _set = object.__setattr__
        _set(node, "__dict__", fields)
        _set(node, "__pydantic_fields_set__", _shared_fields_set(fields_set))
        _set(node, "__pydantic_extra__", None)
        _set(node, "__pydantic_private__", None)
        return node


_REQUIRED = object()
_T = TypeVar("_T")
# (name, default, how to copy the default or None to share it) per field
_Plan = tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]
_PLANS: dict[type, _Plan] = {}
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}
_IMMUTABLE = (type(None), str, int, float, bool, tuple, frozenset, Node)


def _construct_plan(cls: type[Node]) -> _Plan:
    """(name, default, how to copy the default or None to share it) per field, in order."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = tuple(
            (name, _REQUIRED if field.is_required() else field.default,
             None if field.is_required() or isinstance(field.default, _IMMUTABLE)
             else _fresh_copy)
            for name, field in cls.model_fields.items()
        )
        if any(field.default_factory is not None for field in cls.model_fields.values()):
            raise TypeError(f"{cls.__name__}: IR fields take plain defaults, not factories")
        _PLANS[cls] = plan
    return plan


def _fresh_copy(default: Any) -> Any:
    """A default that each node must own (a list): copied as pydantic copies it."""
    return copy.copy(default) if not default else copy.deepcopy(default)


def _shared_fields_set(names: Iterable[str]) -> set[str]:
    """One set object for each distinct set of names (a set costs 216 bytes per node)."""
    key = frozenset(names)
    shared = _FIELDS_SETS.get(key)
    if shared is None:
        shared = _FIELDS_SETS[key] = set(key)
    return shared


class Span(Node):
    """A region of a source file; lines and columns count from 1, end is exclusive."""

    file: str = "<spec>"
    line: int = 1
    column: int = 1
    end_line: int = 1
    end_column: int = 2

    @classmethod
    def at(cls, file: str, line: int, column: int, end_line: int, end_column: int) -> "Span":
        """`Span.model_construct` with every field given: the parser makes ~400,000 per MB."""
        span = cls.__new__(cls)
        _set = object.__setattr__
        _set(span, "__dict__", {"file": file, "line": line, "column": column,
                                "end_line": end_line, "end_column": end_column})
        _set(span, "__pydantic_fields_set__", _ALL_SPAN_FIELDS)
        _set(span, "__pydantic_extra__", None)
        _set(span, "__pydantic_private__", None)
        return span

    def to(self, other: "Span") -> "Span":
        """The span from the start of this one to the end of `other`."""
        return self.model_copy(update={"end_line": other.end_line, "end_column": other.end_column})


_ALL_SPAN_FIELDS = _shared_fields_set(Span.model_fields)
NOWHERE = Span.model_construct(file="<builtin>")

# --------------------------------------------------------------------------- expressions


class Num(Node):
    """An int or float literal."""

    type: Literal["num"] = "num"
    value: int | float
    span: Span = NOWHERE


class Str(Node):
    """A string literal (variant names, modes)."""

    type: Literal["str"] = "str"
    value: str
    span: Span = NOWHERE


class Name(Node):
    """A reference to a parameter, or `true` / `false` / `same` / `valid`."""

    type: Literal["name"] = "name"
    id: str
    span: Span = NOWHERE


class BinOp(Node):
    """`left op right`: arithmetic, a comparison, or `and` / `or` (which short-circuit)."""

    type: Literal["binop"] = "binop"
    op: Literal[
        "+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or"
    ]
    left: "Expr"
    right: "Expr"
    span: Span = NOWHERE


class Neg(Node):
    """Unary minus."""

    type: Literal["neg"] = "neg"
    operand: "Expr"
    span: Span = NOWHERE


class Not(Node):
    """`not operand`."""

    type: Literal["not"] = "not"
    operand: "Expr"
    span: Span = NOWHERE


class Cond(Node):
    """`then if test else other`: only the chosen side is evaluated."""

    type: Literal["cond"] = "cond"
    test: "Expr"
    then: "Expr"
    other: "Expr"
    span: Span = NOWHERE


class Call(Node):
    """`min(a, b)`, `make_divisible(c * 0.75, 8)`: a built-in function of expressions."""

    type: Literal["call"] = "call"
    func: str
    args: list["Expr"] = []
    span: Span = NOWHERE
    func_span: Span = NOWHERE  # just the name: where "unknown function" points


class Index(Node):
    """`t[i]`, or with `upper`/`is_slice` a slice `t[a:b]` (either bound may be left out)."""

    type: Literal["index"] = "index"
    value: "Expr"
    index: "Expr | None" = None
    upper: "Expr | None" = None
    is_slice: bool = False
    span: Span = NOWHERE


class Comprehension(Node):
    """`(ceil(n * depth) for c, n in setting)`: a tuple, one element per value."""

    type: Literal["comprehension"] = "comprehension"
    element: "Expr"
    names: list["str | list[str]"]
    iterable: "Expr"
    span: Span = NOWHERE


class Tuple(Node):
    """`(0.35, 1.0)`: a fixed-size tuple, e.g. a `scale` range in a train section."""

    type: Literal["tuple"] = "tuple"
    items: list["Expr"]
    span: Span = NOWHERE


class TensorRef(Node):
    """`@name` as an argument: a named tensor passed to a block's tensor parameter, or a
    branch of a one-line merge `concat(@a, @b)`. It has no value in arithmetic."""

    type: Literal["tensor"] = "tensor"
    id: str
    span: Span = NOWHERE


Expr = Annotated[
    Union[Num, Str, Name, BinOp, Neg, Not, Cond, Call, Index, Comprehension, Tuple, TensorRef],
    Field(discriminator="type"),
]

# --------------------------------------------------------------------------- items


class Arg(Node):
    """One call argument; `name` is None for a positional one."""

    name: str | None = None
    value: Expr
    span: Span = NOWHERE


class Layer(Node):
    """A call of a layer kind or of a block: `conv3-64(stride=2)`, `basic(64)`, `relu`."""

    node: Literal["layer"] = "layer"
    callee: str
    args: list[Arg] = []
    label: str | None = None
    repeat: Expr | None = None
    span: Span = NOWHERE
    label_span: Span = NOWHERE  # where the label is written
    callee_span: Span = NOWHERE  # just the word: where "unknown layer" points


class Group(Node):
    """A bracketed or indented sequence; a label makes it a named submodule."""

    node: Literal["group"] = "group"
    items: list["Item"] = []
    label: str | None = None
    repeat: Expr | None = None
    span: Span = NOWHERE
    label_span: Span = NOWHERE  # where the label is written


MergeMode = Literal[
    "concat", "add", "add-into", "mul", "max", "sub", "split", "mix-split"
]


class Merge(Node):
    """Parallel branches, merged as the merge table says (archc.layers.merges)."""

    node: Literal["merge"] = "merge"
    mode: MergeMode
    branches: list["Item"] = []
    args: list[Arg] = []  # the merge's named arguments: `split(sizes=(16, 24, 24)):`
    label: str | None = None
    repeat: Expr | None = None
    span: Span = NOWHERE
    label_span: Span = NOWHERE  # where the label is written


class Tap(Node):
    """A side head (e.g. an auxiliary classifier) that branches off the main path.

    Its output is an extra network output in training mode; the main path is untouched.
    """

    node: Literal["tap"] = "tap"
    head: "Item"
    label: str | None = None
    repeat: Expr | None = None
    span: Span = NOWHERE
    label_span: Span = NOWHERE  # where the label is written


class For(Node):
    """`for t, c, n, s in setting:` + items: the items once per value of the iterable.

    The iterable is a tuple (a stage table's rows, `range(1, 7)`); each value is bound to
    `names` (a row is unpacked into several) and the copies are spliced in order. Labels
    inside may use the names, `denselayer{i}:`, to number modules as torchvision does.
    """

    node: Literal["for"] = "for"
    names: list[str | list[str]]  # `i, (c, n)` is ["i", ["c", "n"]]
    iterable: Expr
    items: list["Item"] = []
    label: str | None = None
    repeat: Expr | None = None
    span: Span = NOWHERE
    label_span: Span = NOWHERE  # where the label is written


class TableRef(Node):
    """One column of a configuration table: `vgg[variant]` or `vgg[D]`."""

    node: Literal["tableref"] = "tableref"
    table: str
    variant: str
    label: str | None = None
    repeat: Expr | None = None
    span: Span = NOWHERE
    label_span: Span = NOWHERE  # where the label is written


class If(Node):
    """`if test: items`: the items when the test holds, nothing otherwise. As a merge branch,
    a false test leaves the branch out."""

    node: Literal["if"] = "if"
    test: Expr
    items: list["Item"] = []
    label: str | None = None
    repeat: Expr | None = None
    span: Span = NOWHERE
    label_span: Span = NOWHERE  # where the label is written


class Ref(Node):
    """`@name`: continue from the tensor named `name` (by `-> name`) instead of the current
    one; as the first item of a merge branch, the branch starts from that tensor."""

    node: Literal["ref"] = "ref"
    name: str
    label: str | None = None
    repeat: Expr | None = None
    span: Span = NOWHERE
    label_span: Span = NOWHERE


class Bind(Node):
    """`-> name`: name the current tensor so that a later `@name` reads it. After a call of
    a block with several outputs, `-> a, b` names them in order."""

    node: Literal["bind"] = "bind"
    names: list[str]
    label: str | None = None
    repeat: Expr | None = None
    span: Span = NOWHERE
    label_span: Span = NOWHERE
    names_span: list[Span] = []  # where each name is written


Item = Annotated[
    Union[Layer, Group, Merge, Tap, TableRef, For, If, Ref, Bind], Field(discriminator="node")
]

# --------------------------------------------------------------------------- definitions


class Param(Node):
    """A block or network parameter with an optional default."""

    name: str
    default: Expr | None = None
    tensor: bool = False  # `@name`: a named tensor the caller passes, not a value
    span: Span = NOWHERE


class After(Node):
    """`after conv: relu`: append these items after every layer of `kind` in this body."""

    kind: str
    items: list[Item]
    span: Span = NOWHERE


class InputDecl(Node):
    """`input 3x224x224`: the network's declared input (C, H, W)."""

    dims: list[Expr]
    span: Span = NOWHERE


class BlockDef(Node):
    """`block name(params): body`: a parametric, reusable submodule."""

    stmt: Literal["block"] = "block"
    name: str
    params: list[Param] = []
    outputs: list[str] = []  # `-> @a, @b`: the named tensors it returns, the first the main
    after: list[After] = []
    body: list[Item] = []
    span: Span = NOWHERE
    name_span: Span = NOWHERE


class NetworkDef(Node):
    """`network name(params): body`: a whole network with its input declaration."""

    stmt: Literal["network"] = "network"
    name: str
    params: list[Param] = []
    input: InputDecl | None = None
    after: list[After] = []
    body: list[Item] = []
    span: Span = NOWHERE
    name_span: Span = NOWHERE


class NetworkAlias(Node):
    """`network vgg_d = vgg(variant="D")`: another network with its defaults rebound."""

    stmt: Literal["alias"] = "alias"
    name: str
    target: str
    args: list[Arg] = []
    span: Span = NOWHERE
    name_span: Span = NOWHERE


class TableRow(Node):
    """One configuration (column of the paper's table), e.g. `D: conv3-64 x2 maxpool ...`."""

    variant: str
    items: list[Item]
    span: Span = NOWHERE


class TableDef(Node):
    """`table vgg:` followed by one row per configuration."""

    stmt: Literal["table"] = "table"
    name: str
    rows: list[TableRow]
    span: Span = NOWHERE
    name_span: Span = NOWHERE


class Import(Node):
    """`import "blocks.arch"`, resolved relative to the importing file."""

    stmt: Literal["import"] = "import"
    path: str
    span: Span = NOWHERE


class Setting(Node):
    """`epochs = 30` inside a `train:` section."""

    name: str
    value: Expr
    span: Span = NOWHERE


class TrainDef(Node):
    """`train:` section: training hyper-parameters that the CLI may override."""

    stmt: Literal["train"] = "train"
    settings: list[Setting]
    span: Span = NOWHERE


Statement = Annotated[
    Union[Import, BlockDef, NetworkDef, NetworkAlias, TableDef, TrainDef],
    Field(discriminator="stmt"),
]


class SpecFile(Node):
    """One parsed source file: its statements in source order."""

    path: str
    statements: list[Statement] = []

    def of(self, cls: type[_T]) -> list[_T]:
        """The statements of one class, in order."""
        return [s for s in self.statements if isinstance(s, cls)]


def structure(node: Any) -> Any:
    """The node as plain data with every span removed: what 'the same IR' means.

    Two specs that differ only in layout, comments or front end have equal structures.
    """
    data = node.model_dump() if isinstance(node, BaseModel) else node
    if isinstance(node, SpecFile):
        data.pop("path")  # the same spec may live in a .arch or a .yaml file
    return _drop_spans(data)


def _drop_spans(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_spans(v) for k, v in data.items() if not k.endswith("span")}
    if isinstance(data, list):
        return [_drop_spans(v) for v in data]
    return data
