"""The graphviz backend: a checked network as a diagram that reads like a paper's figure.

`to_dot` builds DOT source with the `graphviz` package (it never runs `dot`):

* one node per layer, coloured by its legend group in the registry, labelled with the
  kind, the key hyper-parameters and the parameter count; every edge carries the
  tensor shape, as the papers write it (64×56×56);
* blocks and labelled groups are clusters down to `depth` levels of nesting; a scope at
  that level is one node, so ResNet-152 stays a column of 50 blocks, not 500 layers;
* a scope at that level that runs one block several times over, each copy built the same
  (a transformer's encoder layers, a Swin stage) is drawn as the papers draw it: the block
  once, its inside in a cluster titled `encoder_block × 12`;
* parallel branches fan out from one node and meet at an explicit merge node (`concat`
  or a `+` circle); identity shortcuts are dashed bypass edges, projections sit on the
  side of the block;
* auxiliary heads (taps) leave the main path by a dotted edge and end in their own
  output node, marked "training only".

Node ids are module paths, so the source is stable and golden files can pin it.
`render` writes the source (.dot) or runs the real `dot` (.svg, .png, .pdf);
`table_dot` draws a spec's configuration table (VGG's Table 1).
"""

from __future__ import annotations

import difflib
import html
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import graphviz

from archc.backends.summary import (
    compact,
    layer_text,
    module_depths,
    scope_heading,
    scope_title,
)
from archc.compiler import ir
from archc.compiler.graph import (
    Call,
    Identity,
    LayerNode,
    Load,
    Module,
    Network,
    Op,
    Parallel,
    Save,
    Scope,
    Seq,
    TapOut,
    takes_tensors,
)
from archc.layers import MERGES, REGISTRY, Shape, ShapeProblem, Style, fmt, lookup

FONT = "Helvetica"
_RENDERED = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
_COLLAPSED = Style("block (collapsed)", "#fff2b3", "box3d")
_COLLAPSED_MARGIN = "0.12,0.07"  # box3d draws its depth inside the box: leave room
_MERGE = Style("merge", "#ffffff", "circle")
_SHORTCUT = (("style", "dashed"), ("color", "#666666"), ("weight", "0"))
_TAP = (("style", "dotted"), ("penwidth", "1.6"), ("weight", "0"))
_GATE = (("color", "#b03a2e"), ("penwidth", "1.6"), ("arrowhead", "odot"))  # scales a mul
_NAMED = (("color", "#2a6fb0"), ("fontcolor", "#2a6fb0"))  # a named tensor read by `@name`
_CLUSTER_FILLS = ("#f3f6fa", "#e8edf3", "#dde4ec")  # one shade deeper per nesting level
_RECIPE_ITEMS = 4  # a collapsed node lists at most this many layers or blocks


class DotNotFound(Exception):
    """graphviz's `dot` program is not on PATH, so only .dot output is possible."""


class DotFailed(Exception):
    """graphviz's `dot` ran and failed (a crash, a signal, a broken install): one line."""


class DrawingTooLarge(Exception):
    """More boxes than graphviz lays out in reasonable time; the .dot source is still fine."""


# graphviz's layout grows much faster than the node count: 5,000 boxes take about a minute,
# 100,000 would run for hours. Refused up front, before `dot` starts.
MOST_RENDERED_NODES = 5_000


# --------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class _Port:
    """The node whose output is the current tensor, and the style of edges that leave it."""

    node: str
    shape: Shape | None
    attrs: tuple[tuple[str, str], ...] = ()


def to_dot(net: Network, depth: int | None = 2) -> str:
    """DOT source for `net`; scopes nested `depth` levels deep are drawn as one node.

    `depth=None` picks the deepest view (2, else 1) that stays readable: at most
    `READABLE_NODES` boxes, so ResNet-152 shows its stages as "[bottleneck] ×36" boxes.
    """
    if depth is not None:
        return _Drawing(net, depth).source()
    source = _Drawing(net, 2).source()
    if _node_count(source) <= READABLE_NODES:
        return source
    return _Drawing(net, 1).source()


READABLE_NODES = 90


def _node_count(source: str) -> int:
    """Node statements in DOT source (edges and attribute lines excluded)."""
    return sum(1 for line in source.splitlines() if "[label=" in line and "->" not in line)


class _Drawing:
    """Walks the plan once, adding nodes to clusters and collecting the edges."""

    def __init__(self, net: Network, depth: int):
        self.net, self.depth = net, depth
        self.levels = module_depths(net)  # in scopes: a dotted label (`a.b:`) is one level
        self.graph = graphviz.Digraph(
            _dot_id(net.name),
            graph_attr={
                "rankdir": "TB",
                "newrank": "true",
                "nodesep": "0.25",
                "ranksep": "0.3",
                "fontname": FONT,
                "fontsize": "11",
                "labelloc": "t",
                "label": f"{net.name}: {fmt(net.input_shape)} → {fmt(net.output_shape)}",
            },
            node_attr={
                "fontname": FONT,
                "fontsize": "10",
                "style": "filled",
                "margin": "0.08,0.03",
                "height": "0.3",
                "penwidth": "0.8",
            },
            edge_attr={
                "fontname": FONT,
                "fontsize": "8",
                "arrowsize": "0.6",
                "color": "#333333",
                "fontcolor": "#555555",
            },
        )
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        self.legend: dict[str, Style] = {}
        self.merges: dict[str, int] = {}
        self.tensors: dict[int, dict[str, _Port]] = {}  # id(scope) → its named tensors' ports

    def source(self) -> str:
        """Draw input, plan, outputs and legend; the edges go last, at the top level."""
        g = self.graph
        g.node(
            "input",
            f"input\\n{fmt(self.net.input_shape)}",
            shape="box",
            style="rounded,filled",
            fillcolor="#ffffff",
        )
        tail = self.op(g, self.net.root, self.net.root.plan, _Port("input", self.net.input_shape))
        g.node(
            "output",
            f"output\\n{fmt(self.net.output_shape)}",
            shape="box",
            style="rounded,filled",
            fillcolor="#ffffff",
        )
        self.edge(tail, "output")
        self.add_legend()
        labelled: set[tuple[str, str]] = set()
        for src, dst, attrs in self.edges:
            # A tensor that fans out is labelled once; shortcut and tap edges carry the
            # same tensor as the main edge beside them, so their style says enough.
            key = (src, attrs.get("label", ""))
            if "style" in attrs or key in labelled:
                attrs.pop("label", None)
            labelled.add(key)
            g.edge(src, dst, **attrs)
        return g.source

    # ------------------------------------------------------------------ plan ops

    def op(self, g: graphviz.Digraph, scope: Scope, op: Op, tail: _Port) -> _Port:
        """Draw `op` of `scope` from `tail`; returns the port of its result."""
        if isinstance(op, Call):
            return self.call(g, scope.child(op.child), tail, scope)
        if isinstance(op, Seq):
            for inner in op.ops:
                tail = self.op(g, scope, inner, tail)
            return tail
        if isinstance(op, Parallel):
            inputs = self.split(g, scope, op, tail)
            ports = [self.op(g, scope, branch, port) for branch, port in zip(op.branches, inputs)]
            return self.merge(g, scope, op.mode, ports)
        if isinstance(op, TapOut):
            self.tap(g, scope, op, tail)
            return tail
        if isinstance(op, Save):  # `-> name`: the tensor is drawn where it is made
            self.tensors.setdefault(id(scope), {})[op.name] = replace(tail, attrs=())
            return tail
        if isinstance(op, Load):  # `@name`: an edge from where the tensor was made
            return replace(self.tensors[id(scope)][op.name], attrs=_NAMED)
        assert isinstance(op, Identity)
        return replace(tail, attrs=_SHORTCUT)  # an identity branch: a bypass edge

    def call(self, g: graphviz.Digraph, module: Module, tail: _Port,
             caller: Scope | None = None) -> _Port:
        """A layer node, a cluster for a shallow scope, or one node for a deep one."""
        if isinstance(module, LayerNode):
            style = REGISTRY[module.kind].style
            self.node(g, module.path, _layer_label(module), style)
            self.edge(tail, module.path)
            return _Port(module.path, module.out_shape)
        outer = self.tensors.setdefault(id(caller), {})
        inner = self.tensors[id(module)] = {
            name: outer[read] for name, read in zip(module.inputs, module.reads)}
        if self.levels[module.path] < self.depth:
            port = self.cluster(g, module, tail)
        elif copies := _repeats(module):
            port = self.repeated(g, module, copies, tail)
        else:
            port = self.collapsed(g, module, tail)
            for name in module.inputs:  # the tensors it reads come into its one node
                self.edge(replace(inner[name], attrs=_NAMED), module.path)
            inner.update((name, _Port(module.path, shape))
                         for name, shape in zip(module.outputs, module.output_shapes))
        outer.update((write, inner[name]) for write, name in zip(module.writes, module.outputs)
                     if write and name in inner)
        return port

    def cluster(self, g: graphviz.Digraph, scope: Scope, tail: _Port) -> _Port:
        """A scope drawn inside a titled box."""
        level = self.levels[scope.path]
        fill = _CLUSTER_FILLS[min(level, len(_CLUSTER_FILLS)) - 1]
        with g.subgraph(name=f"cluster_{scope.path}") as sub:
            sub.attr(
                label=scope_heading(scope),
                labeljust="l",
                style="rounded,filled",
                fillcolor=fill,
                color="#8899aa" if scope.kind == "block" else "#aab4c0",
                fontname=FONT,
                fontsize="10",
                margin="8",
            )
            if scope.path in self.net.aux_outputs:
                sub.attr(labelloc="b")  # the dotted edge comes in at the top
            return self.op(sub, scope, scope.plan, tail)

    def repeated(self, g: graphviz.Digraph, scope: Scope, copies: list[Scope],
                 tail: _Port) -> _Port:
        """A run of equal blocks drawn once: the first copy's inside, in a cluster titled
        with the block and how many times it runs (the ViT paper's `L ×`)."""
        first = copies[0]
        level = self.levels[scope.path]
        params = sum(layer.n_params for layer in _all_layers(scope))
        with g.subgraph(name=f"cluster_{scope.path}") as sub:
            sub.attr(
                label=_repeat_label(scope, copies, params),
                labeljust="l",
                style="rounded,filled",
                fillcolor=_CLUSTER_FILLS[min(level, len(_CLUSTER_FILLS)) - 1],
                color="#8899aa",
                penwidth="1.6",  # heavier than a cluster drawn once
                fontname=FONT,
                fontsize="10",
                margin="8",
            )
            self.tensors[id(first)] = {}
            return self.op(sub, first, first.plan, tail)

    def collapsed(self, g: graphviz.Digraph, scope: Scope, tail: _Port) -> _Port:
        """A deep scope as one node; a residual block keeps its shortcut and `+` visible."""
        parts = _residual(scope)
        body = parts[0] if parts else scope.plan
        drawn = _layers(scope, body)
        # a residual block's projection gets its own box below: count it there only
        params = sum(layer.n_params for layer in (drawn if parts else _all_layers(scope)))
        self.node(
            g,
            scope.path,
            _collapsed_label(scope, drawn, params),
            _COLLAPSED,
            margin=_COLLAPSED_MARGIN,
        )
        self.edge(tail, scope.path)
        port = _Port(scope.path, scope.out_shape)
        if parts is None:
            return port
        _, shortcuts, after = parts
        ports = [port] + [
            self.shortcut(g, scope, branch, tail, i if len(shortcuts) > 1 else 0)
            for i, branch in enumerate(shortcuts, 1)
        ]
        merge = f"{scope.path}/add"
        self.merge_node(g, merge, "add", tuple(layer.kind for layer in after))
        for port in ports:
            self.edge(port, merge)
        return _Port(merge, scope.out_shape)

    def shortcut(
        self, g: graphviz.Digraph, scope: Scope, branch: Op, tail: _Port, number: int
    ) -> _Port:
        """A collapsed block's shortcut: a bypass edge, or its projection on the side."""
        if isinstance(branch, Identity):
            return replace(tail, attrs=_SHORTCUT)
        node = f"{scope.path}/shortcut{number or ''}"
        self.node(
            g, node, _projection_label(_layers(scope, branch)), _COLLAPSED, margin=_COLLAPSED_MARGIN
        )
        self.edge(replace(tail, attrs=_SHORTCUT), node)
        return _Port(node, scope.out_shape, _SHORTCUT)

    def split(self, g: graphviz.Digraph, scope: Scope, op: Parallel, tail: _Port) -> list[_Port]:
        """The branches' inputs: `tail` each, or after a `split` node, a slice each."""
        n = len(op.branches)
        if not MERGES[op.mode].splits:
            return [tail] * n
        node = self.merge_name(scope, "split")
        label = f"{op.mode} ÷{n}" if op.sizes is None else f"{op.mode} " + "|".join(
            map(str, op.sizes))  # `split 16|24|24`: the stated slices
        self.merge_node(g, node, "split", label=label)
        self.edge(tail, node)
        try:
            shapes = (MERGES[op.mode].branch_inputs(tail.shape, n, op.sizes) if tail.shape
                      else [None] * n)
        except ShapeProblem:
            shapes = [None] * n
        return [_Port(node, shape) for shape in shapes]

    def merge_name(self, scope: Scope, mode: str) -> str:
        """A fresh node name for a merge (or split) in `scope`."""
        key = scope.path or "net"
        self.merges[key] = self.merges.get(key, 0) + 1
        return f"{key}/{mode}" + (str(self.merges[key]) if self.merges[key] > 1 else "")

    def merge(self, g: graphviz.Digraph, scope: Scope, mode: str, ports: list[_Port]) -> _Port:
        """The explicit node where parallel branches meet. In a `mul`, a branch smaller than
        the result (an SE gate's C×1×1) is drawn as a gate."""
        node = self.merge_name(scope, mode)
        self.merge_node(g, node, mode)
        out = _merged_shape(mode, [p.shape for p in ports])
        for port in ports:
            gate = mode == "mul" and port.shape != out
            self.edge(replace(port, attrs=_GATE) if gate else port, node)
        return _Port(node, out)

    def merge_node(
        self,
        g: graphviz.Digraph,
        node: str,
        mode: str,
        after: tuple[str, ...] = (),
        label: str | None = None,
    ) -> None:
        """A `+`, `×` or `max` circle, or a small `concat` (`split`) box; `after` names layers
        folded into it (relu)."""
        symbol = label or MERGES[mode].symbol
        if MERGES[mode].elementwise:
            label = "\\n".join([symbol, *after])
            self.node(g, node, label, _MERGE, legend=False, width="0.3", margin="0.02")
        else:
            self.node(
                g,
                node,
                symbol,
                _MERGE,
                legend=False,
                shape="box",
                style="rounded,filled",
                height="0.22",
                fontsize="9",
            )

    def tap(self, g: graphviz.Digraph, scope: Scope, op: TapOut, tail: _Port) -> None:
        """A side head: a dotted edge into it and its own output node."""
        port = self.op(g, scope, op.op, replace(tail, attrs=_TAP))
        node = f"{op.name}/output"
        g.node(
            node,
            f"{op.name} (training only)\\n{fmt(port.shape)}",
            shape="box",
            style="rounded,dashed,filled",
            fillcolor="#ffffff",
        )
        self.edge(port, node)

    # ------------------------------------------------------------------ nodes and edges

    def node(
        self,
        g: graphviz.Digraph,
        node: str,
        label: str,
        look: Style,
        legend: bool = True,
        **attrs: str,
    ) -> None:
        """A node filled with its kind's colour; the kind's group joins the legend."""
        if legend:
            self.legend.setdefault(look.group, look)
        g.node(node, label, **{"shape": look.shape, "fillcolor": look.fill, **attrs})

    def edge(self, src: _Port, dst: str) -> None:
        """An edge labelled with the tensor it carries."""
        self.edges.append((src.node, dst, {"label": fmt(src.shape), **dict(src.attrs)}))

    def add_legend(self) -> None:
        """A cluster with one swatch per legend group drawn, and the edge styles."""
        rows = [
            f'<TR><TD BGCOLOR="{s.fill}" WIDTH="18"> </TD><TD ALIGN="LEFT">'
            f"{html.escape(group)}</TD></TR>"
            for group, s in self.legend.items()
        ]
        if any(attrs.get("style") == "dashed" for _, _, attrs in self.edges):
            rows.append('<TR><TD>- -</TD><TD ALIGN="LEFT">shortcut</TD></TR>')
        if any(attrs.get("arrowhead") == "odot" for _, _, attrs in self.edges):
            rows.append('<TR><TD><FONT COLOR="#b03a2e">—o</FONT></TD>'
                        '<TD ALIGN="LEFT">gate (scales the other input)</TD></TR>')
        if self.net.aux_outputs:
            rows.append('<TR><TD>···</TD><TD ALIGN="LEFT">auxiliary head</TD></TR>')
        table = (
            '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="2">'
            + "".join(rows)
            + "</TABLE>>"
        )
        with self.graph.subgraph(name="cluster_legend") as sub:
            sub.attr(label="legend", style="rounded", color="#bbbbbb", fontname=FONT, fontsize="10")
            sub.node("legend", table, shape="plain", style="")
        # Below the output: at the top the tall legend would push the input node down.
        self.graph.edge("output", "legend", style="invis")


# --------------------------------------------------------------------------- labels


def _dot_id(name: str) -> str:
    return name or "network"


def _html(text: str) -> str:
    return html.escape(text, quote=False)


def _small(text: str) -> str:
    return f'<FONT POINT-SIZE="8" COLOR="#444444">{_html(text)}</FONT>'


def _layer_label(node: LayerNode) -> str:
    """`conv 3×3, 64` in bold kind, then the name (when it says more) and the parameters."""
    hyper = REGISTRY[node.kind].summary(node.params)
    head = f"<B>{_html(node.kind)}</B>" + (f" {_html(hyper)}" if hyper else "")
    notes = [node.name] if not node.name.isdigit() and node.name != node.kind else []
    if node.n_params:
        notes.append(f"{compact(node.n_params)} params")
    return f"<{head}<BR/>{_small(' · '.join(notes))}>" if notes else f"<{head}>"


def _collapsed_label(scope: Scope, layers: list[LayerNode], params: int) -> str:
    """The block heading, what it computes, its output shape and parameter count."""
    # No bold here: graphviz under-measures long bold text and it spills out of the box.
    lines = [_html(f"{scope.path}: {scope.title}" if scope.title else scope.path)]
    lines += [_html(line) for line in _recipe(scope, layers)]
    lines.append(_small(f"{fmt(scope.out_shape)} · {compact(params)} params"))
    return "<" + "<BR/>".join(lines) + ">"


def _repeat_label(scope: Scope, copies: list[Scope], params: int) -> str:
    """`encoder.layers: encoder_block × 12`, the arguments that differ between the copies,
    the parameters of all of them."""
    title = f"{copies[0].title} × {len(copies)}"
    varying = [k for k in copies[0].args if len({repr(c.args.get(k)) for c in copies}) > 1]
    note = f" ({', '.join(varying)} vary)" if varying else ""
    return f"{scope.path}: {title}{note} · {compact(params)} params"


def _projection_label(layers: list[LayerNode]) -> str:
    """A shortcut's projection: `projection: conv 1×1, 128, /2 + bn`."""
    body = " + ".join(layer_text(layer) for layer in layers)
    params = sum(layer.n_params for layer in layers)
    return f"<projection<BR/>{_html(body)}<BR/>{_small(compact(params) + ' params')}>"


def _notable(layer: LayerNode) -> bool:
    """Layers that shape the computation: conv, fc and pooling (not bn, relu, dropout)."""
    inp, out = layer.in_shape or (), layer.out_shape or ()
    return bool(
        layer.macs
        or REGISTRY[layer.kind].spatial(layer.params) is not None
        or (len(inp) == len(out) == 3 and inp[1:] != out[1:])
    )


def _runs(items: list[str]) -> list[str]:
    """Consecutive repeats as one item: `[conv 3×3, 64] ×2`, as the papers' tables do."""
    out: list[tuple[str, int]] = []
    for item in items:
        if out and out[-1][0] == item:
            out[-1] = (item, out[-1][1] + 1)
        else:
            out.append((item, 1))
    return [f"[{item}] ×{n}" if n > 1 else item for item, n in out]


def _recipe(scope: Scope, layers: list[LayerNode]) -> list[str]:
    """The lines that say what a collapsed scope computes, paper style."""
    steps = _runs([layer_text(layer) for layer in layers if _notable(layer)])
    if len(steps) <= _RECIPE_ITEMS:
        # Two steps a line keeps the node narrow; a continued line starts with its arrow.
        return [("→ " if i else "") + " → ".join(steps[i : i + 2]) for i in range(0, len(steps), 2)]
    # Too many layers to list: describe the children instead (a stage of blocks).
    children = _runs(
        [
            layer_text(c) if isinstance(c, LayerNode) else scope_title(c) or c.name
            for c in scope.children
        ]
    )
    if len(children) > _RECIPE_ITEMS:
        children = children[: _RECIPE_ITEMS - 1] + [f"… {len(children) - _RECIPE_ITEMS + 1} more"]
    return children


def _merged_shape(mode: str, shapes: list[Shape | None]) -> Shape | None:
    """The shape after the merge, by the merge table's rule (None when unknown)."""
    known = [s for s in shapes if s is not None]
    if not shapes or len(known) < len(shapes):
        return None
    try:
        return MERGES[mode].shape(known)
    except ShapeProblem:
        return None


# --------------------------------------------------------------------------- plan queries


def _all_layers(scope: Scope) -> list[LayerNode]:
    """Every layer under a scope, nested scopes included."""
    out = []
    for child in scope.children:
        out.extend([child] if isinstance(child, LayerNode) else _all_layers(child))
    return out


def _layers(scope: Scope, op: Op) -> list[LayerNode]:
    """The layers an op runs, in forward order."""
    if isinstance(op, Call):
        child = scope.child(op.child)
        return [child] if isinstance(child, LayerNode) else _layers(child, child.plan)
    if isinstance(op, Seq):
        return [layer for inner in op.ops for layer in _layers(scope, inner)]
    if isinstance(op, Parallel):
        return [layer for branch in op.branches for layer in _layers(scope, branch)]
    if isinstance(op, TapOut):
        return _layers(scope, op.op)
    return []


def _repeats(module: Module) -> list[Scope]:
    """The copies, when `module` runs two or more calls of one block one after the other and
    nothing else, every copy built alike (same layers, shapes and parameter counts; the
    arguments may differ, as Swin's shift does); else []."""
    if not isinstance(module, Scope) or not module.is_sequential or len(module.children) < 2:
        return []
    copies = [c for c in module.children if isinstance(c, Scope) and c.kind == "block"]
    if len(copies) != len(module.children) or any(takes_tensors(c) for c in copies):
        return []
    first = _built(copies[0], copies[0].plan)
    if any(c.title != copies[0].title or _built(c, c.plan) != first for c in copies[1:]):
        return []
    return copies


def _built(scope: Scope, op: Op) -> tuple[object, ...]:
    """How an op is built, names left out: what two copies of a block must share."""
    if isinstance(op, Call):
        child = scope.child(op.child)
        if isinstance(child, LayerNode):
            return (child.kind, child.in_shape, child.out_shape, child.n_params)
        return (child.title, _built(child, child.plan))
    if isinstance(op, Seq):
        return ("seq", *(_built(scope, inner) for inner in op.ops))
    if isinstance(op, Parallel):
        return (op.mode, op.sizes, *(_built(scope, branch) for branch in op.branches))
    if isinstance(op, TapOut):
        return ("tap", _built(scope, op.op))
    return (type(op).__name__, getattr(op, "name", None))


def _residual(scope: Scope) -> tuple[Op, list[Op], list[LayerNode]] | None:
    """(main branch, shortcut branches, layers after the add) of a residual block.

    A residual block is an `add` of branches, then only parameter-free layers that keep
    the shape (the final relu). The main branch is the one with the most parameters.
    """
    ops = scope.plan.ops if isinstance(scope.plan, Seq) else (scope.plan,)
    if not ops or not isinstance(ops[0], Parallel) or ops[0].mode != "add":
        return None
    if scope.inputs or any(isinstance(b, Load) for b in ops[0].branches):
        return None  # an add of named tensors: the branches do not all start at the input
    after = []
    for op in ops[1:]:
        child = scope.child(op.child) if isinstance(op, Call) else None
        if not isinstance(child, LayerNode) or child.n_params or child.in_shape != child.out_shape:
            return None
        after.append(child)
    branches = list(ops[0].branches)
    weight = [sum(layer.n_params for layer in _layers(scope, b)) for b in branches]
    main = branches.pop(weight.index(max(weight)))
    return main, branches, after


# --------------------------------------------------------------------------- rendering


def check_drawing_path(out: Path) -> None:
    """`ValueError` unless `out` names a file `render` can write (.svg, .png, .pdf, .dot)."""
    if Path(out).suffix.lower() not in (*_RENDERED, ".dot", ".gv"):
        raise ValueError(
            f"cannot write `{Path(out).name}`: the output must end in .svg, .png, .pdf or .dot"
        )


def render(source: str, out: Path) -> Path:
    """Write `source` to `out`: .dot as is, .svg/.png/.pdf through graphviz's `dot`."""
    out = Path(out)
    check_drawing_path(out)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".dot", ".gv"):
        out.write_text(source, encoding="utf-8")
        return out
    if shutil.which("dot") is None:
        raise DotNotFound("graphviz's `dot` was not found on PATH")
    boxes = _node_count(source)
    if boxes > MOST_RENDERED_NODES:
        raise DrawingTooLarge(
            f"the drawing has {boxes:,} boxes, more than graphviz lays out in reasonable time "
            f"(at most {MOST_RENDERED_NODES:,})"
        )
    try:
        data = graphviz.Source(source).pipe(format=_RENDERED[suffix])
    except graphviz.ExecutableNotFound as exc:
        raise DotNotFound("graphviz's `dot` was not found on PATH") from exc
    except graphviz.CalledProcessError as exc:
        said = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise DotFailed(f"graphviz's `dot` failed (exit {exc.returncode})"
                        + (f": {said[0]}" if said else "")) from exc
    out.write_bytes(data)
    return out


# --------------------------------------------------------------------------- tables


def table_dot(program) -> str:
    """VGG's Table 1 for a spec with a `table`: one column per configuration.

    Cells use the paper's notation (conv3-64, maxpool, LRN, FC-4096); layers between
    two maxpools share a row and layers a column adds to the one before it are bold.
    The header counts the weight layers (conv and fc) of the network that uses the
    table, built once per configuration.
    """
    table = _pick_table(program)
    resolver = _resolver(program)
    columns = [_notation(row.items, resolver, _empty_env()) for row in table.rows]
    user = _table_user(program, table.name)
    counts = [
        _weight_layers(program, table.name, user, row.variant, cells)
        for row, cells in zip(table.rows, columns)
    ]
    width = len(table.rows)
    rows = _header_rows(table, counts)
    if user is not None:
        rows.append(_span_row(_input_text(user, resolver), width))
    rows.extend(_body_rows(columns, width))
    if user is not None:
        tail = _notation(
            _items_after(user.body, table.name), resolver, resolver.bind_network(user, {}, {})
        )
        rows.extend(_span_row(cell, width) for cell in tail)
    label = (
        '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="5">'
        + "".join(rows)
        + "</TABLE>>"
    )
    g = graphviz.Digraph(
        _dot_id(table.name),
        graph_attr={
            "label": f"Table `{table.name}` of {Path(program.root).name}",
            "labelloc": "t",
            "fontname": FONT,
            "fontsize": "12",
        },
    )
    g.node("table", label, shape="plain", fontname=FONT, fontsize="10")
    return g.source


def _header_rows(table: ir.TableDef, counts: list[str]) -> list[str]:
    """The title, the configuration names and their weight-layer counts."""
    return [
        _span_row(f"{table.name}: configurations", len(table.rows), bold=True, fill="#e8edf3"),
        "<TR>"
        + "".join(f'<TD BGCOLOR="#f3f6fa"><B>{_html(r.variant)}</B></TD>' for r in table.rows)
        + "</TR>",
        "<TR>" + "".join(f"<TD>{_html(c)}</TD>" for c in counts) + "</TR>",
    ]


def _pick_table(program) -> ir.TableDef:
    """The first table of the root file (else of an import); ValueError when none."""
    if not program.tables:
        raise ValueError(
            f"{program.root} defines no `table`: --table draws a configuration "
            "table such as VGG's (see specs/vgg.arch)"
        )
    root = program.root_file
    mine = [s.name for s in (root.statements if root else []) if isinstance(s, ir.TableDef)]
    return program.tables[mine[0] if mine else next(iter(program.tables))]


def _resolver(program):
    """A resolver whose diagnostics are dropped: the table view only reads values."""
    from archc.compiler.diagnostics import Diagnostics
    from archc.compiler.resolve import Resolver

    return Resolver(program, Diagnostics())


def _empty_env():
    from archc.compiler.expressions import Env

    return Env({})


def _notation(items: list, resolver, env) -> list[str]:
    """Items in the paper's notation, repeats expanded; relu, bn and the like left out."""
    from archc.compiler.expressions import ERROR, evaluate

    out: list[str] = []
    for item in items:
        count = evaluate(item.repeat, env, resolver.diags) if item.repeat is not None else 1
        count = count if isinstance(count, int) and count is not ERROR else 1
        if isinstance(item, ir.Group):
            out.extend(_notation(item.items, resolver, env) * count)
        elif isinstance(item, ir.Layer):
            text = _paper_name(item, resolver, env)
            out.extend([text] * count if text else [])
    return out


def _paper_name(item: ir.Layer, resolver, env) -> str | None:
    """`conv3-64`, `FC-4096`, `maxpool`, `LRN`: how VGG's table writes a layer."""
    kind = REGISTRY.get(item.callee) or lookup(item.callee)
    if kind is None:  # a block call: its name says the most
        return item.callee
    p = resolver.bind_layer(kind, item, env) or {}
    names = {"maxpool": "maxpool", "avgpool": "avgpool", "lrn": "LRN", "softmax": "soft-max"}
    if kind.name == "conv" and "out" in p:
        return f"conv{p['kernel']}-{p['out']}" + (f"/{p['stride']}" if p["stride"] != 1 else "")
    if kind.name == "fc" and "out" in p:
        return f"FC-{p['out']}"
    return names.get(kind.name)


def _split(cells: list[str]) -> list[list[str]]:
    """A column cut at its maxpools: the layers of each stage."""
    parts: list[list[str]] = [[]]
    for cell in cells:
        if cell == "maxpool":
            parts.append([])
        else:
            parts[-1].append(cell)
    return parts


def _body_rows(columns: list[list[str]], width: int) -> list[str]:
    """Stage rows with maxpool rows between them, like the paper; one row if they differ."""
    stages = [_split(cells) for cells in columns]
    if len({len(s) for s in stages}) != 1:
        stages = [[cells] for cells in columns]  # the maxpools do not line up
    rows = []
    for i in range(len(stages[0])):
        if i:
            rows.append(_span_row("maxpool", width))
        if all(not s[i] for s in stages):
            continue
        cells = []
        for j, stage in enumerate(stages):
            new = _added(stages[j - 1][i], stage[i]) if j else set()
            text = "<BR/>".join(
                f"<B>{_html(c)}</B>" if k in new else _html(c) for k, c in enumerate(stage[i])
            )
            cells.append(f'<TD VALIGN="TOP">{text}</TD>')
        rows.append("<TR>" + "".join(cells) + "</TR>")
    return rows


def _added(before: list[str], after: list[str]) -> set[int]:
    """Indices of `after` that are new compared with `before` (bold in the paper)."""
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    return {
        k for tag, _, _, j1, j2 in matcher.get_opcodes() if tag != "equal" for k in range(j1, j2)
    }


def _span_row(text: str, width: int, bold: bool = False, fill: str | None = None) -> str:
    body = f"<B>{_html(text)}</B>" if bold else _html(text)
    color = f' BGCOLOR="{fill}"' if fill else ""
    return f'<TR><TD COLSPAN="{width}"{color}>{body}</TD></TR>'


def _find_ref(items: list, name: str) -> ir.TableRef | None:
    """The first use of table `name` in `items`, groups included."""
    for item in items:
        if isinstance(item, ir.TableRef) and item.table == name:
            return item
        if isinstance(item, ir.Group):
            found = _find_ref(item.items, name)
            if found is not None:
                return found
    return None


def _table_user(program, name: str) -> ir.NetworkDef | None:
    """The first network whose body uses the table."""
    return next(
        (
            n
            for n in program.networks.values()
            if isinstance(n, ir.NetworkDef) and _find_ref(n.body, name)
        ),
        None,
    )


def _items_after(items: list, name: str) -> list:
    """The network's items after its (top-level) use of the table: the classifier."""
    for i, item in enumerate(items):
        if isinstance(item, ir.TableRef) and item.table == name:
            return items[i + 1 :]
    return []


def _weight_layers(
    program, table: str, user: ir.NetworkDef | None, variant: str, cells: list[str]
) -> str:
    """`16 weight layers`: conv and fc of the network built with this configuration."""
    ref = _find_ref(user.body, table) if user is not None else None
    if user is not None and ref is not None and ref.variant in {p.name for p in user.params}:
        net = _resolver(program).network(user.name, {ref.variant: variant}, None)
        if net is not None:
            from archc.compiler.graph import layers

            return f"{sum(1 for layer in layers(net.root) if layer.macs)} weight layers"
    # No network builds the configuration: count the table's own conv and fc layers.
    return f"{sum(1 for c in cells if c.startswith(('conv', 'FC')))} weight layers"


def _input_text(user: ir.NetworkDef, resolver) -> str:
    """`input (224 × 224 RGB image)`, the paper's first row."""
    env = resolver.bind_network(user, {}, {})
    c, h, w = resolver.input_shape(user, env, None)
    return f"input ({h} × {w} RGB image)" if c == 3 else f"input ({c}×{h}×{w})"
