"""The classifier heads: which layers of a resolved network follow its `num_classes`.

The resolver records, for every layer, the arguments whose expressions read `num_classes`
(directly, or through block arguments, parameter defaults and loop rows computed from it),
with their values at one class more (`LayerNode.classes`). This pass follows the tensors
from there: a layer whose input shape changes with the class count (a norm, activation or
pool over the class scores, as SqueezeNet's final conv → relu → pool) follows it too. Each
layer's shape rule tells whether its output changes, so a later layer of fixed size (an fc
with 4096 outputs) stops the flow, and a layer whose size only happens to equal the class
count is never marked: the mark comes from what the spec reads, not from a value.

No network is resolved again: only the layers on the way are asked for their shape at one
class more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archc.compiler.graph import (
    Call,
    ClassDependence,
    Identity,
    LayerNode,
    Load,
    Op,
    Parallel,
    Save,
    Scope,
    Seq,
    TapOut,
)
from archc.layers import MERGES, Shape, ShapeContext, ShapeProblem, lookup

# A tensor's shape, and its shape at one class more: the same shape when it does not follow
# the class count, UNTOLD when it does but the shape there cannot be told.
Flow = tuple[Shape | None, Shape | None]
UNTOLD: Shape = ()
_NOTHING: Flow = (None, None)
# what a shape rule may raise on arguments it was never checked with
_REFUSALS = (ShapeProblem, ArithmeticError, TypeError, ValueError)


def mark_class_heads(root: Scope, holding: set[int], readers: set[int]
                     ) -> tuple[LayerNode, ...] | None:
    """Mark the layers of `root` whose input follows `num_classes` (the layers whose
    arguments read it are marked already); returns every marked layer, in the order they run.
    `holding` has the ids of the scopes that hold a layer of the second kind: the walk skips
    the others where nothing that enters them follows the class count. `readers` has the ids
    of the block calls whose body reads its input's size (`in_channels`): when the class
    count reaches one, what it computes from that size cannot be told, and neither can the
    heads (None)."""
    marker = _Marker(holding, readers)
    try:
        marker.op(root.plan, root, (root.in_shape, root.in_shape), {})
    except _Untold:
        return None
    return tuple(marker.marked)


class _Untold(Exception):
    """The class count reaches a block that computes from its input's size."""


@dataclass
class _Marker:
    """Walks a plan as the torch backend runs it, carrying each tensor's `Flow`."""

    holding: set[int]
    readers: set[int]
    marked: list[LayerNode] = field(default_factory=list)

    def op(self, op: Op, scope: Scope, x: Flow, named: dict[str, Flow]) -> Flow:
        """The flow out of `op` run in `scope` on `x`; `named` holds the scope's tensors."""
        if isinstance(op, Call):
            return self.call(scope.child(op.child), x, named)
        if isinstance(op, Seq):
            for inner in op.ops:
                x = self.op(inner, scope, x, named)
            return x
        if isinstance(op, Parallel):
            return self.parallel(op, scope, x, named)
        if isinstance(op, TapOut):  # an auxiliary head; the main path goes on unchanged
            self.op(op.op, scope, x, named)
            return x
        if isinstance(op, Save):
            named[op.name] = x
            return x
        if isinstance(op, Load):
            return named.get(op.name, _NOTHING)
        assert isinstance(op, Identity)  # the last kind of plan op
        return x

    def call(self, child: LayerNode | Scope, x: Flow, named: dict[str, Flow]) -> Flow:
        if isinstance(child, LayerNode):
            return self.layer(child, x)
        if id(child) not in self.holding and _same(x) and all(
                _same(named.get(read, _NOTHING)) for read in child.reads):
            for write, shape in zip(child.writes, child.output_shapes):
                if write:
                    named[write] = (shape, shape)
            return child.out_shape, child.out_shape
        if id(child) in self.readers and not _same(x):
            raise _Untold(child.path)
        inner = {name: named.get(read, _NOTHING) for name, read in zip(child.inputs, child.reads)}
        out = self.op(child.plan, child, x, inner)
        for name, write in zip(child.outputs, child.writes):
            if write:
                named[write] = inner.get(name, _NOTHING)
        return out

    def layer(self, node: LayerNode, x: Flow) -> Flow:
        """Mark `node` when its arguments or its input follow the class count; its flow out."""
        shape, probe = x
        if node.classes is None and probe == shape:
            return node.out_shape, node.out_shape
        params = node.params if node.classes is None else node.classes.params
        args = frozenset() if node.classes is None else node.classes.args
        node.classes = ClassDependence(args, params, None if probe == UNTOLD else probe)
        self.marked.append(node)
        if node.out_shape is None:
            return _NOTHING
        return node.out_shape, _shape_at(node, params, probe)

    def parallel(self, op: Parallel, scope: Scope, x: Flow, named: dict[str, Flow]) -> Flow:
        merge, n = MERGES[op.mode], len(op.branches)
        shape, probe = x
        if shape is None:
            return _NOTHING
        try:
            shapes = merge.branch_inputs(shape, n, op.sizes)
        except ShapeProblem:
            return _NOTHING
        probes = shapes if probe == shape else _branch_probes(op, probe)
        outs = [self.op(b, scope, (s, p), named) for b, s, p in zip(op.branches, shapes, probes)]
        merged = _merged(op.mode, [o[0] for o in outs])
        if all(o[1] == o[0] for o in outs):
            return merged, merged
        return merged, _merged(op.mode, [o[1] for o in outs]) or UNTOLD


def _same(x: Flow) -> bool:
    return x[0] == x[1]


def _shape_at(node: LayerNode, params: dict | None, probe: Shape | None) -> Shape:
    """The layer's output at one class more: its shape rule on its arguments and input
    there; UNTOLD when either is unknown or the rule refuses them."""
    kind = lookup(node.kind)
    if kind is None or params is None or not probe:
        return UNTOLD
    try:
        return kind.shape(probe, params, ShapeContext())
    except _REFUSALS:
        return UNTOLD


def _branch_probes(op: Parallel, probe: Shape | None) -> list[Shape | None]:
    n = len(op.branches)
    if not probe:
        return [UNTOLD] * n
    try:
        return list(MERGES[op.mode].branch_inputs(probe, n, op.sizes))
    except ShapeProblem:
        return [UNTOLD] * n


def _merged(mode: str, shapes: list[Shape | None]) -> Shape | None:
    """The merge's output for its branches' outputs; None when one is missing or untold."""
    known = [s for s in shapes if s]
    if len(known) < len(shapes):
        return None
    try:
        return MERGES[mode].shape(known)
    except ShapeProblem:
        return None
