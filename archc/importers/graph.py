"""From a foreign network's layer graph to archc's nested IR: sequences, merges and taps.

Caffe and Darknet describe a network as a list of layers wired by name or by index: a
directed acyclic graph. archc's language nests: a sequence of items, where a merge runs
branches on one input. Every graph of the CNN zoo is series-parallel in this sense, and
the immediate dominator of a merge is the tensor its branches fork from. A layer whose
output reaches no later layer (an auxiliary head) becomes a `tap`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics

INPUT = 0  # the id of the network input node


@dataclass
class Node:
    """One layer of the foreign graph, as archc items: an optional merge, then `items`.

    A node with several inputs merges them first (`merge` is "concat", "add", ...); a
    node with one input applies `items` to it; the input node (id 0) has none.
    """

    id: int
    name: str
    inputs: list[int]
    items: list[ir.Item] = field(default_factory=list)
    merge: str | None = None
    span: ir.Span = ir.NOWHERE


@dataclass
class Graph:
    """Nodes in a topological order (the file's order), the input node first."""

    nodes: list[Node] = field(default_factory=list)

    def add(self, name: str, inputs: list[int], span: ir.Span, **kw) -> Node:
        """Append a node wired to `inputs` (node ids) and return it."""
        node = Node(len(self.nodes), name, inputs, span=span, **kw)
        self.nodes.append(node)
        return node

    def consumers(self) -> dict[int, list[int]]:
        """For each node id, the ids of the nodes that read its output."""
        users: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                users[i].append(n.id)
        return users


def dominators(graph: Graph) -> dict[int, int]:
    """The immediate dominator of every node reachable from the input (itself for the input).

    Nodes come in topological order, so one pass with the lowest common ancestor in the
    dominator tree built so far is exact (Cooper, Harvey and Kennedy on a DAG).
    """
    idom: dict[int, int] = {INPUT: INPUT}
    depth: dict[int, int] = {INPUT: 0}
    for node in graph.nodes[1:]:
        preds = [p for p in node.inputs if p in idom]
        if not preds:
            continue
        dom = preds[0]
        for p in preds[1:]:
            dom = _common(dom, p, idom, depth)
        idom[node.id], depth[node.id] = dom, depth[dom] + 1
    return idom


def _common(a: int, b: int, idom: dict[int, int], depth: dict[int, int]) -> int:
    while a != b:
        if depth[a] >= depth[b]:
            a = idom[a]
        else:
            b = idom[b]
    return a


class _Builder:
    """Builds the nested item list from the graph; each node is emitted exactly once."""

    def __init__(self, graph: Graph, diags: Diagnostics):
        self.graph, self.diags = graph, diags
        self.idom = dominators(graph)
        self.taps: dict[int, list[int]] = {}  # anchor node → side outputs hanging off it
        self.emitted: set[int] = set()
        self.ok = True

    def node(self, i: int) -> Node:
        return self.graph.nodes[i]

    def between(self, src: int, dst: int) -> list[ir.Item]:
        """The items that compute `dst`'s output from `src`'s (`src` dominates `dst`)."""
        chain: list[ir.Item] = []
        current = dst
        while current != src and self.ok:
            node = self.node(current)
            if current in self.emitted:
                self._not_nested(node)
                return chain
            self.emitted.add(current)
            tail = [*node.items, *self._taps_after(current)]
            if len(node.inputs) == 1:
                chain = tail + chain
                current = node.inputs[0]
                continue
            fork = self.idom[current]
            branches = [_as_branch(self.between(fork, i)) for i in node.inputs]
            merge = ir.Merge(mode=node.merge, branches=branches, span=node.span)
            chain = [merge, *tail] + chain
            current = fork
        return chain

    def _taps_after(self, anchor: int) -> list[ir.Item]:
        return [
            ir.Tap(head=_as_branch(self.between(anchor, out)), span=self.node(out).span)
            for out in self.taps.get(anchor, [])
        ]

    def _not_nested(self, node: Node) -> None:
        self.ok = False
        self.diags.error(
            "E204",
            node.span,
            f"layer `{node.name}` feeds two places that archc cannot nest",
            "archc writes a network as sequences whose merges fork from one tensor; "
            "this layer's output is used both inside and outside one merge",
        )


def _as_branch(items: list[ir.Item]) -> ir.Item:
    """One merge branch (or tap head): a single item, a group, or `identity` when empty."""
    if not items:
        return ir.Layer(callee="identity")
    if len(items) == 1:
        return items[0]
    return ir.Group(items=items)


def nest(graph: Graph, diags: Diagnostics) -> list[ir.Item] | None:
    """The network body for `graph`: the last dead end is the output, others become taps.

    None (with a diagnostic) when the graph cannot be written as nested merges.
    """
    builder = _Builder(graph, diags)
    users = graph.consumers()
    ends = [n.id for n in graph.nodes[1:] if not users[n.id] and n.id in builder.idom]
    if not ends:
        diags.error("E204", graph.nodes[0].span, "the network has no layers", None)
        return None
    output, side = ends[-1], ends[:-1]
    live = _ancestors(graph, output)
    for out in side:
        anchor = builder.idom[out]
        while anchor not in live:
            anchor = builder.idom[anchor]
        builder.taps.setdefault(anchor, []).append(out)
    body = [*builder._taps_after(INPUT), *builder.between(INPUT, output)]
    return body if builder.ok else None


def _ancestors(graph: Graph, node: int) -> set[int]:
    """`node` and every node its output depends on."""
    seen, todo = {node}, [node]
    while todo:
        for p in graph.nodes[todo.pop()].inputs:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen
