"""The YAML front end (and its inverse): YAML text ↔ `ir.SpecFile`.

A YAML spec is a list of statements, in the same order and with the same meaning as
in a .arch file:

    - import: lib/resnet.arch
    - block: basic
      params: [c, {stride: 1}]
      body:
        - add:
            - [{"conv3-{c}": {stride: "{stride}", bias: false}, name: conv1},
               {bn: null, name: bn1}, relu]
            - {shortcut: null, name: downsample}
        - relu
    - network: resnet34
      params: [{num_classes: 1000}]
      input: [3, 224, 224]
      body: [...]

An item is a word (`relu`, `conv3-64`, paper notation allowed), or a mapping with one
operation key (a word with its arguments, `group`, a merge, `tap`, `table`) plus
optional `name` and `repeat`. Arguments are a list (positional; `{k: v}` entries are
keyword) or a mapping (keyword). Values: numbers, true/false, null, plain strings, and
`"{expression}"` for arithmetic or parameter names. A YAML list inside a body or a merge
is an unnamed sequence. Diagnostics point at YAML lines and columns.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from archc.compiler import ir, limits
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.limits import LimitExceeded
from archc.compiler.unparse import (
    Notes,
    comments_between,
    place_comments,
    record_spellings,
    span_start,
    spelled_as,
    sugar,
)
from archc.compiler.unparse import expr as expr_text
from archc.layers import MERGES, merge_kind

_ITEM_KEYS = {"name", "repeat"}
_OPS = {"group", *MERGES, "tap", "table", "for", "if", "ref", "->"}
# a table's variant; a `for`'s iterable and body; a merge's arguments (`split`'s sizes)
_MERGE_ARGS = {p for m in MERGES.values() for p in m.params}
_BESIDE_OP = {"variant", "in", "body", *_MERGE_ARGS}


class _Reported(Exception):
    """A problem already recorded as a diagnostic: stop without adding another."""


class _Invalid(Exception):
    def __init__(self, node: yaml.Node, message: str, hint: str | None = None):
        super().__init__(message)
        self.node, self.message, self.hint = node, message, hint


# --------------------------------------------------------------------------- loading


def load_yaml(text: str, path: str, diags: Diagnostics) -> ir.SpecFile | None:
    """Parse a YAML spec into IR; problems become located E004 diagnostics."""
    return _load(text, path, diags, _Reader(path, diags))


def yaml_notes(text: str, path: str, diags: Diagnostics) -> tuple[ir.SpecFile | None, Notes]:
    """The IR of a YAML spec and its notes (see archc/unparse.py): the comments between
    PyYAML's tokens, and each layer key as written (`FC-4096`, `LRN`)."""
    reader = _Reader(path, diags)
    spec = _load(text, path, diags, reader)
    notes = Notes()
    if spec is None:
        return None, notes
    try:
        tokens = [(t.start_mark.index, t.end_mark.index) for t in yaml.scan(text)]
    except yaml.YAMLError:  # pragma: no cover - the text composed above
        tokens = []
    notes.comments = comments_between(text, tokens)
    record_spellings(notes, spec, lambda layer: reader.words.get(span_start(layer.span)))
    return spec, notes


def _load(text: str, path: str, diags: Diagnostics, reader: _Reader) -> ir.SpecFile | None:
    try:
        root = yaml.compose(text, Loader=_DepthLimitedLoader)
    except LimitExceeded as over:
        diags.error("E205", _mark_span(path, over.span), over.message, limits.hint(over.name))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        diags.error(
            "E004",
            ir.Span.model_construct(
                file=path, line=line, column=col, end_line=line, end_column=col + 1
            ),
            f"invalid YAML: {problem}",
            "check the indentation and the quoting",
        )
        return None
    try:
        if root is None:
            return ir.SpecFile.model_construct(path=path, statements=[])
        statements = [reader.statement(n) for n in reader.seq(root, "the top level")]
    except _Invalid as bad:
        diags.error("E004", reader.span(bad.node), bad.message, bad.hint)
        return None
    except LimitExceeded as over:
        diags.error("E205", reader.span(over.span), over.message, limits.hint(over.name))
        return None
    except _Reported:
        return None
    return ir.SpecFile.model_construct(path=path, statements=[s for s in statements if s])


def _mark_span(path: str, mark) -> ir.Span:
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return ir.Span.model_construct(
        file=path, line=line, column=col, end_line=line, end_column=col + 1
    )


class _DepthLimitedLoader(yaml.SafeLoader):
    """PyYAML's composer recurses once per nesting level: stop at the `depth` limit, before
    Python's recursion limit turns deep `[[[...]]]` into a RecursionError."""

    def __init__(self, stream):
        super().__init__(stream)
        self.nesting, self.most = 0, limits.get("depth")

    def compose_node(self, parent, index):
        """Compose one node, counting how deeply it is nested."""
        self.nesting += 1
        try:
            if self.nesting > self.most:
                mark = self.peek_event().start_mark
                raise LimitExceeded(
                    "depth", f"the YAML nests more than {self.most} levels deep", mark
                )
            return super().compose_node(parent, index)
        finally:
            self.nesting -= 1


class _Reader:
    """Walks PyYAML's composed node graph, which keeps line/column marks.

    Aliases make the graph a DAG (or, with an alias inside its own anchor, a cycle), so the
    walk counts the items it has expanded against the `yaml_nodes` limit ("billion laughs")
    and refuses to enter a node it is already inside."""

    def __init__(self, path: str, diags: Diagnostics):
        self.path, self.diags = path, diags
        self.expanded, self.most = 0, limits.get("yaml_nodes")
        self.inside: set[int] = set()  # ids of the container items being read
        self.words: dict[tuple[int, int], str] = {}  # a layer's start → its word as written

    def span(self, node: yaml.Node) -> ir.Span:
        s, e = node.start_mark, node.end_mark
        return ir.Span.model_construct(
            file=self.path,
            line=s.line + 1,
            column=s.column + 1,
            end_line=e.line + 1,
            end_column=e.column + 1,
        )

    # shapes of nodes ---------------------------------------------------------------

    def seq(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise _Invalid(node, f"{what} must be a list")
        return node.value

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise _Invalid(node, f"{what} must be a mapping")
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _Invalid(key, "mapping keys must be plain words")
            out.append((key.value, key, value))
        return out

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise _Invalid(node, f"{what} must be a single value")
        return node.value

    # statements ----------------------------------------------------------------------

    def statement(self, node: yaml.Node):
        fields = {k: (knode, v) for k, knode, v in self.mapping(node, "a statement")}
        span = self.span(node)
        for kind in ("import", "block", "network", "table", "train"):
            if kind in fields:
                return getattr(self, f"st_{kind}")(fields, span)
        raise _Invalid(
            node,
            "unknown statement",
            "a statement starts with import:, block:, network:, table: or train:",
        )

    def _check_fields(self, fields: dict, allowed: set[str]) -> None:
        for key, (knode, _) in fields.items():
            if key not in allowed:
                raise _Invalid(
                    knode,
                    f"unexpected field `{key}`",
                    f"allowed here: {', '.join(sorted(allowed))}",
                )

    def st_import(self, fields: dict, span: ir.Span) -> ir.Import:
        self._check_fields(fields, {"import"})
        return ir.Import.model_construct(path=self.scalar(fields["import"][1], "import"), span=span)

    def st_block(self, fields: dict, span: ir.Span) -> ir.BlockDef:
        self._check_fields(fields, {"block", "params", "outputs", "after", "body"})
        name_node = fields["block"][1]
        outputs = ([self.scalar(n, "an output name").removeprefix("@")
                    for n in self.seq(fields["outputs"][1], "outputs")]
                   if "outputs" in fields else [])
        declared: dict[str, Any] = {"outputs": outputs} if outputs else {}
        return ir.BlockDef.model_construct(
            name=self.scalar(name_node, "a block name"),
            params=self.params(fields),
            **declared,
            after=self.after(fields),
            body=self.body(fields),
            span=span,
            name_span=self.span(name_node),
        )

    def st_network(self, fields: dict, span: ir.Span):
        name_node = fields["network"][1]
        name = self.scalar(name_node, "a network name")
        if "alias" in fields:
            self._check_fields(fields, {"network", "alias", "args"})
            args = self.args(fields["args"][1]) if "args" in fields else []
            return ir.NetworkAlias.model_construct(
                name=name,
                target=self.scalar(fields["alias"][1], "alias"),
                args=args,
                span=span,
                name_span=self.span(name_node),
            )
        self._check_fields(fields, {"network", "params", "input", "after", "body"})
        decl = None
        if "input" in fields:
            node = fields["input"][1]
            decl = ir.InputDecl.model_construct(
                dims=[self.value(d) for d in self.seq(node, "input")], span=self.span(node)
            )
        return ir.NetworkDef.model_construct(
            name=name,
            params=self.params(fields),
            input=decl,
            after=self.after(fields),
            body=self.body(fields),
            span=span,
            name_span=self.span(name_node),
        )

    def st_table(self, fields: dict, span: ir.Span) -> ir.TableDef:
        self._check_fields(fields, {"table", "rows"})
        name_node = fields["table"][1]
        if "rows" not in fields:
            raise _Invalid(name_node, "a table needs `rows:` with one list per configuration")
        rows = [
            ir.TableRow.model_construct(variant=key, items=self.items(value), span=self.span(knode))
            for key, knode, value in self.mapping(fields["rows"][1], "rows")
        ]
        return ir.TableDef.model_construct(
            name=self.scalar(name_node, "a table name"),
            rows=rows,
            span=span,
            name_span=self.span(name_node),
        )

    def st_train(self, fields: dict, span: ir.Span) -> ir.TrainDef:
        self._check_fields(fields, {"train"})
        settings = [
            ir.Setting.model_construct(name=k, value=self.value(v), span=self.span(knode))
            for k, knode, v in self.mapping(fields["train"][1], "train")
        ]
        return ir.TrainDef.model_construct(settings=settings, span=span)

    def params(self, fields: dict) -> list[ir.Param]:
        if "params" not in fields:
            return []
        out = []
        for node in self.seq(fields["params"][1], "params"):
            if isinstance(node, yaml.ScalarNode):
                tensor = node.value.startswith("@")  # `@lo`: a tensor parameter
                flags: dict[str, Any] = {"tensor": True} if tensor else {}
                out.append(ir.Param.model_construct(
                    name=node.value.removeprefix("@"), default=None, **flags,
                    span=self.span(node)))
                continue
            for key, knode, value in self.mapping(node, "a parameter"):
                out.append(
                    ir.Param.model_construct(
                        name=key, default=self.value(value), span=self.span(knode)
                    )
                )
        return out

    def after(self, fields: dict) -> list[ir.After]:
        if "after" not in fields:
            return []
        return [
            ir.After.model_construct(kind=k, items=self.items(v), span=self.span(knode))
            for k, knode, v in self.mapping(fields["after"][1], "after")
        ]

    def body(self, fields: dict) -> list:
        return self.items(fields["body"][1]) if "body" in fields else []

    # items ---------------------------------------------------------------------------

    def items(self, node: yaml.Node) -> list:
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        return [self.item(n) for n in nodes]

    def item(self, node: yaml.Node):
        self.expanded += 1
        if self.expanded > self.most:
            raise LimitExceeded(
                "yaml_nodes",
                f"the YAML expands to more than {self.most:,} items (aliases repeat their "
                "anchor's items)",
                node,
            )
        if isinstance(node, yaml.ScalarNode):
            if _TENSOR.fullmatch(node.value):  # `@a`: continue from a named tensor
                return ir.Ref.model_construct(name=node.value[1:], span=self.span(node))
            return self.word(node.value, None, self.span(node))
        if id(node) in self.inside:
            raise _Invalid(
                node,
                "an alias refers to the anchored item that contains it: the network would "
                "never end",
                "repeat layers with `repeat: N` instead",
            )
        if len(self.inside) >= limits.get("depth"):
            raise LimitExceeded("depth", f"items nest more than {len(self.inside)} levels deep",
                                node)
        self.inside.add(id(node))
        try:
            return self.container_item(node)
        finally:
            self.inside.discard(id(node))

    def container_item(self, node: yaml.Node):
        """A list (an unnamed sequence) or a mapping (one operation with name and repeat)."""
        span = self.span(node)
        if isinstance(node, yaml.SequenceNode):
            return ir.Group.model_construct(items=self.items(node), span=span)
        fields = self.mapping(node, "an item")
        extras = {k: v for k, _, v in fields if k in _ITEM_KEYS}
        ops = [(k, knode, v) for k, knode, v in fields if k not in _ITEM_KEYS | _BESIDE_OP]
        if len(ops) > 1 and _is_layer_word(ops[0][0]):
            key, knode, _ = ops[1]
            raise _Invalid(
                knode,
                f"unexpected key `{key}` beside `{ops[0][0]}`",
                "an item has one operation (a layer, block, group, merge, tap or table) "
                "and only `name` and `repeat` beside it; indent arguments under the layer",
            )
        if len(ops) != 1:
            raise _Invalid(
                node,
                "an item has exactly one operation (a layer, block, group, "
                "merge (concat, add, mul, max, sub, split, ...), tap or table)",
                "besides it, only `name` and `repeat`",
            )
        key, knode, value = ops[0]
        merge = merge_kind(key)
        for k, kn, _ in fields:  # `sizes` beside a merge that takes no sizes, or a layer
            if k in _MERGE_ARGS and (merge is None or k not in merge.params):
                raise _Invalid(kn, f"unexpected key `{k}` beside `{key}`",
                               "only `split` takes `sizes`: `{split: [...], sizes: [16, 48]}`")
        item = self.operation(key, knode, value, node, span)
        updates: dict[str, Any] = {}
        if "name" in extras:
            updates["label"] = self.scalar(extras["name"], "name")
        if "repeat" in extras:
            updates["repeat"] = self.value(extras["repeat"])
        return item.model_copy(update=updates) if updates else item

    def operation(
        self, key: str, knode: yaml.Node, value: yaml.Node, node: yaml.Node, span: ir.Span
    ):
        if key == "group":
            return ir.Group.model_construct(items=self.items(value), span=span)
        merge = merge_kind(key)  # `Concat:` is `concat:`, as layer kinds ignore case
        if merge is not None:
            branches = [self.item(b) for b in self.seq(value, f"`{key}` branches")]
            args = [ir.Arg.model_construct(name=k, value=self.value(v), span=self.span(kn))
                    for k, kn, v in self.mapping(node, "a merge") if k in merge.params]
            return ir.Merge.model_construct(mode=merge.name, branches=branches, args=args,
                                            span=span)
        if key == "tap":
            return ir.Tap.model_construct(head=self.item(value), span=span)
        if key == "for":
            return self.for_item(value, node, span)
        if key == "if":
            fields = {k: v for k, _, v in self.mapping(node, "an if item")}
            return ir.If.model_construct(
                test=self.value(value),
                items=self.items(fields["body"]) if "body" in fields else [], span=span)
        if key == "ref":
            return ir.Ref.model_construct(
                name=self.scalar(value, "a tensor name").removeprefix("@"), span=span)
        if key == "->":
            words = self.seq(value, "names") if isinstance(value, yaml.SequenceNode) else [value]
            return ir.Bind.model_construct(
                names=[self.scalar(w, "a tensor name") for w in words], span=span,
                names_span=[self.span(w) for w in words])
        if key == "table":
            variant = dict((k, v) for k, _, v in self.mapping(node, "a table item")).get("variant")
            if variant is None:
                raise _Invalid(node, "a table item needs `variant:`")
            return ir.TableRef.model_construct(
                table=self.scalar(value, "table"),
                variant=self.scalar(variant, "variant"),
                span=span,
            )
        args = [] if _is_null(value) else self.args(value)
        return self.word(key, args, span)

    def for_item(self, names: yaml.Node, node: yaml.Node, span: ir.Span) -> ir.For:
        """`{for: [t, c], in: "{setting}", body: [...]}`: the .arch `for t, c in setting:`."""
        fields = {k: v for k, _, v in self.mapping(node, "a for item")}
        if "in" not in fields:
            raise _Invalid(node, "a `for` item needs `in:` with what to go through",
                           'for example `in: "{range(1, 7)}"`')
        words = self.seq(names, "`for` names") if isinstance(names, yaml.SequenceNode) else [names]
        return ir.For.model_construct(
            names=[
                [self.scalar(m, "a `for` name") for m in self.seq(n, "`for` names")]
                if isinstance(n, yaml.SequenceNode)
                else self.scalar(n, "a `for` name")
                for n in words
            ],
            iterable=self.value(fields["in"]),
            items=self.items(fields["body"]) if "body" in fields else [],
            span=span,
        )

    def word(self, text: str, args: list[ir.Arg] | None, span: ir.Span) -> ir.Layer:
        """A layer word, with paper notation expanded exactly as the .arch parser does."""
        from archc.compiler.parse import SpecBuilder

        builder = SpecBuilder(self.path, self.diags, origin=span)
        callee, sugar_args = builder.word_text(text, span)
        self.words[(span.line, span.column)] = text
        return ir.Layer.model_construct(
            callee=callee or text, args=[*sugar_args, *(args or [])], span=span, callee_span=span
        )

    def args(self, node: yaml.Node) -> list[ir.Arg]:
        if isinstance(node, yaml.MappingNode):
            return [
                ir.Arg.model_construct(name=k, value=self.value(v), span=self.span(knode))
                for k, knode, v in self.mapping(node, "arguments")
            ]
        if isinstance(node, yaml.ScalarNode):
            return [ir.Arg.model_construct(name=None, value=self.value(node), span=self.span(node))]
        out = []
        for entry in self.seq(node, "arguments"):
            if isinstance(entry, yaml.MappingNode):
                out.extend(self.args(entry))
            else:
                out.append(
                    ir.Arg.model_construct(
                        name=None, value=self.value(entry), span=self.span(entry)
                    )
                )
        return out

    def value(self, node: yaml.Node) -> ir.Expr:
        """A YAML scalar as an expression: numbers, booleans, null, strings, `{expr}`."""
        if isinstance(node, yaml.SequenceNode):
            return ir.Tuple.model_construct(
                items=[self.value(n) for n in node.value], span=self.span(node)
            )
        text = self.scalar(node, "a value")
        span = self.span(node)
        tag = node.tag.rsplit(":", 1)[-1]
        if tag == "int":
            return ir.Num.model_construct(value=int(yaml.safe_load(text)), span=span)
        if tag == "float":
            number = yaml.safe_load(text)
            if number != number or number in (float("inf"), float("-inf")):
                raise _Invalid(node, "numbers must be finite")
            return ir.Num.model_construct(value=float(number), span=span)
        if tag == "bool":
            return ir.Name.model_construct(
                id="true" if yaml.safe_load(text) else "false", span=span
            )
        if tag == "null":
            return ir.Name.model_construct(id="none", span=span)
        if _TENSOR.fullmatch(text):
            return ir.TensorRef.model_construct(id=text[1:], span=span)
        if text.startswith("{") and text.endswith("}"):
            from archc.compiler.parse import parse_expr

            parsed = parse_expr(text[1:-1], span, self.diags)
            if parsed is None:  # parse_expr has reported it; stop reading this file
                raise _Reported()
            return parsed
        return ir.Str.model_construct(value=text, span=span)


_TENSOR = re.compile(r"@[A-Za-z_]\w*")  # a named tensor: `@a`


def _is_layer_word(key: str) -> bool:
    """True for a key that names a layer or block rather than a structure keyword."""
    return key not in _OPS


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


# --------------------------------------------------------------------------- dumping


def dump_yaml(spec: ir.SpecFile, notes: Notes | None = None) -> str:
    """The spec as YAML; `load_yaml` of the result gives the same IR. With `notes`, layers
    are spelled and commented as in the source the notes were read from."""
    with spelled_as(notes):
        data = [_statement(s) for s in spec.statements]
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    if notes is None or not notes.comments:
        return text
    diags = Diagnostics()
    written = load_yaml(text, "<dumped>", diags)
    if written is None or diags.has_errors:  # pragma: no cover - the dump loads
        raise ValueError("the YAML written does not load; this is a bug in archc")
    return place_comments(text, written, spec, notes)


def _value(e: ir.Expr) -> Any:
    if isinstance(e, ir.Tuple):
        return [_value(i) for i in e.items]
    if isinstance(e, ir.Num):
        return e.value
    if isinstance(e, ir.Name) and e.id in ("true", "false"):
        return e.id == "true"
    if isinstance(e, ir.Name) and e.id == "none":
        return None
    if isinstance(e, ir.TensorRef):
        return f"@{e.id}"
    if isinstance(e, ir.Str) and not (e.value.startswith("{") and e.value.endswith("}")):
        return e.value
    return "{" + expr_text(e) + "}"


def _args(args: list[ir.Arg]) -> Any:
    if all(a.name for a in args):
        return {a.name: _value(a.value) for a in args}
    return [{a.name: _value(a.value)} if a.name else _value(a.value) for a in args]


def _item(item) -> Any:
    if isinstance(item, ir.Layer):
        word, rest = sugar(item)
        data: Any = {word: _args(rest)} if rest else word
    elif isinstance(item, ir.Group):
        if item.label is None and item.repeat is None:
            return [_item(i) for i in item.items]  # a plain list is an unnamed sequence
        data = {"group": [_item(i) for i in item.items]}
    elif isinstance(item, ir.Merge):
        data = {item.mode: [_item(b) for b in item.branches],
                **{a.name: _value(a.value) for a in item.args}}
    elif isinstance(item, ir.Tap):
        data = {"tap": _item(item.head)}
    elif isinstance(item, ir.For):
        names: Any = item.names[0] if len(item.names) == 1 else list(item.names)
        data = {"for": names, "in": _value(item.iterable), "body": [_item(i) for i in item.items]}
    elif isinstance(item, ir.If):
        data = {"if": _value(item.test), "body": [_item(i) for i in item.items]}
    elif isinstance(item, ir.Ref):
        data = f"@{item.name}" if item.label is None and item.repeat is None else {
            "ref": item.name}
    elif isinstance(item, ir.Bind):
        data = {"->": item.names[0] if len(item.names) == 1 else list(item.names)}
    else:
        data = {"table": item.table, "variant": item.variant}
    if item.label is None and item.repeat is None:
        return data
    if not isinstance(data, dict):
        data = {data: None}
    if item.label is not None:
        data["name"] = item.label
    if item.repeat is not None:
        data["repeat"] = _value(item.repeat)
    return data


def _params(params: list[ir.Param]) -> list:
    return [("@" if p.tensor else "") + p.name if p.default is None
            else {p.name: _value(p.default)} for p in params]


def _statement(stmt) -> dict:
    if isinstance(stmt, ir.Import):
        return {"import": stmt.path}
    if isinstance(stmt, ir.NetworkAlias):
        return {"network": stmt.name, "alias": stmt.target, "args": _args(stmt.args)}
    if isinstance(stmt, ir.TableDef):
        return {
            "table": stmt.name,
            "rows": {r.variant: [_item(i) for i in r.items] for r in stmt.rows},
        }
    if isinstance(stmt, ir.TrainDef):
        return {"train": {s.name: _value(s.value) for s in stmt.settings}}
    key = "block" if isinstance(stmt, ir.BlockDef) else "network"
    out: dict[str, Any] = {key: stmt.name}
    if stmt.params:
        out["params"] = _params(stmt.params)
    if getattr(stmt, "outputs", None):
        out["outputs"] = [f"@{o}" for o in stmt.outputs]
    if isinstance(stmt, ir.NetworkDef) and stmt.input is not None:
        out["input"] = [_value(d) for d in stmt.input.dims]
    if stmt.after:
        out["after"] = {r.kind: [_item(i) for i in r.items] for r in stmt.after}
    out["body"] = [_item(i) for i in stmt.body]
    return out
