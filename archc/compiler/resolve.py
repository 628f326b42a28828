"""Resolution: IR + parameters → the shape-checked module tree of `graph.py`.

One walk over the selected network expands blocks, repeats, tables and `after` rules,
evaluates every argument, names every submodule (labels, or numbers as nn.Sequential
numbers them), and infers every tensor shape with the registry's rules. Every problem
becomes a diagnostic and the walk goes on, so one run reports them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from archc.compiler import ir, limits
from archc.compiler.diagnostics import Diagnostics, did_you_mean
from archc.compiler.expressions import (
    ERROR,
    FUNCTIONS,
    UNKNOWN,
    Env,
    bind_names,
    evaluate,
    mark_read,
    names_text,
)
from archc.compiler.graph import (
    Call,
    ClassDependence,
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
)
from archc.compiler.heads import mark_class_heads
from archc.compiler.limits import LimitExceeded
from archc.compiler.sources import Program
from archc.layers import (
    INVALID,
    MERGES,
    REGISTRY,
    LayerKind,
    Param,
    Shape,
    ShapeContext,
    ShapeProblem,
    fmt,
    lookup,
    window_out,
)

DEFAULT_INPUT = (3, 224, 224)
_MOST_SUGGESTIONS = 100  # 'did you mean' hints per check; later misspellings get none
_SHORTCUT_PARAMS = {"bn": True, "bias": False, "always": False, "optional": False,
                    "names": None}


@dataclass(frozen=True)
class LayerArg:
    """A layer passed as a block argument (`act=hardswish`, `act=leakyrelu(0.1)`): the call,
    and the caller's names that its arguments are read with."""

    layer: ir.Layer
    env: Env = field(compare=False)

    def __repr__(self) -> str:
        from .unparse import layer_text

        return layer_text(self.layer)


@dataclass
class _Named:
    """A named tensor: its shape, where it is named, and the scopes open when it was."""

    shape: Shape | None
    key: tuple[Any, ...]  # identifies the `-> name` (or `@param`) in the source, for 'never used'
    chain: tuple[Scope, ...]


@dataclass
class _Tensors:
    """The named tensors of one expansion of a body: a block's body is a namespace of its own,
    so a block cannot read its caller's names (pass them as `@` parameters)."""

    bound: dict[str, _Named] = field(default_factory=dict)
    body: list[ir.Item] = field(default_factory=list)  # the items: where later names are found


# what expanding items gives: their ops, and the shape after them (None after an error)
Expanded = tuple[list[Op], Shape | None]


class SetOptionError(ValueError):
    """A `--set NAME=VALUE` whose value cannot be the parameter's (a word for an integer):
    a mistake on the command line, not in the spec, so it is raised rather than reported at
    the line that uses the parameter."""

    def __init__(self, name: str, value: Any, expected: str, default: Any, network: str):
        self.name = name
        super().__init__(
            f"--set {name}={_show(value)}: parameter `{name}` of network `{network}` "
            f"takes {expected} (its default is {_show(default)})"
        )


@dataclass
class _Body:
    """What a body (network or block definition) contributes to items expanded inside it."""

    env: Env
    after: dict[str, list[ir.Item]]
    in_after: bool = False
    tensors: _Tensors = field(default_factory=_Tensors)


@dataclass
class Resolver:
    """Expands one network of a program; see `resolve_network`."""

    program: Program
    diags: Diagnostics
    stack: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    explain: list[tuple[ir.Span, str]] = field(default_factory=list)
    aux: dict[str, Shape | None] = field(default_factory=dict)
    label_span: ir.Span = ir.NOWHERE  # where the label being named is written
    label_uses: dict[tuple[int, str], ir.Span] = field(default_factory=dict)
    bad_labels: set[tuple[int, int]] = field(default_factory=set)  # generated labels reported
    # id(scope) -> (scope, its children's names, how many children they cover); holding the
    # scope keeps its id from being reused by another
    child_names: dict[int, tuple[Scope, set[str], int]] = field(default_factory=dict)
    # (id(scope), path) -> where the first dotted label through it is written: the
    # containers that dotted labels (`convs.0:`) make in a scope
    containers: dict[tuple[int, str], ir.Span] = field(default_factory=dict)
    expanded: int = 0  # items expanded so far, against the `layers` limit
    most_items: int = field(default_factory=lambda: limits.get("layers"))
    suggested: int = 0  # 'did you mean' hints computed so far
    unavailable: list[str] = field(default_factory=list)  # unknown names, an import failed
    open_scopes: list[Scope] = field(default_factory=list)  # being filled, outermost first
    # every `-> name` and `@param` expanded: key -> (name, span, what it is); and those read
    tensor_defs: dict[tuple[Any, ...], tuple[str, ir.Span, str]] = field(default_factory=dict)
    tensor_reads: set[tuple[Any, ...]] = field(default_factory=set)
    extras: Scope | None = None  # the block call just expanded, when it returns several tensors
    # the class count changes the network's structure: a repeat count, an `if` test, a loop's
    # rows, a label or a table's configuration reads `num_classes` and differs at one more
    class_structure: bool = False
    class_scopes: set[int] = field(default_factory=set)  # ids of scopes holding such layers
    input_readers: set[int] = field(default_factory=set)  # ids of blocks reading in_channels...
    # block name -> the parameters some call of it read: a parameter that only a branch not
    # taken by one call reads (`if stride != 1:`) is still used by the other calls
    block_reads: dict[str, set[str]] = field(default_factory=dict)

    # ------------------------------------------------------------------ network

    def network(
        self, name: str | None, overrides: dict[str, Any], input_shape: Shape | None
    ) -> Network | None:
        """Expand the named network (or the first one the root file defines)."""
        net, bound, chosen = self.select(name)
        if net is None:
            return None
        env = self.bind_network(net, bound, overrides)
        shape = self.input_shape(net, env, input_shape)
        root = Scope(
            name="",
            path="",
            kind="network",
            title=net.name,
            span=net.name_span,
            args=dict(env.values),
            in_shape=shape,
        )
        body = _Body(env, self.after_rules(net.after), tensors=_Tensors(body=net.body))
        self.open_scopes = [root]
        try:
            ops, out = self.items(net.body, body, root, shape)
        except LimitExceeded as over:  # stop the walk: going on would allocate without bound
            self.diags.error("E205", over.span, over.message, limits.hint(over.name))
            return None
        root.plan, root.out_shape = Seq(tuple(ops)), out
        self.warn_unused_params(net.params, env.used)
        for block_name, reads in self.block_reads.items():
            self.warn_unused_params(self.program.blocks[block_name].params, reads)
        if not self.diags.has_errors:  # after an error, a body left unexpanded reads nothing
            self.report_unused_tensors()
        if not self.diags.has_errors:  # a misspelt call would also make its block "unused"
            self.warn_unused_definitions()
        train = self.train_settings()
        return Network(
            name=chosen,
            root=root,
            input_shape=shape,
            output_shape=out,
            aux_outputs=self.aux,
            params=dict(env.values),
            train=train,
            explain=self.explain,
            spec_path=self.program.root,
            sources=self.program.sources,
            class_heads=None if self.class_structure or not env.probe
            else mark_class_heads(root, self.class_scopes, self.input_readers),
        )

    def select(self, name: str | None) -> tuple[ir.NetworkDef | None, dict[str, ir.Expr], str]:
        """The network to build, the defaults that aliases rebind, and the name asked for."""
        networks = self.program.networks
        if name is None:
            root = self.program.root_file
            mine = [
                s
                for s in (root.statements if root else [])
                if isinstance(s, ir.NetworkDef | ir.NetworkAlias)
            ]
            if not mine:
                if root is not None:
                    self.diags.error(
                        "E108",
                        _file_span(self.program.root),
                        "this spec defines no network",
                        "add `network NAME:` with an `input` line and layers, "
                        "or check a spec that imports this one",
                    )
                return None, {}, ""
            name = mine[0].name
        chosen = name
        seen: list[str] = []
        bound: dict[str, ir.Expr] = {}
        while True:
            net = networks.get(name)
            if net is None:
                hint = did_you_mean(name, list(networks)) or "networks here: " + ", ".join(networks)
                self.diags.error(
                    "E101", _file_span(self.program.root), f"no network called `{name}`", hint
                )
                return None, {}, ""
            if isinstance(net, ir.NetworkDef):
                return net, bound, chosen
            if name in seen:
                self.diags.error("E107", net.span, f"network alias `{name}` refers to itself")
                return None, {}, ""
            seen.append(name)
            target = networks.get(net.target)
            params = target.params if isinstance(target, ir.NetworkDef) else []
            for i, arg in enumerate(net.args if target is not None else []):
                key = arg.name or (params[i].name if i < len(params) else None)
                if key is None:
                    self.diags.error("E103", arg.span, f"too many arguments for `{net.target}`")
                    continue
                bound.setdefault(key, arg.value)
            name = net.target

    def bind_network(
        self, net: ir.NetworkDef, bound: dict[str, ir.Expr], overrides: dict[str, Any]
    ) -> Env:
        """The network's parameters: defaults, then alias bindings, then --set overrides."""
        env = Env({}, {p.name: p.span for p in net.params})
        names = [p.name for p in net.params]
        for key in list(bound) + list(overrides):
            if key not in names:
                span = bound[key].span if key in bound else net.name_span
                self.diags.error(
                    "E102",
                    span,
                    f"network `{net.name}` has no parameter `{key}`",
                    did_you_mean(key, names) or f"its parameters are: {', '.join(names) or 'none'}",
                )
        for p in net.params:
            if p.name in overrides:
                if p.default is not None:
                    _check_override(net, p.name, overrides[p.name],
                                    evaluate(p.default, env, Diagnostics()))
                env.values[p.name] = overrides[p.name]
            elif p.name in bound:
                env.values[p.name] = evaluate(bound[p.name], env, self.diags)
                self.follow(env, p.name, bound[p.name], env)
            elif p.default is not None:
                env.values[p.name] = evaluate(p.default, env, self.diags)
                self.follow(env, p.name, p.default, env)
            else:
                self.diags.error(
                    "E105",
                    p.span,
                    f"network parameter `{p.name}` has no value",
                    f"give it a default, or pass --set {p.name}=VALUE",
                )
                env.values[p.name] = ERROR
            if p.name == CLASSES and _is_count(env.values[p.name]):
                env.probe[p.name] = env.values[p.name] + 1  # the class count, one more
        return env  # a parameter read by a later default counts as used

    def follow(self, env: Env, name: str, expr: ir.Expr, source: Env) -> None:
        """Note that `name` in `env` follows `num_classes` when `expr` (evaluated in `source`)
        reads a name that does, with its value at one class more."""
        if source.follows(expr):
            env.probe[name] = source.at_probe(expr)

    def changes_with_classes(self, expr: ir.Expr, env: Env, value: Any) -> None:
        """A value that decides the structure (a repeat count, an `if` test): when it reads
        `num_classes` and differs at one class more, the class heads cannot be told."""
        if env.follows(expr) and env.at_probe(expr) != value:
            self.class_structure = True

    def input_shape(self, net: ir.NetworkDef, env: Env, override: Shape | None) -> Shape:
        """The declared (or overridden) input C×H×W."""
        if override is not None:
            return self.within_input_limit(tuple(override), net.name_span)
        if net.input is None:
            self.diags.warning(
                "W304",
                net.name_span,
                f"network `{net.name}` declares no input; assuming {fmt(DEFAULT_INPUT)}",
                "add a line such as `input 3x224x224`",
            )
            return DEFAULT_INPUT
        dims = [evaluate(d, env, self.diags) for d in net.input.dims]
        if len(dims) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims
        ):
            self.diags.error(
                "E204",
                net.input.span,
                "input must be three positive integers C×H×W",
                "for example `input 3x224x224`",
            )
            return DEFAULT_INPUT
        return self.within_input_limit(tuple(dims), net.input.span)

    def within_input_limit(self, shape: Shape, span: ir.Span) -> Shape:
        """`shape`, or the default input with an E205 when a dimension is over the limit (a
        100,000,000-pixel side would make every later count and scan enormous)."""
        most = limits.get("input_size")
        if max(shape) > most:
            self.diags.error(
                "E205", span, f"input {fmt(shape)} has a side over the limit of {most:,}",
                limits.hint("input_size"),
            )
            return DEFAULT_INPUT
        return shape

    def after_rules(self, rules: list[ir.After]) -> dict[str, list[ir.Item]]:
        """`after conv: relu` statements by the canonical kind they follow."""
        table: dict[str, list[ir.Item]] = {}
        for rule in rules:
            kind = lookup(rule.kind)
            if kind is None:
                self.diags.error(
                    "E101",
                    rule.span,
                    f"`after {rule.kind}:` names no layer kind",
                    did_you_mean(rule.kind, list(REGISTRY)),
                )
                continue
            table.setdefault(kind.name, []).extend(rule.items)
        return table

    # ------------------------------------------------------------------ items

    def items(
        self, items: list[ir.Item], body: _Body, scope: Scope, shape: Shape | None
    ) -> Expanded:
        """Expand items in sequence; returns their ops and the final shape."""
        ops: list[Op] = []
        for item in items:
            more, shape = self.item(item, body, scope, shape)
            ops.extend(more)
        return ops, shape

    def item(
        self, item: ir.Item, body: _Body, scope: Scope, shape: Shape | None
    ) -> Expanded:
        """Expand one item (with its repeat and label) into `scope`."""
        self.expanded += 1
        if self.expanded > self.most_items:
            raise LimitExceeded(
                "layers", f"the network expands to more than {self.most_items:,} layers",
                item.span,
            )
        if item.label is not None:  # read by name_for, which runs before any nested item
            self.label_span = item.label_span
            if "{" in item.label:
                item = item.model_copy(update={"label": self.expand_label(item, body.env)})
        if not isinstance(item, ir.Bind):
            self.extras = None  # `-> a, b` names the outputs of the item just before it only
        if item.repeat is not None:
            return self.repeated(item, body, scope, shape)
        if isinstance(item, ir.Bind):
            return self.bind(item, body, scope, shape)
        if isinstance(item, ir.Ref):
            named = self.read_tensor(item.name, item.span, body)
            return [Load(item.name)], (named.shape if named else None)
        if isinstance(item, ir.If):
            return self.sequence([item], item.label, item.span, body, scope, shape, self.when)
        if isinstance(item, ir.Layer):
            return self.layer_or_block(item, body, scope, shape)
        if isinstance(item, ir.Group):
            return self.sequence(item.items, item.label, item.span, body, scope, shape)
        if isinstance(item, ir.TableRef):
            return self.table(item, body, scope, shape)
        if isinstance(item, ir.For):
            return self.sequence([item], item.label, item.span, body, scope, shape, self.loop)
        if isinstance(item, ir.Merge):
            if item.label:
                return self.nested(
                    item.label,
                    item.span,
                    scope,
                    shape,
                    lambda sub: self.merge(item, body, sub, shape),
                )
            return self.merge(item, body, scope, shape)
        return self.tap(item, body, scope, shape)

    def repeated(self, item: ir.Item, body: _Body, scope: Scope, shape: Shape | None
                 ) -> Expanded:
        assert item.repeat is not None  # `item` calls this only for a repeated item
        if isinstance(item, ir.Tap):
            self.diags.error(
                "E204",
                item.repeat.span,
                "a `tap` cannot be repeated",
                "one tap is one auxiliary output; repeat the layers of its head instead",
            )
            return [], shape
        count = evaluate(item.repeat, body.env, self.diags)
        if body.env.probe:
            self.changes_with_classes(item.repeat, body.env, count)
        if count is ERROR:
            count = 1
        elif not isinstance(count, int) or isinstance(count, bool) or count < 0:
            self.diags.error(
                "E204",
                item.repeat.span,
                f"repeat count must be a whole number ≥ 0, got {spelled(count)}",
                "`x0` leaves the item out, as a stage of `n - 1` more blocks does when n is 1",
            )
            count = 1
        if count > self.most_items:  # refused before `[single] * count` allocates it
            self.diags.error(
                "E205", item.repeat.span,
                f"repeat count {count:,} is over the limit of {self.most_items:,} layers",
                limits.hint("layers"),
            )
            return [], None
        if count == 0:  # `x0`: the blocks it would call are not unused definitions
            self.skipped(item, body)
        single = item.model_copy(update={"repeat": None, "label": None})
        return self.sequence([single] * count, item.label, item.span, body, scope, shape)

    def sequence(
        self,
        items: list[ir.Item],
        label: str | None,
        span: ir.Span,
        body: _Body,
        scope: Scope,
        shape: Shape | None,
        expand: Callable[[list[ir.Item], _Body, Scope, Shape | None], Expanded] | None = None,
    ) -> Expanded:
        """Items as a labelled submodule, or spliced into `scope` when unlabelled."""
        expand = expand or self.items
        if label is None:
            return expand(items, body, scope, shape)
        return self.nested(label, span, scope, shape, lambda sub: expand(items, body, sub, shape))

    def loop(self, items: list[ir.Item], body: _Body, scope: Scope, shape: Shape | None
             ) -> Expanded:
        """`for NAMES in ITERABLE:` (the one item of `items`): its body once per value."""
        (item,) = items
        assert isinstance(item, ir.For)  # `item` passes its `for` alone
        values = evaluate(item.iterable, body.env, self.diags)
        if values is ERROR:
            return [], None
        if not isinstance(values, tuple):
            self.diags.error(
                "E104",
                item.iterable.span,
                f"`for` needs a tuple or a range to go through, got {spelled(values)}",
                "for example `for i in range(1, 7):` or `for t, c, n, s in setting:`",
            )
            return [], None
        probes = self.loop_probes(item, body.env, values)
        ops: list[Op] = []
        for value, probe in zip(values, probes):
            names = self.loop_names(item, value)
            if names is None:
                return ops, None
            inner = _Body(body.env.with_loop(names, probe), body.after, body.in_after,
                          body.tensors)
            more, shape = self.items(item.items, inner, scope, shape)
            ops.extend(more)
        return ops, shape

    def loop_probes(self, item: ir.For, env: Env, values: tuple[Any, ...]
                    ) -> list[dict[str, Any]]:
        """Per row, the loop names that follow `num_classes` with their values at one class
        more: the rows of an iterable that reads it, row by row (more or fewer rows there
        change the structure)."""
        if not env.follows(item.iterable):
            return [{}] * len(values)
        probed = env.at_probe(item.iterable)
        if not isinstance(probed, tuple) or len(probed) != len(values):
            self.class_structure = True
            return [{}] * len(values)
        rows: list[dict[str, Any]] = []
        for value, other in zip(values, probed):
            mine, theirs = bind_names(item.names, value), bind_names(item.names, other)
            if mine is None or theirs is None:
                rows.append({})
                continue
            rows.append({k: theirs[k] for k in mine if theirs[k] != mine[k]})
        return rows

    def loop_names(self, item: ir.For, value: Any) -> dict[str, Any] | None:
        """One value of a `for` bound to its names: a row is unpacked into several."""
        bound = bind_names(item.names, value)
        if bound is None:
            self.diags.error(
                "E104",
                item.iterable.span,
                f"`for {names_text(item.names)}` unpacks {len(item.names)} values, "
                f"but a row is {spelled(value)}",
                "give every row of the table one value per name",
            )
        return bound

    def expand_label(self, item: ir.Item, env: Env) -> str | None:
        """`denselayer{i}` → `denselayer3`: a label's `{expression}` parts, evaluated (None,
        so the item is numbered, when a part has no value)."""
        from archc.compiler.parse import parse_expr

        parts, at = [], 0
        label, where = item.label, item.label_span
        assert label is not None  # `item` expands the labels it has
        for start in range(len(label)):
            if label[start] != "{" or start < at:
                continue
            end = label.find("}", start)
            if end < 0:  # a YAML `name:` is any string: `classi{fier` has no closing brace
                self.diags.error("E109", where, f"the `{{` in label `{label}` is never closed",
                                 "close it, as in `denselayer{i + 1}`")
                return None
            parts.append(label[at:start])
            span = where.model_copy(
                update={"column": where.column + start + 1, "end_column": where.column + end}
            )
            expr = parse_expr(label[start + 1 : end], span, self.diags)
            value = ERROR if expr is None else evaluate(expr, env, self.diags)
            if expr is not None:
                self.changes_with_classes(expr, env, value)
            if isinstance(value, bool) or not isinstance(value, int | str):
                if value is not ERROR and (span.line, span.column) not in self.bad_labels:
                    self.bad_labels.add((span.line, span.column))  # once, not once a copy
                    self.diags.error(
                        "E104",
                        span,
                        f"a label's `{{...}}` must give a whole number or a name, "
                        f"got {spelled(value)}",
                        "labels are names: use `//` for whole numbers, `denselayer{i + 1}`",
                    )
                return None
            parts.append(str(value))
            at = end + 1
        parts.append(label[at:])
        return "".join(parts)

    def nested(
        self,
        label: str | None,
        span: ir.Span,
        scope: Scope,
        shape: Shape | None,
        fill: Callable[[Scope], Expanded],
        kind: str = "group",
        title: str = "",
        args: dict[str, Any] | None = None,
    ) -> Expanded:
        """Make a child scope, let `fill` expand into it, and register it."""
        name = self.name_for(label, span, scope)
        sub = Scope(
            name=name,
            path=_join(scope.path, name),
            kind=kind,
            title=title,
            span=span,
            args=args or {},
            in_shape=shape,
        )
        self.open_scopes.append(sub)
        try:
            ops, out = fill(sub)
        finally:
            self.open_scopes.pop()
        sub.plan, sub.out_shape = Seq(tuple(ops)), out
        scope.children.append(sub)
        return [Call(name)], out

    def name_for(self, label: str | None, span: ir.Span, scope: Scope) -> str:
        """The submodule name: the label, or the position as nn.Sequential numbers it."""
        if label is None:
            return str(len(scope.children))
        where = span if self.label_span.file == "<builtin>" else self.label_span
        if "" in label.split("."):  # a YAML `name:` is any string: `convs.` names nothing
            self.diags.error("E104", where, f"the label `{label}` has an empty part",
                             "a dotted label is names joined by `.`, as in `convs.0`")
            return str(len(scope.children))
        first = self.label_uses.setdefault((id(scope), label), where)
        clash = self.path_clash(label, scope)
        if label in self.names_in(scope) or clash is not None:
            message, hint, first = clash or (  # first: the other label, when a path clashes
                f"`{label}` names two submodules of `{scope.path or scope.title}`",
                "labels in one block must differ", first)
            self.diags.error("E111", where, message, hint,
                             notes=(f"first used at {first.file}:{first.line}:{first.column}",))
            return f"{label.replace('.', '_')}_{len(scope.children)}"
        for end in range(len(label)):  # `convs.0` makes the container `convs`
            if label[end] == ".":
                self.containers.setdefault((id(scope), label[:end]), where)
        return label

    def path_clash(self, label: str, scope: Scope) -> tuple[str, str, ir.Span] | None:
        """A dotted label's path against its siblings': (message, hint, the other label's
        place) when `label` runs through a sibling's module (`convs: conv3-64` then
        `convs.0:`) or is a container that dotted labels made (`convs.0:` then `convs:`)."""
        hint = ("a dotted label's path runs only through the containers that dotted labels "
                "make: rename one of the two")
        where = scope.path or scope.title
        made = self.containers.get((id(scope), label))
        if made is not None:
            return (f"`{label}` is the container of a dotted label in `{where}`, "
                    "and cannot be a module too", hint, made)
        names = self.names_in(scope) if "." in label else set()
        for end in range(len(label)):
            if label[end] == "." and label[:end] in names:
                child = scope.child(label[:end])
                what = "layer" if isinstance(child, LayerNode) else "submodule"
                return (f"`{label}` runs through `{label[:end]}`, a {what} of `{where}`", hint,
                        self.label_uses.get((id(scope), label[:end]), child.span))
        return None

    def names_in(self, scope: Scope) -> set[str]:
        """The names of `scope`'s children so far, kept up to date incrementally (a scan per
        label would make a network of n labelled blocks cost n²)."""
        _, names, seen = self.child_names.get(id(scope), (scope, set(), 0))
        names.update(c.name for c in scope.children[seen:])
        self.child_names[id(scope)] = (scope, names, len(scope.children))
        return names

    # ------------------------------------------------------------------ layers and blocks

    def layer_or_block(self, item: ir.Layer, body: _Body, scope: Scope, shape: Shape | None
                       ) -> Expanded:
        passed = self.passed_layer(item, body, scope, shape)
        if passed is not None:
            return passed
        if item.callee in self.program.blocks:
            return self.block(item, body, scope, shape)
        if item.callee == "shortcut":
            self.diags.error(
                "E204",
                item.span,
                "`shortcut` is only meaningful as a branch of `add:` or `concat:`",
                "put it on its own line under `add:`",
            )
            return [], shape
        kind = REGISTRY.get(item.callee) or lookup(item.callee)
        if kind is None and self.program.failed_imports:  # it may be from the failed import:
            self.unavailable.append(item.callee)  # one note on that import, not an E101 each
            return [], None
        if kind is None:
            hint = self.suggest(item.callee) or (
                "known layers: conv, maxpool, avgpool, fc, bn, lrn, relu, ... "
                "(see docs/language.md)"
            )
            where = item.span if item.callee_span.file == "<builtin>" else item.callee_span
            self.diags.error("E101", where, f"unknown layer or block `{item.callee}`", hint)
            return [], None
        return self.layer(kind, item, body, scope, shape)

    def suggest(self, word: str) -> str | None:
        """'did you mean' over blocks and kinds; an alias is offered as its kind's name."""
        import difflib

        self.suggested += 1
        if self.suggested > _MOST_SUGGESTIONS:  # each costs a scan of every name: n² beyond
            return None
        names = {b: b for b in self.program.blocks}
        for alias in _kind_words():
            kind = lookup(alias)
            assert kind is not None  # every word of _kind_words names a kind
            names.setdefault(alias, kind.name)
        close = difflib.get_close_matches(word, list(names), n=6, cutoff=0.6)
        picks = list(dict.fromkeys(names[c] for c in close))[:3]
        return ("did you mean " + " or ".join(f"`{p}`" for p in picks) + "?") if picks else None

    def layer(
        self, kind: LayerKind, item: ir.Layer, body: _Body, scope: Scope, shape: Shape | None
    ) -> Expanded:
        follows: dict[str, Any] = {}
        params = self.bind_layer(kind, item, body.env, follows)
        if follows:  # the class heads' pass walks only the scopes that hold such layers
            self.class_scopes.update(id(s) for s in self.open_scopes)
        name = self.name_for(item.label, item.span, scope)
        out = None
        if params is not None and shape is not None:
            ctx = ShapeContext()
            try:
                out = kind.shape(shape, params, ctx)
            except ShapeProblem as problem:
                self.diags.error(problem.code, item.span, problem.message, problem.hint)
            for code, message, hint in ctx.warnings:
                self.diags.warning(code, item.span, message, hint)
        node = LayerNode(
            name=name,
            path=_join(scope.path, name),
            kind=kind.name,
            params=params or {},
            in_shape=shape,
            out_shape=out,
            span=item.span,
            classes=_class_args(follows, params) if follows else None,
        )
        if out is not None:
            assert shape is not None and params is not None  # an output shape needs both
            node.n_params = kind.count_params(shape, params)
            node.macs = kind.count_macs(shape, out, params)
            self.note_inferred(node)
        scope.children.append(node)
        ops: list[Op] = [Call(name)]
        if not body.in_after and kind.name in body.after:
            follow = _Body(body.env, body.after, in_after=True, tensors=body.tensors)
            more, out = self.items(body.after[kind.name], follow, scope, out)
            ops.extend(more)
        return ops, out

    def note_inferred(self, node: LayerNode) -> None:
        assert node.in_shape is not None  # called for a layer whose shapes are known
        if node.kind == "conv":
            self.explain.append((node.span, f"{node.path}: in_channels = {node.in_shape[0]}"))
        elif node.kind == "fc":
            self.explain.append((node.span, f"{node.path}: in_features = {node.in_shape[0]}"))

    def bind_layer(self, kind: LayerKind, item: ir.Layer, env: Env,
                   follows: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Evaluate and type-check a layer's arguments against its schema. `follows` gets
        the arguments that read `num_classes`, each with its value at one class more."""
        values: dict[str, Any] = {}
        ok = True
        index = -1  # position among the positional arguments
        param: Param | None
        for arg in item.args:
            if arg.name is None:
                index += 1
                if index >= len(kind.params):
                    self.diags.error(
                        "E103",
                        arg.span,
                        f"`{kind.name}` takes at most "
                        f"{len(kind.params)} positional argument"
                        f"{'s' if len(kind.params) != 1 else ''}",
                        _signature_hint(kind),
                    )
                    ok = False
                    continue
                param = kind.params[index]
            else:
                param = kind.param(arg.name)
                if param is None:
                    self.diags.error(
                        "E102",
                        arg.span,
                        f"`{kind.name}` has no parameter `{arg.name}`",
                        did_you_mean(
                            arg.name, [n for p in kind.params for n in (p.name, *p.aliases)]
                        )
                        or _signature_hint(kind),
                    )
                    ok = False
                    continue
            if param.name in values:
                self.diags.error(
                    "E103",
                    arg.span,
                    f"`{param.name}` of `{kind.name}` is given twice",
                    "the short form (e.g. conv3-64) already sets kernel and out",
                )
                ok = False
                continue
            value = evaluate(arg.value, env, self.diags)
            if value is ERROR:
                ok = False
                continue
            checked = param.check(value)
            if checked is INVALID:
                self.diags.error(
                    "E104",
                    arg.value.span,
                    f"`{param.name}` of `{kind.name}` must be "
                    f"{param.expects}, got {spelled(value)}",
                    f"{param.name}: {param.doc}" if param.doc else None,
                )
                ok = False
                continue
            values[param.name] = checked
            if follows is not None and env.follows(arg.value):
                probed = env.at_probe(arg.value)
                follows[param.name] = UNKNOWN if probed is UNKNOWN else param.check(probed)
        for param in kind.params:
            if param.name not in values:
                if param.required:
                    if ok:
                        self.diags.error(
                            "E105",
                            item.span,
                            f"`{kind.name}` needs `{param.name}`",
                            _signature_hint(kind),
                        )
                    ok = False
                else:
                    values[param.name] = param.default
        return values if ok else None

    def block(self, item: ir.Layer, body: _Body, scope: Scope, shape: Shape | None
              ) -> Expanded:
        block = self.program.blocks[item.callee]
        self.used.add(block.name)
        if block.name in self.stack:
            chain = " → ".join(self.stack[self.stack.index(block.name) :] + [block.name])
            self.diags.error(
                "E107",
                item.span,
                f"block `{block.name}` calls itself: {chain}",
                "a block cannot contain itself; repeat it with `x N` instead",
            )
            return [], None
        if len(self.stack) >= limits.get("depth"):
            raise LimitExceeded(
                "depth", f"blocks call blocks more than {len(self.stack)} levels deep", item.span
            )
        env = self.bind_block(block, item, body.env, shape)
        passed = self.tensor_arguments(block, item, body)
        if env is None or passed is None:
            return [], None
        inner = _Body(env, self.after_rules(block.after), tensors=_Tensors(body=block.body))
        self.stack.append(block.name)
        mark = len(self.diags.items)
        called: list[Scope] = []

        def fill(sub: Scope) -> Expanded:
            called.append(sub)
            self.enter_tensor_params(block, passed, inner, sub)
            ops, out = self.items(block.body, inner, sub, shape)
            return self.block_outputs(block, inner, sub, ops, out)

        try:
            result = self.nested(
                item.label, item.span, scope, shape, fill,
                kind="block", title=block.name, args=dict(env.values),
            )
        finally:
            self.stack.pop()
        self.note_call_site(mark, block, item)
        if called and not env.used.isdisjoint(INPUT_NAMES):
            self.input_readers.add(id(called[0]))
        self.block_reads.setdefault(block.name, set()).update(env.used)
        if called and called[0].outputs:
            self.extras = called[0]
        return result

    def bind_block(
        self, block: ir.BlockDef, item: ir.Layer, caller: Env, shape: Shape | None = None
    ) -> Env | None:
        """Evaluate a block call's arguments in the caller's scope and bind its parameters.

        The body (and the defaults) may also read the shape that reaches the call:
        `in_channels`, and `in_height` and `in_width` for an image."""
        names = [p.name for p in block.params]
        tensors = {p.name for p in block.params if p.tensor}
        given: dict[str, Any] = {}
        source: dict[str, ir.Expr] = {}  # the expression of each value given
        ok = True
        positional = 0
        for arg in item.args:
            if arg.name is None:
                if positional >= len(names):
                    self.diags.error(
                        "E103",
                        arg.span,
                        f"`{block.name}` takes {len(names)} argument"
                        f"{'s' if len(names) != 1 else ''}, got more",
                        f"its signature is {_signature(block)}",
                    )
                    ok = False
                    continue
                key = names[positional]
                positional += 1
            elif arg.name not in names:
                self.diags.error(
                    "E102",
                    arg.span,
                    f"block `{block.name}` has no parameter `{arg.name}`",
                    did_you_mean(arg.name, names) or f"its signature is {_signature(block)}",
                )
                ok = False
                continue
            else:
                key = arg.name
            if key in given:
                self.diags.error("E103", arg.span, f"`{key}` is given twice")
                ok = False
                continue
            if key in tensors:  # a named tensor: bound by tensor_arguments, not evaluated
                given[key] = None
                continue
            passed = self.layer_argument(arg.value, caller)
            given[key] = passed if passed is not None else evaluate(arg.value, caller, self.diags)
            if passed is None:
                source[key] = arg.value
        env = Env({}, {p.name: p.span for p in block.params if not p.tensor},
                  implicit=input_names(shape))
        for p in block.params:
            if p.tensor:
                continue
            if p.name in given:
                env.values[p.name] = given[p.name]
                if caller.probe and p.name in source:  # (a guard: most calls have none)
                    self.follow(env, p.name, source[p.name], caller)
            elif p.default is not None:  # `act=relu`: a layer by default
                default = self.layer_argument(p.default, env)
                env.values[p.name] = default or evaluate(p.default, env, self.diags)
                if env.probe and default is None:
                    self.follow(env, p.name, p.default, env)
            else:
                self.diags.error(
                    "E105",
                    item.span,
                    f"`{block.name}` needs argument `{p.name}`",
                    f"its signature is {_signature(block)}",
                )
                ok = False
        if not ok or any(v is ERROR for v in env.values.values()):
            return None
        return env  # a parameter read by a later default counts as used

    # ------------------------------------------------------------------ named tensors

    def bind(self, item: ir.Bind, body: _Body, scope: Scope, shape: Shape | None) -> Expanded:
        """`-> name`: the current tensor is `name` from here on; after a call of a block with
        several outputs, `-> a, b, c` names them in order."""
        first, *more = item.names
        extras = self.extras
        self.extras = None
        if more:
            have = len(extras.outputs) if extras is not None else 0
            if len(more) > have:
                what = (f"block `{extras.title}` returns {have + 1} tensors"
                        if extras is not None else "the item before it gives one tensor")
                self.diags.error(
                    "E103", item.span,
                    f"`-> {', '.join(item.names)}` names {len(item.names)} tensors, but {what}",
                    "name as many tensors as the block declares after `->` in its definition",
                )
                more = more[:have]
            for i, name in enumerate(more):
                assert extras is not None  # names beyond the first only for a block's outputs
                extras.writes[i] = name
                self.define_tensor(name, _name_span(item, i + 1), body, extras.output_shapes[i],
                                   ("bind", i + 1))
        self.define_tensor(first, _name_span(item, 0), body, shape, ("bind", 0))
        return [Save(first)], shape

    def define_tensor(self, name: str, span: ir.Span, body: _Body, shape: Shape | None,
                      part: tuple[Any, ...], what: str = "tensor") -> None:
        """Bind `name` in the body's namespace, in the scope being filled."""
        key = (span.file, span.line, span.column, name, part)
        self.tensor_defs.setdefault(key, (name, span, what))
        body.tensors.bound[name] = _Named(shape, key, tuple(self.open_scopes))

    def read_tensor(self, name: str, span: ir.Span, body: _Body) -> _Named | None:
        """The tensor `@name` reads, made available in the scope being filled: every scope
        between the one it was named in and this one passes it on (a labelled group is a
        module of its own, and gets the tensor as an argument or returns it)."""
        named = body.tensors.bound.get(name)
        if named is None:
            self.unknown_tensor(name, span, body)
            return None
        self.tensor_reads.add(named.key)
        here = self.open_scopes
        common = 0
        while (common < min(len(here), len(named.chain))
               and here[common] is named.chain[common]):
            common += 1
        for inner in named.chain[common:]:  # named inside a group that has been closed
            if name not in inner.outputs:
                inner.outputs.append(name)
                inner.writes.append(name)
                inner.output_shapes.append(named.shape)
        for inner in here[common:]:  # read inside a group that did not name it
            if name not in inner.inputs:
                inner.inputs.append(name)
                inner.reads.append(name)
        return named

    def unknown_tensor(self, name: str, span: ir.Span, body: _Body) -> None:
        """E122 for a name that is only given later (the graph would have a cycle), E120 for
        one that is never given."""
        later = _bound_names(body.tensors.body)
        if name in later:
            self.diags.error(
                "E122", span, f"`@{name}` is read before `-> {name}` names it",
                "a tensor can only be read after it is named: reading it here would make "
                "the graph a cycle; move `-> " + name + "` above this line",
            )
            return
        known = list(body.tensors.bound)
        self.diags.error(
            "E120", span, f"no tensor is named `{name}` here",
            did_you_mean(f"@{name}", [f"@{n}" for n in known])
            or ("tensors named so far: " + ", ".join(f"@{n}" for n in known) if known
                else "name a tensor with `-> " + name + "` after the item that makes it; "
                "a block reads its caller's tensors only through `@` parameters"),
        )

    def tensor_arguments(self, block: ir.BlockDef, item: ir.Layer, body: _Body
                         ) -> dict[str, tuple[str, _Named]] | None:
        """The caller's tensors passed to a block's `@` parameters: param -> (caller's name,
        the tensor); None after an error."""
        if not any(p.tensor for p in block.params):
            return {}
        names = [p.name for p in block.params]
        passed: dict[str, tuple[str, _Named]] = {}
        ok, positional = True, 0
        for arg in item.args:
            if arg.name is None:
                key = names[positional] if positional < len(names) else None
                positional += 1
            else:
                key = arg.name
            param = next((p for p in block.params if p.name == key), None)
            if param is None or not param.tensor:
                continue  # bind_block reports it
            if not isinstance(arg.value, ir.TensorRef):
                self.diags.error(
                    "E104", arg.value.span,
                    f"`{param.name}` of block `{block.name}` is a tensor parameter",
                    "pass a named tensor, such as `@x` (named earlier with `-> x`)",
                )
                ok = False
                continue
            named = self.read_tensor(arg.value.id, arg.value.span, body)
            if named is None:
                ok = False
                continue
            passed[param.name] = (arg.value.id, named)
        for p in block.params:
            if p.tensor and p.name not in passed and ok:
                self.diags.error(
                    "E105", item.span, f"`{block.name}` needs the tensor `@{p.name}`",
                    f"its signature is {_signature(block)}",
                )
                ok = False
        return passed if ok else None

    def enter_tensor_params(self, block: ir.BlockDef, passed: dict[str, tuple[str, _Named]],
                            inner: _Body, sub: Scope) -> None:
        """Bind a block's `@` parameters inside its body, as inputs of the block's module."""
        for p in block.params:
            if p.tensor:
                caller_name, named = passed[p.name]
                sub.inputs.append(p.name)
                sub.reads.append(caller_name)
                self.define_tensor(p.name, p.span, inner, named.shape, ("param",),
                                   what="tensor parameter")

    def block_outputs(self, block: ir.BlockDef, inner: _Body, sub: Scope, ops: list[Op],
                      out: Shape | None) -> Expanded:
        """A block declaring `-> @a, @b` returns a (the main path) and b (an extra output)."""
        if not block.outputs:
            return ops, out
        shapes: list[Shape | None] = []
        for name in block.outputs:
            named = self.read_tensor(name, block.name_span, inner)
            shapes.append(named.shape if named else None)
        first, *more = block.outputs
        for name, shape in zip(more, shapes[1:]):
            sub.outputs.append(name)
            sub.writes.append("")  # the caller's name, given by a `-> a, b` that follows
            sub.output_shapes.append(shape)
        return [*ops, Load(first)], shapes[0]

    def report_unused_tensors(self) -> None:
        """E121 for a tensor that is named but never read: a reference forgotten or misspelt."""
        for key, (name, span, what) in self.tensor_defs.items():
            if key not in self.tensor_reads:
                hint = ("read it with `@" + name + "`, or remove `-> " + name + "`"
                        if what == "tensor" else f"use `@{name}` in the body, or remove it")
                self.diags.error("E121", span, f"{what} `{name}` is never read", hint)

    def when(self, items: list[ir.Item], body: _Body, scope: Scope, shape: Shape | None
             ) -> Expanded:
        """`if TEST:` (the one item of `items`): its items when the test holds."""
        (item,) = items
        assert isinstance(item, ir.If)  # `item` passes its `if` alone
        test = evaluate(item.test, body.env, self.diags)
        if test is ERROR:
            return [], shape
        self.changes_with_classes(item.test, body.env, test)
        if not test:
            self.skipped(item, body)
            return [], shape
        return self.items(item.items, body, scope, shape)

    def skipped(self, item: ir.Item, body: _Body) -> None:
        """An item left out (`x0`, a false `if`): the blocks it would call are not unused
        definitions, the parameters it would read are not unused parameters (no W303 for a
        parameter that only some calls' `if` reads, or that a family's network reads only for
        other members: `if deep: bottleneck(c, base_width)`), and the tensors it would read
        are not unused names."""
        self.used.update(_callees(item))
        mark_read(item, body.env)
        for name in _read_names(item):
            named = body.tensors.bound.get(name)
            if named is not None:
                self.tensor_reads.add(named.key)

    def layer_argument(self, value: ir.Expr, caller: Env) -> LayerArg | None:
        """A block argument that names a layer kind or a block (`hardswish`, or a call such
        as `leakyrelu(0.1)`) rather than a value; None for a value."""
        if isinstance(value, ir.Name) and value.id not in caller.visible():
            name, args = value.id, []
        elif isinstance(value, ir.Call) and value.func not in FUNCTIONS:
            name = value.func
            args = [ir.Arg.model_construct(value=a, span=a.span) for a in value.args]
        else:
            return None
        if name not in self.program.blocks and lookup(name) is None:
            return None
        layer = ir.Layer.model_construct(callee=name, args=args, span=value.span,
                                         callee_span=value.span)
        return LayerArg(layer, caller)

    def passed_layer(self, item: ir.Layer, body: _Body, scope: Scope, shape: Shape | None
                     ) -> Expanded | None:
        """A word in a block body that names a parameter holding a layer (or `none`): the
        layer, with the word's label and arguments; None when the word is no such parameter."""
        if item.callee not in body.env.values or item.callee in self.program.blocks:
            return None
        value = body.env.values[item.callee]
        if value is None and lookup(item.callee) is None:  # `act=none`: no layer here
            body.env.used.add(item.callee)
            return [], shape
        if not isinstance(value, LayerArg):
            return None
        body.env.used.add(item.callee)
        layer = value.layer.model_copy(update={
            "label": item.label, "label_span": item.label_span, "span": item.span,
            "args": [*value.layer.args, *item.args]})
        return self.layer_or_block(layer, _Body(value.env, body.after, body.in_after,
                                                body.tensors), scope, shape)

    def note_call_site(self, mark: int, block: ir.BlockDef, call: ir.Layer) -> None:
        """Tell errors found inside a block's body which call of the block they came from."""
        if mark == len(self.diags.items):
            return  # nothing to annotate: most calls (and quoting the call would cost a scan)
        where = block.span
        text = _source_text(self.program.sources.get(call.span.file), call.span)
        note = f"in the call `{text}` at {call.span.file}:{call.span.line}:{call.span.column}"
        for i in range(mark, len(self.diags.items)):
            d = self.diags.items[i]
            inside = d.span.file == where.file and where.line <= d.span.line <= where.end_line
            if d.is_error and inside and not any(n.startswith("in the call") for n in d.notes):
                self.diags.items[i] = replace(d, notes=(*d.notes, note))

    # ------------------------------------------------------------------ tables

    def table(self, item: ir.TableRef, body: _Body, scope: Scope, shape: Shape | None
              ) -> Expanded:
        table = self.program.tables.get(item.table)
        if table is None:
            self.diags.error(
                "E101",
                item.span,
                f"unknown table `{item.table}`",
                did_you_mean(item.table, list(self.program.tables)),
            )
            return [], None
        self.used.add(table.name)
        if f"table {table.name}" in self.stack:
            self.diags.error(
                "E107",
                item.span,
                f"table `{table.name}` refers to itself",
                "a table row cannot use its own table",
            )
            return [], None
        variants = [r.variant for r in table.rows]
        variant = item.variant
        if variant in body.env.values:
            if variant in body.env.probe and body.env.probe[variant] != body.env.values[variant]:
                self.class_structure = True  # the class count picks the configuration
            variant = body.env.lookup(variant)
        elif variant.startswith(('"', "'")):
            variant = variant[1:-1]
        row = next((r for r in table.rows if r.variant == variant), None)
        if row is None:
            self.diags.error(
                "E110",
                item.span,
                f"table `{table.name}` has no configuration `{variant}`",
                did_you_mean(str(variant), variants)
                or f"its configurations are: {', '.join(variants)}",
            )
            return [], None
        self.stack.append(f"table {table.name}")
        try:
            return self.sequence(row.items, item.label, item.span, body, scope, shape)
        finally:
            self.stack.pop()

    # ------------------------------------------------------------------ merges

    def merge(self, item: ir.Merge, body: _Body, scope: Scope, shape: Shape | None
              ) -> Expanded:
        """Parallel branches on one input; shortcuts are resolved once the others are known."""
        item = item.model_copy(update={"branches": self.present_branches(item, body)})
        branches: list[Op | None] = []
        shapes: list[Shape | None] = []
        shortcuts = []
        sizes = self.merge_sizes(item, body)
        inputs = self.branch_inputs(item, shape, sizes)
        for i, branch in enumerate(item.branches):
            if (
                isinstance(branch, ir.Layer)
                and branch.callee == "shortcut"
                and branch.repeat is None
            ):
                branches.append(None)
                shapes.append(None)
                shortcuts.append((i, branch))
                continue
            ops, out = self.items([branch], body, scope, inputs[i])
            branches.append(_seq(ops))
            shapes.append(out)
        known = [s for s in shapes if s is not None]
        target = known[0] if known else shape
        absent = set()
        for i, branch in shortcuts:
            op, out = self.shortcut(branch, item.mode, body, scope, inputs[i], target)
            if op is None:  # an optional shortcut where shapes differ: no residual at all
                absent.add(i)
            branches[i], shapes[i] = op, out
        if not item.branches:
            self.diags.error("E204", item.span, f"`{item.mode}:` needs at least one branch")
            return [], shape
        if absent:
            keep = [i for i in range(len(branches)) if i not in absent]
            item = item.model_copy(update={"branches": [item.branches[i] for i in keep]})
            branches, shapes = [branches[i] for i in keep], [shapes[i] for i in keep]
        out = self.merged_shape(item, shapes)
        if len(branches) == 1:
            return [branches[0] if branches[0] is not None else Identity()], out
        return [
            Parallel(item.mode, tuple(b if b is not None else Identity() for b in branches),
                     None if sizes is ERROR else sizes)
        ], out

    def merge_sizes(self, item: ir.Merge, body: _Body) -> tuple[int, ...] | None | Any:
        """The channels of each slice a merge states (`split(sizes=(16, 24, 24)):`), None
        where it states none, ERROR after an error: an argument the merge does not take,
        sizes that are not positive integers, or not one per branch."""
        takes = MERGES[item.mode].params
        sizes: Any = None
        for arg in item.args:
            if arg.name not in takes:
                self.diags.error(
                    "E102", arg.span, f"`{item.mode}` has no argument `{arg.name}`",
                    "only `split` takes one: `split(sizes=(16, 24, 24)):`" if not takes
                    else did_you_mean(str(arg.name), list(takes)),
                )
                sizes = ERROR
                continue
            value = evaluate(arg.value, body.env, self.diags)
            if value is ERROR:
                sizes = ERROR
            elif not (isinstance(value, tuple) and value and all(
                    isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
                self.diags.error(
                    "E104", arg.value.span,
                    f"`sizes` must be a tuple of positive channel counts, got {value!r}",
                    "one count per branch: `split(sizes=(16, 24, 24)):`",
                )
                sizes = ERROR
            elif len(value) != len(item.branches):
                self.diags.error(
                    "E204", arg.value.span,
                    f"`{item.mode}` has {len(item.branches)} branches but {len(value)} sizes",
                    "give one size per branch, in the branches' order",
                )
                sizes = ERROR
            elif sizes is None:
                sizes = value
        return sizes

    def present_branches(self, item: ir.Merge, body: _Body) -> list[ir.Item]:
        """The branches that exist: an `if` branch whose test fails is left out; a branch
        repeated zero times is an error (it would silently be an identity branch)."""
        present = []
        for branch in item.branches:
            if isinstance(branch, ir.If) and branch.repeat is None and branch.label is None:
                test = evaluate(branch.test, body.env, self.diags)
                self.changes_with_classes(branch.test, body.env, test)
                if test is ERROR or not test:
                    self.skipped(branch, body)
                    continue
                inner = branch.items
                branch = inner[0] if len(inner) == 1 else ir.Group.model_construct(
                    items=inner, span=branch.span)
            elif branch.repeat is not None:
                count = evaluate(branch.repeat, body.env, Diagnostics())  # reported later
                if count == 0 and not isinstance(count, bool):
                    self.diags.error(
                        "E204", branch.repeat.span,
                        f"a branch of `{item.mode}:` repeated 0 times",
                        "it would be an identity branch; to leave a branch out, write "
                        "`if COND:` before it, and for an identity write `shortcut`",
                    )
                    self.skipped(branch, body)
                    continue
            present.append(branch)
        return present

    def branch_inputs(self, item: ir.Merge, shape: Shape | None, sizes: Any = None
                      ) -> list[Shape | None]:
        """Each branch's input: the merge's input, or for `split` a slice of its channels
        (the stated `sizes`, unless they are ERROR)."""
        n = len(item.branches)
        if shape is None or sizes is ERROR:
            return [None] * n
        try:
            return list(MERGES[item.mode].branch_inputs(shape, n, sizes))
        except ShapeProblem as problem:
            where = item.args[0].span if sizes is not None else item.span
            self.diags.error(problem.code, where, problem.message, problem.hint)
            return [None] * n

    def merged_shape(self, item: ir.Merge, shapes: list[Shape | None]) -> Shape | None:
        """The merge's output shape by its rule in the merge table; None after an error."""
        known = [s for s in shapes if s is not None]
        if len(known) < len(shapes):
            return None
        try:
            return MERGES[item.mode].shape(known)
        except ShapeProblem as problem:
            notes = tuple(
                f"branch {i + 1} ({_first_line(b.span)}) gives {fmt(s)}"
                for i, (b, s) in enumerate(zip(item.branches, shapes))
            )
            self.diags.error(problem.code, item.span, problem.message, problem.hint, notes)
            return None

    def shortcut(
        self,
        branch: ir.Layer,
        mode: str,
        body: _Body,
        scope: Scope,
        shape: Shape | None,
        target: Shape | None,
    ) -> tuple[Op | None, Shape | None]:
        """Identity when shapes agree, else a 1×1 projection (conv, then bn) that fits."""
        opts = self.shortcut_options(branch, body.env)
        if shape is None or target is None or opts is None:
            return Identity(), target
        if opts["optional"] and mode == "add" and shape != target:
            where = _join(scope.path, branch.label or "shortcut")
            self.explain.append(
                (branch.span, f"{where}: absent ({fmt(shape)} vs {fmt(target)}): no residual")
            )
            return None, None
        if mode != "add" or (shape == target and not opts["always"]):
            self.explain.append(
                (
                    branch.span,
                    f"{_join(scope.path, branch.label or 'shortcut')}: identity ({fmt(shape)})",
                )
            )
            return Identity(), shape
        stride = self.projection_stride(branch, shape, target)
        if stride is None or len(shape) != 3:
            return Identity(), None
        conv = ir.Layer.model_construct(
            callee="conv",
            span=branch.span,
            args=[
                ir.Arg.model_construct(name="out", value=ir.Num.model_construct(value=target[0])),
                ir.Arg.model_construct(name="kernel", value=ir.Num.model_construct(value=1)),
                ir.Arg.model_construct(name="stride", value=ir.Num.model_construct(value=stride)),
                ir.Arg.model_construct(
                    name="bias",
                    value=ir.Name.model_construct(id="true" if opts["bias"] else "false"),
                ),
            ],
        )
        parts: list[ir.Item] = (
            [conv, ir.Layer.model_construct(callee="bn", span=branch.span)]
            if opts["bn"]
            else [conv]
        )
        self.explain.append(
            (
                branch.span,
                f"{_join(scope.path, branch.label or 'shortcut')}: "
                f"projection conv1×1/{stride} {shape[0]}→{target[0]}"
                + (" + bn" if opts["bn"] else "")
                + f" ({fmt(shape)} → {fmt(target)})",
            )
        )
        plain = _Body(body.env, {}, in_after=True, tensors=body.tensors)
        if opts["names"] is not None:  # timm's `downsample.1`, `downsample.2`
            if len(opts["names"]) != len(parts):
                self.diags.error(
                    "E104", branch.span,
                    f"`names` gives {len(opts['names'])} names for the {len(parts)} parts of "
                    "the projection", "name the conv and, unless bn=false, the bn: (1, 2)",
                )
                return Identity(), None
            parts = [p.model_copy(update={"label": n}) for p, n in zip(parts, opts["names"])]
            return _seq(self.sequence(parts, branch.label or str(len(scope.children)),
                                      branch.span, plain, scope, shape)[0]), target
        if len(parts) == 1:
            ops, out = self.items(
                [conv.model_copy(update={"label": branch.label})], plain, scope, shape
            )
        else:
            ops, out = self.sequence(
                parts, branch.label or str(len(scope.children)), branch.span, plain, scope, shape
            )
        return _seq(ops), out

    def shortcut_options(self, branch: ir.Layer, env: Env) -> dict[str, Any] | None:
        opts: dict[str, Any] = dict(_SHORTCUT_PARAMS)
        for arg in branch.args:
            if arg.name is None:
                self.diags.error(
                    "E103",
                    arg.span,
                    "`shortcut` takes only named options",
                    "write shortcut(bn=false), shortcut(bias=true) or shortcut(always=true)",
                )
                return None
            if arg.name not in opts:
                self.diags.error(
                    "E102",
                    arg.span,
                    f"`shortcut` has no parameter `{arg.name}`",
                    "shortcut takes bn=, bias=, always= and optional= (all true/false), "
                    "and names=",
                )
                return None
            value = evaluate(arg.value, env, self.diags)
            if arg.name == "names":  # the names of the projection's parts: conv, then bn
                names = value if isinstance(value, tuple) else (value,)
                if not all(isinstance(n, str | int) and not isinstance(n, bool) for n in names):
                    self.diags.error("E104", arg.value.span,
                                     "`names` must be names or numbers, such as (1, 2)")
                    return None
                opts["names"] = tuple(str(n) for n in names)
                continue
            if not isinstance(value, bool):
                self.diags.error("E104", arg.value.span, f"`{arg.name}` must be true or false")
                return None
            opts[arg.name] = value
        return opts

    def projection_stride(self, branch: ir.Layer, shape: Shape, target: Shape) -> int | None:
        if len(shape) == 3 and len(target) == 3:
            for stride in range(1, shape[1] + 1):
                if (
                    window_out(shape[1], 1, stride, 0) == target[1]
                    and window_out(shape[2], 1, stride, 0) == target[2]
                ):
                    return stride
        self.diags.error(
            "E203",
            branch.span,
            f"no 1×1 projection maps {fmt(shape)} to {fmt(target)}",
            "the other branches must shrink height and width by the same whole factor",
        )
        return None

    # ------------------------------------------------------------------ taps

    def tap(self, item: ir.Tap, body: _Body, scope: Scope, shape: Shape | None) -> Expanded:
        if scope.kind != "network":
            self.diags.error(
                "E204",
                item.span,
                "a `tap` must sit in the network body",
                "auxiliary heads branch off the main path of the network",
            )
            return [], shape
        head = item.head.model_copy(update={"label": item.label, "label_span": item.label_span})
        if isinstance(head, ir.Layer) and head.callee not in self.program.blocks:
            head = ir.Group.model_construct(items=[item.head], label=item.label, span=item.span)
        ops, out = self.items([head], body, scope, shape)
        name = scope.children[-1].name if scope.children else "aux"
        self.aux[name] = out
        return [TapOut(_seq(ops), name)], shape

    # ------------------------------------------------------------------ warnings and train

    def warn_unused_params(self, params: list[ir.Param], used: set[str]) -> None:
        for p in params:
            if p.name not in used and not p.tensor:  # an unread tensor is E121
                self.diags.warning(
                    "W303",
                    p.span,
                    f"parameter `{p.name}` is never used",
                    "remove it, or use it in the body",
                )

    def warn_unused_definitions(self) -> None:
        root = self.program.root
        used = self.used | self.reached_by_other_networks()
        for kind, table in (("block", self.program.blocks), ("table", self.program.tables)):
            for name, definition in table.items():
                if name not in used and definition.span.file == root:
                    self.diags.warning(
                        "W302",
                        definition.name_span,
                        f"{kind} `{name}` is never used",
                        "remove it, or call it",
                    )

    def reached_by_other_networks(self) -> set[str]:
        """Blocks and tables that any network of the checked file calls, directly or through
        blocks: in a family spec, mobilenet_v3's blocks are not unused when mobilenet_v2 is
        the one checked."""
        root = self.program.root_file
        networks = [s for s in (root.statements if root else []) if isinstance(s, ir.NetworkDef)]
        frontier = set().union(set(), *(_callees(i) for n in networks for i in n.body))
        reached: set[str] = set()
        while frontier:
            name = frontier.pop()
            if name in reached:
                continue
            reached.add(name)
            block, table = self.program.blocks.get(name), self.program.tables.get(name)
            rows = table.rows if table else []
            items = block.body if block else [i for row in rows for i in row.items]
            frontier |= set().union(set(), *(_callees(i) for i in items))
        return reached

    def train_settings(self) -> dict[str, Any]:
        env = Env({})
        values = {}
        for name, setting in self.program.train.items():
            value = evaluate(setting.value, env, self.diags)
            if value is not ERROR:
                values[name] = value
        return values


# --------------------------------------------------------------------------- helpers

CLASSES = "num_classes"  # the network parameter the classifier heads follow


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _class_args(follows: dict[str, Any], params: dict[str, Any] | None) -> ClassDependence:
    """A layer's dependence on `num_classes` through its arguments (`follows`: each with its
    value at one class more); its input at one class more is filled in by `heads`."""
    probe = None
    if params is not None and not any(v is UNKNOWN or v is INVALID for v in follows.values()):
        probe = {**params, **follows}
    return ClassDependence(frozenset(follows), probe, None)


def _check_override(net: ir.NetworkDef, name: str, value: Any, default: Any) -> None:
    """Raise SetOptionError when a --set value has another type than the parameter's
    default: a number where a number is expected, true/false where a flag is."""
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:  # a word, a tuple, or a default that did not evaluate: the spec's checks decide
        return
    if not ok:
        raise SetOptionError(name, value, expected, default, net.name)


def _callees(item: ir.Item) -> set[str]:
    """Every block or layer name an item calls, however deeply nested."""
    if isinstance(item, ir.Layer):
        return {item.callee}
    if isinstance(item, ir.Tap):
        return _callees(item.head)
    if isinstance(item, ir.TableRef):
        return {item.table}
    nested = getattr(item, "items", None) or getattr(item, "branches", None) or []
    return set().union(*(_callees(i) for i in nested))


def _name_span(item: ir.Bind, index: int) -> ir.Span:
    """Where the `index`-th name of `-> a, b` is written (the whole arrow without spans)."""
    return item.names_span[index] if index < len(item.names_span) else item.span


def _bound_names(items: list[ir.Item]) -> set[str]:
    """Every name a `-> name` in these items gives, however deeply nested (not in blocks)."""
    names: set[str] = set()
    for item in items:
        if isinstance(item, ir.Bind):
            names.update(item.names)
        elif isinstance(item, ir.Tap):
            names |= _bound_names([item.head])
        else:
            names |= _bound_names(getattr(item, "items", None) or getattr(item, "branches", None)
                                  or [])
    return names


def _read_names(item: ir.Item) -> set[str]:
    """Every `@name` an item reads, however deeply nested (block arguments included)."""
    if isinstance(item, ir.Ref):
        return {item.name}
    if isinstance(item, ir.Layer):
        return {a.value.id for a in item.args if isinstance(a.value, ir.TensorRef)}
    if isinstance(item, ir.Tap):
        return _read_names(item.head)
    nested = getattr(item, "items", None) or getattr(item, "branches", None) or []
    return set().union(set(), *(_read_names(i) for i in nested))


def input_names(shape: Shape | None) -> dict[str, Any]:
    """What a block body knows of its input: `in_channels` (features of a flat tensor),
    `in_height`, `in_width`. Unknown after an upstream error, and then quietly so."""
    if shape is None:
        return dict.fromkeys(INPUT_NAMES, ERROR)
    return dict(zip(INPUT_NAMES, shape))


INPUT_NAMES = ("in_channels", "in_height", "in_width")


def _signature(block: ir.BlockDef) -> str:
    """`unit(c, stride=1)`: a block's signature with its defaults, as written."""
    from archc.compiler.unparse import expr

    parts = [
        p.name + (f"={expr(p.default)}" if p.default is not None else "") for p in block.params
    ]
    return f"{block.name}({', '.join(parts)})"


def _signature_hint(kind: LayerKind) -> str:
    parts = [p.name if p.required else f"{p.name}={_show(p.default)}" for p in kind.params]
    return f"usage: {kind.name}({', '.join(parts)})"


def spelled(value: Any) -> str:
    """A value as a spec writes it: true, none, "D", (1, 2)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "(" + ", ".join(spelled(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def _show(value: Any) -> str:
    """A default in a usage hint: symbolic strings such as same stay bare."""
    return value if isinstance(value, str) else spelled(value)


def _kind_words() -> list[str]:
    from archc.layers import kind_names

    return kind_names()


def _source_text(text: str | None, span: ir.Span) -> str:
    """The source a one-line span covers (or its first line)."""
    lines = (text or "").splitlines()
    if not 1 <= span.line <= len(lines):
        return "?"
    line = lines[span.line - 1]
    end = span.end_column - 1 if span.end_line == span.line else len(line)
    return line[span.column - 1 : end].strip()


def _file_span(path: str) -> ir.Span:
    """A span for a problem with the whole file (line 0: no source line is quoted)."""
    return ir.Span.model_construct(file=path, line=0, column=0, end_line=0, end_column=0)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _seq(ops: list[Op]) -> Op:
    if len(ops) == 1:
        return ops[0]
    return Seq(tuple(ops)) if ops else Identity()


def _first_line(span: ir.Span) -> str:
    return f"line {span.line}"
