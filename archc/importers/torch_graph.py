"""A module's forward → a draft body: chains, `add:` and `concat:` merges, and taps.

The forward is traced with torch.fx, every child module a leaf. The traced graph is cut
into a series-parallel structure: walking back from the output, a unary op extends the
chain, and a merge (add, cat) splits into branches that start at the merge's immediate
dominator, the fork. An identity branch becomes `shortcut`; so does a 1×1 projection
(conv, then bn) that archc's `shortcut` would build itself. Extra outputs (GoogLeNet's
auxiliary logits in training mode) become taps where they leave the main path.

Anything else (a multiply, a Python op with no archc form, a value used in two places
that are not a fork) raises `Unsupported` naming the op and where the forward has it.
"""

from __future__ import annotations

import inspect
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, cast, get_args

import torch
from torch import fx, nn

from archc.compiler import ir
from archc.importers.torch_draft import (
    REQUIRED,
    Arg,
    DBind,
    DCall,
    DGroup,
    DItem,
    DLayer,
    DMerge,
    DRef,
    DShortcut,
    DTap,
    shortcut_args,
)
from archc.importers.torch_layers import (
    ADDS,
    FUNCTIONS,
    MAXIMUMS,
    METHODS,
    MULTIPLIES,
    PASS_THROUGH,
    SUBTRACTS,
    Unsupported,
    kind_layer,
)


@dataclass
class Located(Unsupported):
    """An unsupported op with where the forward has it (file, line) and its code line."""

    message: str
    file: str | None = None
    line: int | None = None
    code: str | None = None

    def __str__(self) -> str:
        return self.message


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in \w+\n(.*)')


def locate(node: fx.Node, message: str) -> Located:
    """An `Unsupported` at the node's line in the forward: the innermost recorded frame
    in the file that defines the traced module (not inside a library it calls)."""
    frames = _FRAME.findall(node.stack_trace or "")
    if not frames:
        return Located(message)
    home = node.graph.owning_module_file if hasattr(node.graph, "owning_module_file") else None
    mine = [f for f in frames if f[0] == home] or frames
    file, line, code = mine[-1]
    return Located(message, file, int(line), code.strip())


class _ChildrenAsLeaves(fx.Tracer):
    """Traces one module's own forward: every submodule call is one graph node."""

    def __init__(self, root: nn.Module):
        super().__init__(autowrap_functions=tuple(library_functions()))
        self.record_stack_traces = True
        self.root_module = root

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        """Every module but the one traced is a leaf: one call node."""
        return m is not self.root_module


class Untraceable(Unsupported):
    """A forward torch.fx cannot trace (Python control flow on tensors, ...)."""


def trace(module: nn.Module, concrete: dict[str, Any] | None = None) -> fx.Graph:
    """The fx graph of `module.forward` as it runs when called with one tensor (the
    other arguments at their defaults: timm's `forward(x, pre_logits=False)`), or as its
    caller calls it (`concrete`: an argument's value, `fx.PH` where a tensor is passed, a
    list of them for a list of tensors); raises `Untraceable` when it cannot be traced."""
    tracer = _ChildrenAsLeaves(module)
    own = vars(module).get("forward")  # FasterNet: `self.forward = self.forward_split_cat`
    if inspect.ismethod(own) and own.__self__ is module and hasattr(type(module),
                                                                    own.__func__.__name__):
        tracer.traced_func_name = own.__func__.__name__  # fx traces the class's method
    try:
        given = {**(defaults(module) or {}), **(concrete or {})}
        graph = tracer.trace(module, concrete_args=given or None)
    except Exception as error:  # fx reports untraceable Python as any exception type
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Untraceable(f"its forward cannot be traced by torch.fx: {first}") from None
    try:
        home = inspect.getsourcefile(type(module))
    except (TypeError, OSError):
        home = None
    setattr(graph, "owning_module_file", home)  # fx.Graph's own attributes do not include it
    return graph


def defaults(module: nn.Module) -> dict[str, Any] | None:
    """The forward's arguments after the input that have defaults, at their defaults."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    found = {p.name: p.default for p in params
             if p.default is not inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD}
    return found or None


def _node(value: fx.node.Argument) -> fx.Node:
    """`value` typed as the graph node it is: fx types every argument as any value a graph
    may hold; the callers pass a method's `self` or a value they have checked."""
    return cast(fx.Node, value)


@dataclass
class _Op:
    """What one graph node does: extend a chain (`item`, maybe None) or merge `inputs`."""

    inputs: list[fx.Node]
    item: DItem | None = None
    merge: str | None = None
    chunks: int = 0  # `x.chunk(n, 1)`: n slices, taken by `split:` branches only
    size: int | None = None  # `x.split(size, 1)`: each slice's width
    slice: int | None = None  # `parts[i]` of a chunk
    arity: int = 1  # a module call that returns several tensors
    output: int | None = None  # `outs[i]` of such a call


ChildItem = Callable[[nn.Module, str, "str | None", "dict[str, Any] | None"], DItem]


class GraphBody:
    """The draft body of one traced module.

    `child_item(module, target, label, concrete)` drafts a call of a child module (a layer,
    a block call or a group; `concrete` says how a call with several tensors passes them,
    as `trace` takes it); `projection(module)` says whether a child is a 1×1 projection
    that `shortcut` reproduces, and with which options. `tensor_params` names the tensors
    the forward takes after the first (`@` parameters of its block), None for one it
    does not read.
    """

    def __init__(
        self,
        module: nn.Module,
        graph: fx.Graph,
        child_item: ChildItem,
        projection: Callable[[nn.Module], list[Arg] | None],
        shapes: Callable[[nn.Module], tuple | None] = lambda module: None,
        arity: Callable[[nn.Module], int] = lambda module: 1,
        is_block: bool = True,
    ):
        self.module, self.graph = module, graph
        self.child_item, self.projection = child_item, projection
        self.shapes = shapes  # a module's (input, output) shapes without the batch
        self.arity = arity  # how many tensors a module returns
        # a block may return several tensors; the network's extra outputs are auxiliary
        # heads (taps)
        self.is_block = is_block
        self.output_names: list[str] = []  # a block that returns several: their names
        self.ops: dict[fx.Node, _Op] = {}
        self.used: dict[fx.Node, int] = {}
        self.calls: dict[str, int] = {}
        self.named: set[str] = set()  # module calls labelled with the module's name
        self.extras: list[fx.Node] = []  # the tensors passed after the first
        self.tensor_params: list[str | None] = []

    # ------------------------------------------------------------------ entry

    def body(self) -> list[DItem]:
        """The draft items of the forward, in order."""
        nodes = list(self.graph.nodes)
        inputs = [n for n in nodes if n.op == "placeholder"]
        if not inputs:
            raise Unsupported("its forward takes no input")
        for extra in inputs[1:]:
            key = getattr(extra, "ph_key", None)  # a tensor its caller passes
            if key is not None:
                self.tensor_params.append(key if extra.users else None)
                if extra.users:  # (DLA's tree takes a shortcut it need not read)
                    self.extras.append(extra)
                continue
            self.drop_guards(extra)
            if extra.users:
                raise Unsupported(f"its forward uses a second input `{extra.name}`")
        nodes = list(self.graph.nodes)  # without the guards dropped
        self.start = inputs[0]
        nodes = self.partial_residuals(self.running_concats(self.sized_splits(nodes)))
        nodes = self.spread_outputs(nodes)
        for n in nodes:
            if n.op == "call_module":
                target = str(n.target)  # a module call's target is the module's name
                self.calls[target] = self.calls.get(target, 0) + 1
        outputs, packing = self.outputs(next(n for n in nodes if n.op == "output"))
        self.flat_scales = self.reshaped_gammas(nodes)
        skip = self.shape_nodes(nodes) | packing | set(self.flat_scales)
        for n in nodes:
            if n.op in ("call_module", "call_function", "call_method") and n not in skip:
                self.ops[n] = self.op(n)
        several = self.is_block and len(outputs) > 1
        if several or self.extras or any(op.merge is None and len(op.inputs) > 1 or op.arity > 1
                                         for op in self.ops.values()):
            return group_containers(self.graph_form(outputs))  # tensors passed around
        self.idom = self.dominators(nodes)
        try:
            chain = self.chain(outputs[0], self.start)
        except Located as tree_problem:  # Res2Net's slices, each taken by its own step
            if "slices channels" not in str(tree_problem):
                raise
            try:
                graph = self.graph_form(outputs)
            except Unsupported:
                raise tree_problem from None
            return group_containers(graph)
        for aux in outputs[1:]:
            chain = self.insert_tap(chain, aux)
        if any(self.used.get(node, 0) > 1 for node in self.ops):
            # a value read in two places that are not one fork: the forward is a graph
            return group_containers(self.graph_form(outputs))
        return group_containers([item for _, item in chain if item is not None])

    def outputs(self, output: fx.Node) -> tuple[list[fx.Node], set[fx.Node]]:
        """The output values, main first, and the node that packs them (a named tuple)."""
        # fx types the output as any argument; what it holds is checked below
        value: Any = output.args[0]
        packing: set[fx.Node] = set()
        target = getattr(value, "target", None)
        if isinstance(target, type) and issubclass(target, tuple) and value.op == "call_function":
            packing.add(value)  # GoogLeNetOutputs(logits, aux2, aux1)
            value = (*value.args, *value.kwargs.values())
        values: list = []  # (a child's outputs spread in place of its result: nested)
        fx.node.map_aggregate(value, values.append)
        if not values or not all(isinstance(v, fx.Node) for v in values):
            raise Unsupported("its forward returns something other than tensors")
        return values, packing

    def drop_guards(self, extra: fx.Node) -> None:
        """Erase fx's guards on an argument traced at its default (`pre_logits == False`,
        asserted): the forward then does not read it."""
        for eq in list(extra.users):
            asserts = list(eq.users)
            if eq.target is operator.eq and asserts and all(a.target is torch._assert
                                                            for a in asserts):
                for a in asserts:
                    self.graph.erase_node(a)
                self.graph.erase_node(eq)
            elif getattr(eq.target, "__name__", "") == "_assert_is_none" and not eq.users:
                self.graph.erase_node(eq)  # an argument traced at its default None

    def sized_splits(self, nodes: list[fx.Node]) -> list[fx.Node]:
        """`torch.split(x, [a, b, ...], 1)` by unequal sizes, its pieces taken one by one
        (FasterNet's partial conv, InceptionNeXt's token mixer): rewrite each piece
        `parts[i]` as the channel slice `x[:, start:end]` it is, so the branches that use
        them start with `channel-slice` and the concat of them is an ordinary `concat:`."""
        for n in nodes:
            if not (n.target == "split" or n.target is torch.split):
                continue
            sizes = _split_sizes(n)
            users = list(n.users)
            taken = all(u.target is operator.getitem and isinstance(u.args[1], int)
                        for u in users)
            if sizes is None or not users or not taken:
                continue
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            for u in users:
                i = u.args[1]
                assert isinstance(i, int)  # checked in `taken`
                u.args = (n.args[0], (slice(None), slice(starts[i], starts[i] + sizes[i])))
            self.graph.erase_node(n)
        return list(self.graph.nodes)

    def running_concats(self, nodes: list[fx.Node]) -> list[fx.Node]:
        """DenseNet's forward keeps a list of features and passes it whole: module calls on
        `[x, n1, ..., nk]` and a `torch.cat` of it. Rewrite each list as the running concat
        `cat(cat(x, n1), ...)`, built once per prefix, so the graph is adds and concats of
        branches again; the callee's own `torch.cat(input, 1)` is then a no-op. A module
        that returns several tensors takes its list as it is (HRNet's stages)."""
        made: dict[tuple, fx.Node] = {}

        def concat(parts: list, before: fx.Node) -> fx.Node:
            if len(parts) == 1:
                return parts[0]
            key = tuple(parts)
            if key not in made:
                first = concat(parts[:-1], before)
                with self.graph.inserting_before(before):
                    made[key] = self.graph.call_function(torch.cat, ([first, parts[-1]], 1))
            return made[key]

        for n in nodes:
            first = n.args[0] if n.args else None
            if not isinstance(first, (list, tuple)) or not first:
                continue
            listed = [p for p in first if isinstance(p, fx.Node)]
            if len(listed) != len(first):
                continue
            if n.op == "call_module":
                if len(listed) > 1 and self.arity(self.module.get_submodule(str(n.target))) > 1:
                    continue  # HRNet's stages take a list of branches and return one
                n.args = (concat(list(listed), n), *n.args[1:])
            elif n.target is torch.cat and len(listed) > 2 and n.args[1:] == (1,):
                n.args = ([concat(list(listed[:-1]), n), listed[-1]], 1)
        return list(self.graph.nodes)

    def spread_outputs(self, nodes: list[fx.Node]) -> list[fx.Node]:
        """A child that returns several tensors, its result passed on whole (SelecSLS's
        blocks pass `[x, skip]` to the next): pass the list of its outputs instead, each
        `result[i]`, so every tensor is a node of its own."""
        for n in nodes:
            if n.op != "call_module":
                continue
            k = self.arity(self.module.get_submodule(str(n.target)))
            whole = [u for u in n.users
                     if not (u.target is operator.getitem and isinstance(u.args[1], int))]
            if k < 2 or not whole:
                continue
            with self.graph.inserting_after(n):
                parts: list[fx.Node] = []
                for i in range(k):  # (each inserted after n: built in reverse)
                    parts.insert(0, self.graph.call_function(operator.getitem, (n, k - 1 - i)))
            for u in whole:
                u.args = fx.node.map_aggregate(u.args, lambda a: parts if a is n else a)
                u.kwargs = fx.node.map_aggregate(u.kwargs, lambda a: parts if a is n else a)
        return list(self.graph.nodes)

    def partial_residuals(self, nodes: list[fx.Node]) -> list[fx.Node]:
        """ReXNet's `torch.cat([y[:, :c] + s, y[:, c:]], 1)`, a residual into the first c
        channels, becomes one `add-into:` merge of y and s."""
        for n in nodes:
            if n.target is not torch.cat or not _has_merge("add-into"):
                continue
            parts = n.args[0]
            dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
            if dim != 1 or not isinstance(parts, (list, tuple)) or len(parts) != 2:
                continue
            first, rest = parts
            found = _residual_into(first, rest)
            if found is None:
                continue
            with self.graph.inserting_before(n):
                merged = self.graph.call_function(add_into, found)
            n.replace_all_uses_with(merged)
            for dead in (n, first, rest, *first.args):  # type: ignore[union-attr]
                if isinstance(dead, fx.Node) and not dead.users and dead.op == "call_function":
                    self.graph.erase_node(dead)
        return list(self.graph.nodes)

    @staticmethod
    def shape_nodes(nodes: list[fx.Node]) -> set[fx.Node]:
        """`x.size(0)`, `x.shape[0]`, `x.ndim` and what is computed from them (shape
        arithmetic and comparisons), and the `torch._assert`s that check them."""
        found: set[fx.Node] = set()
        for n in nodes:
            sizes = n.op == "call_method" and n.target in ("size", "dim")
            shape = (n.op == "call_function" and n.target is getattr
                     and n.args[1] in ("shape", "ndim"))
            inputs = n.all_input_nodes
            derived = (n.op == "call_function" and bool(inputs) and all(i in found for i in inputs)
                       and (getattr(n.target, "__module__", None) in ("_operator", "operator")
                            or n.target is torch._assert))
            if sizes or shape or derived:
                found.add(n)
        return found

    def reshaped_gammas(self, nodes: list[fx.Node]) -> dict[fx.Node, fx.Node]:
        """`self.gamma.reshape(1, -1, 1, 1)` (or `.view(C, 1, 1)`) of a (C,) parameter used
        only to multiply (timm's ConvNeXt layer scale): each such reshape → the parameter."""
        found = {}
        for n in nodes:
            if n.op != "call_method" or n.target not in ("reshape", "view"):
                continue
            source, dims = n.args[0], tuple(n.args[1:])
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = tuple(dims[0])
            if not (isinstance(source, fx.Node) and source.op == "get_attr"
                    and "." not in str(source.target)):
                continue
            weight = getattr(self.module, str(source.target), None)
            c = weight.numel() if isinstance(weight, torch.Tensor) else -1
            if dims not in ((1, -1, 1, 1), (-1, 1, 1), (1, c, 1, 1), (c, 1, 1)):
                continue  # (metaformer's Scale views its (C,) parameter as (C, 1, 1))
            muls = all(u.target in MULTIPLIES or (u.op == "call_method" and u.target == "mul")
                       for u in n.users)
            if isinstance(weight, nn.Parameter) and weight.dim() == 1 and muls and n.users:
                found[n] = source
        return found

    # ------------------------------------------------------------------ one node

    def op(self, n: fx.Node) -> _Op:
        """What node `n` does: a layer on one input, a merge of several, or nothing."""
        held = [a for a in n.all_input_nodes if a.op == "get_attr" or a in self.flat_scales]
        if held and self.is_scale(n, held):
            return self.scale_op(n, held[0])
        if held:
            raise locate(
                n, f"uses the tensor `{held[0].target}` of the module itself, not a layer's"
            )
        if n.op == "call_module":
            return self.module_op(n)
        if n.target in ADDS or (n.op == "call_method" and n.target in ("add", "add_")):
            return self.add_op(n)
        if n.target is torch.cat:
            return self.cat_op(n)
        if n.target is add_into:
            return _Op([_node(a) for a in n.args], merge="add-into")
        if n.target in MULTIPLIES or (n.op == "call_method" and n.target in ("mul", "mul_")):
            return self.mul_op(n)
        if n.target in MAXIMUMS or (n.op == "call_method" and n.target in ("maximum", "max")):
            return self.max_op(n)
        if n.target in SUBTRACTS or (n.op == "call_method" and n.target in ("sub", "sub_")):
            return self.sub_op(n)
        if n.op == "call_method" and n.target in ("view", "reshape"):
            return self.view_op(n)
        if n.op == "call_method" and n.target in PASS_THROUGH:
            return _Op([_node(n.args[0])])
        if n.target == "chunk" or n.target is torch.chunk:
            return self.chunk_op(n)
        if (n.target == "split" or n.target is torch.split) and _equal_split(n):
            return self.split_op(n)
        if n.target is operator.getitem and isinstance(n.args[0], fx.Node):
            return self.slice_op(n)
        convert = METHODS.get(str(n.target)) if n.op == "call_method" else FUNCTIONS.get(n.target)
        convert = convert or library_functions().get(n.target)
        name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", n.target)
        if convert is None or not isinstance(n.args[0], fx.Node):
            raise locate(n, f"calls `{name}`, which has no archc layer")
        if any(isinstance(a, fx.Node) for a in (*n.args[1:], *n.kwargs.values())):
            raise locate(n, f"calls `{name}` with tensor arguments computed in the forward")
        try:
            made = convert(n.args, n.kwargs)
        except Unsupported as problem:
            raise locate(n, f"calls `{name}`: {problem}") from None
        items = made if isinstance(made, list) else [made]
        return _Op([n.args[0]], items[0] if len(items) == 1 else DGroup(items))

    @staticmethod
    def at_defaults(kwargs: dict, callee: nn.Module) -> bool:
        """True when every keyword of a module call is a constant equal to the callee's
        default for it (CSPNeXt's `self.head(x, pre_logits=pre_logits)`, traced False):
        the call is then the module's one-tensor forward."""
        found = defaults(callee) or {}
        return all(not isinstance(v, fx.Node) and k in found and found[k] == v
                   for k, v in kwargs.items())

    def module_op(self, n: fx.Node) -> _Op:
        """A call of a child module; stateless ones called more than once go unlabelled.
        A call with other tensors after the first (DLA's `tree1(x, shortcut)`, VoVNet's
        `conv_mid(x, [x0])`) takes them as `@` arguments of the child's block."""
        target = str(n.target)
        child = self.module.get_submodule(target)
        plain = len(n.args) == 1 and isinstance(n.args[0], fx.Node)
        inputs: list[fx.Node] = [_node(n.args[0])] if plain else []
        concrete = None
        if not plain or not self.at_defaults(n.kwargs, child):
            form = _call_form(n, child)
            if form is None:
                raise locate(n, f"calls `{target}` with other than one tensor")
            inputs, concrete = form
        has_state = any(True for _ in child.parameters()) or any(True for _ in child.buffers())
        if self.calls[target] > 1 and has_state:
            raise locate(n, f"calls `{target}` twice, sharing its weights (archc has no sharing)")
        single = self.calls[target] == 1 and not target.split(".")[-1].isdigit()
        # A stateless module called again (Swin's one stochastic depth for both residuals):
        # its first call keeps the name when it has a training-time setting to keep.
        first = (target not in self.named and not target.isdigit() and any(
            isinstance(getattr(child, a, None), float) for a in ("p", "momentum")))
        label = target if single or first or has_state or "." in target else None  # `a.0`
        if label is not None and not target.split(".")[-1].isdigit():
            self.named.add(target)
        item = self.child_item(child, target, label, concrete)
        if len(inputs) > 1 and not isinstance(item, DCall):
            raise locate(n, f"calls `{target}` with {len(inputs)} tensors, but it is "
                         "drafted as layers, which take one")
        if isinstance(item, DCall) and item.takes:  # only the tensors the callee reads
            inputs = [inputs[0], *(t for t, p in zip(inputs[1:], item.takes) if p)]
        arity = self.arity(child)
        if arity > 1 and not isinstance(item, DCall):
            raise locate(n, f"calls `{target}`, which returns {arity} tensors, but it is "
                         "drafted as layers, which give one")
        return _Op(inputs, item, arity=arity)

    def add_op(self, n: fx.Node) -> _Op:
        """`a + b`: an `add:` merge of two tensors."""
        tensors = [a for a in n.args if isinstance(a, fx.Node)]
        zero = [a for a in n.args if not isinstance(a, fx.Node) and a == 0]
        if len(tensors) == 1 and len(zero) == 1 and len(n.args) == 2 and not n.kwargs:
            return _Op(tensors)  # `sum(branches)` starts from 0: adding it changes nothing
        if len(tensors) != 2 or len(n.args) != 2 or n.kwargs:
            raise locate(n, "adds a constant or a scaled tensor; archc adds whole branches only")
        return _Op(tensors, merge="add")

    def max_op(self, n: fx.Node) -> _Op:
        """`torch.maximum(a, b)` (or `torch.max(a, b)`): a `max:` merge of two tensors."""
        tensors = [a for a in n.args if isinstance(a, fx.Node)]
        if len(tensors) != 2 or len(n.args) != 2 or n.kwargs:
            raise locate(n, "takes a maximum over an axis or with a constant; archc's `max:` "
                         "takes the element-wise maximum of whole branches")
        return _Op(tensors, merge="max")

    def sub_op(self, n: fx.Node) -> _Op:
        """`a - b` (or `torch.sub(a, b)`): a `sub:` merge, the first tensor minus the second
        (PoolFormer's token mixer, `pool(x) - x`)."""
        tensors = [a for a in n.args if isinstance(a, fx.Node)]
        if len(tensors) != 2 or len(n.args) != 2 or n.kwargs:
            raise locate(n, "subtracts a constant or a scaled tensor; archc's `sub:` subtracts "
                         "one whole branch from another")
        return _Op(tensors, merge="sub")

    def is_scale(self, n: fx.Node, held: list[fx.Node]) -> bool:
        """`self.layer_scale * x` with a (C, 1, 1) parameter: ConvNeXt's layer scale."""
        is_mul = n.target in MULTIPLIES or (n.op == "call_method" and n.target == "mul")
        if not is_mul or len(held) != 1 or len(n.args) != 2 or "." in str(held[0].target):
            return False
        if held[0] in self.flat_scales:
            return True  # checked by `reshaped_gammas`
        weight = getattr(self.module, str(held[0].target), None)
        return isinstance(weight, nn.Parameter) and weight.dim() == 3 and weight.shape[1:] == (1, 1)

    def scale_op(self, n: fx.Node, weight: fx.Node) -> _Op:
        """A learnable per-channel scale, labelled with the parameter's name (its key)."""
        x = next(a for a in n.args if a is not weight)
        gamma = self.flat_scales.get(weight)  # timm's (C,) gamma, reshaped to (1, C, 1, 1)
        flat = [Arg("flat", True, False, "flat")] if gamma is not None else []
        layer = kind_layer("scale", flat, what="a layer scale")
        layer.label = str((gamma or weight).target)
        return _Op([_node(x)], layer)

    def split_op(self, n: fx.Node) -> _Op:
        """`x.split(size, 1)` taken whole by its users (CSPNet's `xs, xb = x.split(c // 2,
        dim=1)`): as many equal slices as the users take, read as a chunk; were the input
        wider than that, the check after the import would say so."""
        indices = [u.args[1] for u in n.users if u.target is operator.getitem]
        taken = [i for i in indices if isinstance(i, int)]
        if len(taken) != len(n.users):
            raise locate(n, "splits the channels and uses the slices other than one by one")
        size = n.args[1] if len(n.args) > 1 else n.kwargs.get("split_size_or_sections")
        width = self.channels(_node(n.args[0]))
        if isinstance(size, int) and width:  # Res2Net's `spx[-1]`: the last of them all
            return _Op([_node(n.args[0])], chunks=-(-width // size), size=size)
        return _Op([_node(n.args[0])], chunks=max(taken) + 1,
                   size=size if isinstance(size, int) else None)

    def chunk_op(self, n: fx.Node) -> _Op:
        """`x.chunk(n, 1)`: slices for the branches of a `split:` merge."""
        pieces = n.args[1] if len(n.args) > 1 else n.kwargs.get("chunks")
        dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)
        if dim != 1 or not isinstance(pieces, int):
            raise locate(n, f"chunks along dim {dim}; archc's `split:` slices channels (dim 1)")
        return _Op([_node(n.args[0])], chunks=pieces)

    def slice_op(self, n: fx.Node) -> _Op:
        """`parts[i]` of a chunk: where a split's branch starts."""
        parent, index = n.args
        assert isinstance(parent, fx.Node)  # `op` sends only the items of a node here
        if isinstance(index, int) and parent in self.ops and self.ops[parent].arity > 1:
            return _Op([parent], output=index % self.ops[parent].arity)
        channels = _channel_range(index, self.channels(parent))
        if channels is not None and not (self.ops.get(parent) and self.ops[parent].chunks):
            start, end = channels  # GhostNet's `out[:, :self.out_chs]`
            return _Op([parent], kind_layer(
                "channel-slice", [Arg("start", start, REQUIRED, "start", positional=True),
                                  Arg("end", end, REQUIRED, "end", positional=True)],
                what="a slice of the channels"))
        if not (isinstance(index, int) and self.ops.get(parent) and self.ops[parent].chunks):
            raise locate(n, "indexes a tensor; archc has no indexing layer")
        return _Op([parent], slice=index % self.ops[parent].chunks)

    def piece(self, n: fx.Node) -> DLayer:
        """Slice `parts[i]` of a chunk or split, read in a graph: a `channel-slice`."""
        op = self.ops[n]
        chunk = self.ops[op.inputs[0]]
        width = self.channels(chunk.inputs[0])
        size = chunk.size or (-(-width // chunk.chunks) if width else None)
        if size is None or op.slice is None:
            raise locate(n, "slices channels of a tensor whose width the probe run did not "
                         "see, in a forward that is a graph")
        start = op.slice * size
        end = min(start + size, width) if width else start + size
        return kind_layer("channel-slice", [
            Arg("start", start, REQUIRED, "start", positional=True),
            Arg("end", end, REQUIRED, "end", positional=True)], what="a slice of the channels")

    def channels(self, node: fx.Node) -> int | None:
        """The channels of a module call's output or of the forward's input, when the
        probe run saw them (for `x[:, c:]`, a slice to the end)."""
        if node is self.start:
            shapes = self.shapes(self.module)
            return shapes[0][0] if shapes and shapes[0] else None
        if node.op == "call_module":
            shapes = self.shapes(self.module.get_submodule(str(node.target)))
            return shapes[1][0] if shapes and shapes[1] else None
        return None

    def mul_op(self, n: fx.Node) -> _Op:
        """`x * gate` (squeeze-and-excitation): a `mul:` merge, where archc has one."""
        tensors = [a for a in n.args if isinstance(a, fx.Node)]
        numbers = [a for a in n.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if len(tensors) == 1 and len(numbers) == 1 and not n.kwargs:  # Inception-ResNet's 0.17
            return _Op(tensors, kind_layer(
                "constant-scale", [Arg("factor", float(numbers[0]), REQUIRED, "factor",
                                       positional=True)], what="a multiplication by a constant"))
        if len(tensors) != 2 or len(n.args) != 2 or n.kwargs:
            raise locate(n, "multiplies by a constant; archc multiplies whole branches only")
        if not _has_merge("mul"):
            raise locate(n, "multiplies two tensors; this archc has no `mul:` merge")
        return _Op(tensors, merge="mul")

    def cat_op(self, n: fx.Node) -> _Op:
        """`torch.cat([...], 1)`: a `concat:` merge."""
        parts = n.args[0]
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        if parts is self.start and dim == 1:
            return _Op([parts])  # the module was called with a list: its caller concatenated it
        if dim != 1 or not isinstance(parts, (list, tuple)):
            raise locate(
                n, f"concatenates along dim {dim}; archc's `concat:` joins channels (dim 1)"
            )
        nodes = [p for p in parts if isinstance(p, fx.Node)]
        if len(nodes) != len(parts):
            raise locate(n, "concatenates something other than tensors")
        return _Op(nodes, merge="concat")

    def view_op(self, n: fx.Node) -> _Op:
        """`x.view(x.size(0), -1)` and `x.reshape(b, -1)`: a flatten; other views are not."""
        x, dims = n.args[0], n.args[1:]
        batch = dims and (dims[0] == -1 or isinstance(dims[0], fx.Node))
        if len(dims) == 2 and batch and (dims[1] == -1 or isinstance(dims[1], int)):
            return _Op([_node(x)], DLayer("flatten"))
        raise locate(n, f"reshapes with `{n.target}`{tuple(dims)}; archc only flattens (B, -1)")

    # ------------------------------------------------------------------ structure

    def dominators(self, nodes: list[fx.Node]) -> dict[fx.Node, fx.Node]:
        """Immediate dominators from the input: where the branches of each merge fork."""
        order = {n: i for i, n in enumerate(nodes)}
        doms: dict[fx.Node, set[fx.Node]] = {self.start: {self.start}}
        for n in nodes:
            if n in self.ops:
                sets = [doms[i] for i in self.ops[n].inputs if i in doms]
                if len(sets) != len(self.ops[n].inputs):
                    continue  # fed by something not computed from the input
                doms[n] = set.intersection(*sets) | {n}
        return {
            n: max(d - {n}, key=order.__getitem__) for n, d in doms.items() if n is not self.start
        }

    def chain(
        self, end: fx.Node, start: fx.Node, inside: bool = False
    ) -> list[tuple[fx.Node, DItem | None]]:
        """The items from `start` (excluded) to `end`, each with the node it computes;
        `inside` a split's branch, the slice it starts from is allowed."""
        items: list[tuple[fx.Node, DItem | None]] = []
        node = end
        while node is not start:
            op = self.ops.get(node)
            if op is None:
                raise locate(node, f"`{node.name}` is not computed from the forward's input")
            self.used[node] = self.used.get(node, 0) + 1
            if op.merge is None:
                items.append((node, op.item))
                node = op.inputs[0]
                continue
            fork = self.idom.get(node)
            if fork is None:
                raise locate(node, f"`{node.name}` merges values not computed from the input")
            mode = self.split_mode(op, fork)
            branches = [self.branch(fork, i, mode) for i in op.inputs]
            items.append((node, DMerge(mode, _flat(branches) if mode == "concat" else branches)))
            node = fork
            if mode == "split":  # the chunk is the merge's own slicing: continue before it
                self.used[fork] = self.used.get(fork, 0) + 1
                node = self.ops[fork].inputs[0]
        for n, _ in items[:-1] if inside else items:  # the first, reversed below: the slice
            if self.ops[n].chunks or self.ops[n].slice is not None:
                raise locate(n, "slices channels other than for one `split:` of all the slices")
        items.reverse()
        return items

    def split_mode(self, op: _Op, fork: fx.Node) -> str:
        """`split` for a concat of every slice of a chunk, each through its own branch."""
        chunk = self.ops.get(fork)
        assert op.merge is not None  # asked of merges only
        if op.merge != "concat" or chunk is None or not chunk.chunks:
            return op.merge
        starts = [self.slice_start(fork, end) for end in op.inputs]
        if starts != list(range(chunk.chunks)):
            return op.merge  # reported when the chunk is met on a chain
        return "split"

    def slice_start(self, fork: fx.Node, end: fx.Node) -> int | None:
        """Which slice of the chunk `fork` the chain ending at `end` starts from."""
        node = end
        while node in self.ops and self.ops[node].inputs and self.ops[node].inputs[0] is not fork:
            if self.ops[node].merge is not None:
                return None
            node = self.ops[node].inputs[0]
        return self.ops[node].slice if node in self.ops else None

    def branch(self, fork: fx.Node, end: fx.Node, mode: str) -> DItem:
        """One merge branch: the identity, a projection shortcut (of an add), or a sequence."""
        if end is fork:  # a gate multiplies the input itself: archc's `identity` layer
            # `shortcut` (which may project) for a residual or concat, else the identity
            return DShortcut(shortcut_args()) if mode in ("add", "concat", "split") else \
                DLayer("identity")
        items = [
            item for _, item in self.chain(end, fork, inside=mode == "split") if item is not None
        ]
        if not items:  # a split's slice passed through
            return DShortcut(shortcut_args())
        if len(items) == 1:
            only = items[0]
            if mode == "add" and self.ops[end].inputs == [fork] and self.ops[end].item is only:
                shortcut = self.shortcut_of(end)
                if shortcut is not None:
                    return shortcut
            return only
        return DGroup(items)

    def shortcut_of(self, end: fx.Node) -> DShortcut | None:
        """`shortcut` (labelled with the module name) when `end` calls a projection."""
        if end.op != "call_module":
            return None
        args = self.projection(self.module.get_submodule(str(end.target)))
        return None if args is None else DShortcut(args, str(end.target))

    # ------------------------------------------------------------------ graphs

    def graph_form(self, outputs: list[fx.Node]) -> list[DItem]:
        """The forward as a graph: its nodes in order, `-> name` after each whose value is
        read out of sequence, `@name` where a node reads other than the tensor before it,
        and merges of named tensors (`concat(@x, @layers_0, ...)`). A module that returns
        several tensors names them all (its block's `-> @a, @b`)."""
        several = self.is_block and len(outputs) > 1
        if len(outputs) > 1 and not several:
            raise locate(outputs[1], "returns an extra output from a forward that is a graph "
                         "(archc taps branch off a chain of series-parallel items)")
        order, alias, spliced, outs = self.graph_nodes(outputs)
        steps: list[tuple[fx.Node, fx.Node | None, list[fx.Node]]] = []
        named: set[fx.Node] = set()
        current: fx.Node | None = self.start
        for n in order:
            op = self.ops[n]
            inputs = [alias.get(i, i) for i in op.inputs]
            if op.merge is None:
                ref = inputs[0] if inputs[0] is not current else None
                steps.append((n, ref, []))
                named.update(inputs[1:])  # a module's other tensor arguments
            else:
                parts = _spliced_parts(inputs, spliced)
                steps.append((n, None, parts))
                named.update(parts)
            if steps[-1][1] is not None:
                named.add(inputs[0])
            current = n if op.arity == 1 else None  # several outputs: each read by name
        ends = [alias.get(o, o) for o in outputs]
        if several:
            named.update(ends)
        names = _tensor_names(named | {ends[0]} | set(self.extras))
        names.update(zip(self.extras, [p for p in self.tensor_params if p]))
        items: list[DItem] = [DBind([names[self.start]])] if self.start in named else []
        for n, ref, parts in steps:
            if ref is not None:
                items.append(DRef(names[ref]))
            op = self.ops[n]
            if op.slice is not None:
                items.append(self.piece(n))
            elif op.merge is None:
                assert op.item is not None  # pass-throughs are aliases, not steps
                if isinstance(op.item, DCall):
                    op.item.tensors = [names[alias.get(i, i)] for i in op.inputs[1:]]
                items.append(op.item)
            else:
                items.append(DMerge(op.merge, [DRef(names[p]) for p in parts]))
            if op.arity > 1:
                items.append(DBind(self.output_binding(n, outs.get(n, {}), named, names)))
            elif n in named:
                items.append(DBind([names[n]]))
        if several:
            items.extend(self.block_outputs(ends, names))
        elif ends[0] is not current:
            items.append(DRef(names[ends[0]]))
        return items

    def output_binding(self, call: fx.Node, outs: dict[int, fx.Node], named: set[fx.Node],
                       names: dict[fx.Node, str]) -> list[str]:
        """`-> a, b`: the names of a call's outputs up to the last one read; each must be
        read (archc reports a name never read)."""
        last = max(outs, default=0)
        found = [call, *(outs.get(i) for i in range(1, last + 1))]
        for i, node in enumerate(found):
            if node is None or node not in named:
                raise locate(call, f"reads output {last} of `{call.target}` but not output {i} "
                             "(archc names a block's outputs in order, and each must be read)")
        return [names[node] for node in found if node is not None]

    def block_outputs(self, ends: list[fx.Node], names: dict[fx.Node, str]) -> list[DItem]:
        """A tensor returned twice (SelecSLS's `[out, out]`) gets a second name."""
        items: list[DItem] = []
        taken = set(names.values())
        self.output_names = []
        for end in ends:
            name = names[end]
            if name in self.output_names:
                while name in taken:
                    name += "_"
                taken.add(name)
                items.extend([DRef(names[end]), DBind([name])])
            self.output_names.append(name)
        return items

    def graph_nodes(self, ends: list[fx.Node]) -> tuple[
        list[fx.Node], dict[fx.Node, fx.Node], dict[fx.Node, list[fx.Node]],
        dict[fx.Node, dict[int, fx.Node]],
    ]:
        """The nodes the outputs are computed from, in the forward's order; the pass-through
        ones (`contiguous`, `outs[0]` of a call) as aliases of the value they pass on; the
        concats read only by another concat (a list concatenated step by step), to splice
        into it; and per call with several outputs, the nodes that take them (`outs[i]`)."""
        alias: dict[fx.Node, fx.Node] = {}
        outs: dict[fx.Node, dict[int, fx.Node]] = {}
        needed: set[fx.Node] = set()
        todo = list(ends)
        while todo:
            node = todo.pop()
            if node is self.start or node in self.extras or node in needed:
                continue
            op = self.ops.get(node)
            if op is None:
                raise locate(node, f"`{node.name}` is not computed from the forward's input")
            needed.add(node)
            todo.extend(op.inputs)
        order = [n for n in self.graph.nodes if n in needed]
        readers: dict[fx.Node, list[fx.Node]] = {}
        for n in order:
            op = self.ops[n]
            if op.output is not None and op.output > 0:
                found = outs.setdefault(op.inputs[0], {})
                if op.output in found:  # `x[1]` read twice: one tensor
                    alias[n] = found[op.output]
                else:
                    found[op.output] = n
                continue
            if op.merge is None and op.item is None and op.slice is None:
                alias[n] = alias.get(op.inputs[0], op.inputs[0])  # (a chunk: its input)
                continue
            for i in op.inputs:
                readers.setdefault(alias.get(i, i), []).append(n)
        first = alias.get(ends[0], ends[0])
        spliced = {
            n: [alias.get(i, i) for i in self.ops[n].inputs] for n in order
            if n not in alias and self.ops[n].merge == "concat" and first is not n
            and len(readers.get(n, [])) == 1 and self.ops[readers[n][0]].merge == "concat"
        }
        taken = {o for found in outs.values() for o in found.values()}
        steps = [n for n in order if n not in alias and n not in spliced and n not in taken]
        return steps, alias, spliced, outs

    def insert_tap(self, chain: list, aux: fx.Node) -> list:
        """Put an extra output's head right after the main-path node it branches from."""
        on_main = {node: i for i, (node, _) in enumerate(chain)}
        on_main[self.start] = -1
        node, found = aux, []
        while node not in on_main:
            op = self.ops.get(node)
            if op is None or op.merge is not None:
                raise locate(aux, "an extra output that is not one chain off the main path")
            self.used[node] = self.used.get(node, 0) + 1
            found.append(op.item)
            node = op.inputs[0]
        head = [i for i in reversed(found) if i is not None]
        label = getattr(head[0], "label", None) if len(head) == 1 else None
        if len(head) == 1:
            head[0].label = None
        tap = DTap(head[0] if len(head) == 1 else DGroup(head), label)
        at = on_main[node] + 1
        return [*chain[:at], (None, tap), *chain[at:]]


def group_containers(items: list[DItem]) -> list[DItem]:
    """Calls of `blocks.0`, `blocks.1`, ... in order (a ModuleList or a Sequential called
    item by item) → one `blocks: [...]` group, so the keys stay `blocks.0...`; calls of
    named children one after the other (MetaFormer's `head.global_pool`, `head.norm`, ...)
    → one `head: [global_pool: ... norm: ...]` group, so the keys stay `head.norm...`.
    A container whose items run apart from each other (Res2Net's `convs.1`, after `bns.0`)
    keeps its items' dotted labels (`convs.1:`), which place them at those keys; so does
    one whose numbered item is a group (HRNet's `transition1.0: [conv bn relu]`), which
    unlabelled would be spliced into the container."""
    labels = [getattr(item, "label", None) for item in items]
    scattered: set[str] = set()  # containers whose items keep their dotted labels
    while True:
        try:
            return _group_containers(items, scattered)
        except _Scattered as found:
            scattered.add(found.prefix)
            for item, label in zip(items, labels):  # undo the pass's relabelling
                if label is not None:
                    item.label = label


class _Scattered(Exception):
    """The items of container `prefix` are not called one after the other."""

    def __init__(self, prefix: str):
        super().__init__(prefix)
        self.prefix = prefix


def _group_containers(items: list[DItem], scattered: set[str]) -> list[DItem]:
    out: list[DItem] = []
    named: set[str] = set()  # the prefixes of the groups of named children made so far
    names: list[DItem] = []  # `-> x`, `@x` since the last module call: inside a group that
    # goes on after them, else between it and what follows
    for item in items:
        label = getattr(item, "label", None) or ""
        prefix, _, index = label.rpartition(".")
        if isinstance(item, (DRef, DBind)) or not prefix or any(
                label.startswith(p + ".") for p in scattered):
            if isinstance(item, (DRef, DBind)):
                names.append(item)
                continue
            out.extend(names)
            names.clear()
            out.append(item)
            continue
        last = out[-1] if out else None
        group = last if isinstance(last, DGroup) and last.label == prefix else None
        members = [i for i in group.items if not isinstance(i, (DRef, DBind))] if group else []
        if index.isdigit() and not _one_module(item):
            raise _Scattered(prefix)  # unlabelled, its items would be spliced into `prefix`
        if index == "0":
            item.label = None
            out.extend(names)
            out.append(DGroup([item], prefix))
        elif group is not None and index == str(len(members)):
            item.label = None
            group.items.extend([*names, item])
        elif not index.isdigit() and group is not None and prefix in named:
            item.label = index
            group.items.extend([*names, item])
        elif not index.isdigit() and prefix not in named:
            named.add(prefix)
            item.label = index
            out.extend(names)
            out.append(DGroup([item], prefix))
        else:
            raise _Scattered(prefix)
        names.clear()
    return _numbered_in_place([*out, *names])


def _numbered_in_place(items: list[DItem]) -> list[DItem]:
    """A Sequential subclass's forward calls its children `0`, `1`, ...: where such a call
    is at that place in the body, archc numbers it so without a label."""
    place = 0
    for item in items:
        if isinstance(item, (DRef, DBind)):
            continue  # a name is not a module
        if getattr(item, "label", None) == str(place) and _one_module(item):
            item.label = None
        place += 1
    return items


def _one_module(item: DItem) -> bool:
    """Whether `item` stays one module without its label: a layer or a module call does,
    while an unlabelled group, merge or loop is spliced into its surroundings (the items
    of `transition1.0: [conv bn relu]` would be numbered `transition1.0`, `.1`, `.2`)."""
    return isinstance(item, (DLayer, DCall, DShortcut))


def _call_form(n: fx.Node, child: nn.Module) -> tuple[list[fx.Node], dict[str, Any]] | None:
    """The tensors a module call passes (the first, then the others in order) and how to
    trace the callee as called (see `trace`); None when it passes no tensor first, or a
    tensor inside other than a list of tensors."""
    try:
        signature = inspect.signature(child.forward)
        bound = signature.bind(*n.args, **n.kwargs)
    except (TypeError, ValueError):
        return None
    params = list(signature.parameters.values())
    if not params or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return None
    first = bound.arguments.get(params[0].name)
    concrete: dict[str, Any] = {}
    if isinstance(first, list) and first and all(isinstance(f, fx.Node) for f in first):
        name = params[0].name  # a list of tensors first: SelecSLS's `[x, skip]`
        concrete[name] = [_placeholder(f"{name}_{i}") for i in range(len(first))]
        first = first[0]
        tensors = list(bound.arguments[name])
    elif isinstance(first, fx.Node):
        tensors = [first]
    else:
        return None
    for p in params[1:]:
        if p.name not in bound.arguments:
            continue
        value = bound.arguments[p.name]
        inside: list[fx.Node] = []
        fx.node.map_arg(value, inside.append)
        if isinstance(value, fx.Node):
            tensors.append(value)
            concrete[p.name] = _placeholder(p.name)
        elif isinstance(value, (list, tuple)) and value and len(inside) == len(value):
            tensors.extend(inside)
            concrete[p.name] = [_placeholder(f"{p.name}_{i}") for i in range(len(value))]
        elif inside:
            return None
        else:
            concrete[p.name] = value
    return tensors, concrete


def _placeholder(name: str) -> Any:
    """A tensor argument to trace with, its node marked `ph_key` = the name its block's
    `@` parameter takes."""
    from torch.fx._symbolic_trace import PHWithMeta

    return PHWithMeta(ph_key=name)


_RESERVED = {"after", "and", "block", "else", "for", "if", "import", "in", "input", "network",
             "not", "or", "table", "tap"}


def _tensor_names(nodes: set[fx.Node]) -> dict[fx.Node, str]:
    """Each named tensor's name in the spec: the forward's own (fx's node names, `layers_0`
    for the value of `self.layers[0](x)`), never one of the language's words."""
    names: dict[fx.Node, str] = {}
    taken = {n.name for n in nodes}
    for n in sorted(nodes, key=lambda n: n.name):
        name = n.name + "_" if n.name in _RESERVED else n.name
        if not name.strip("_")[:1].isalpha():  # `_0`: the value of `self[0](x)`
            name = "t" + name.strip("_")
            while name in taken:
                name += "_"
        taken.add(name)
        names[n] = name
    return names


def _spliced_parts(inputs: list[fx.Node], spliced: dict[fx.Node, list[fx.Node]]) -> list[fx.Node]:
    """A concat's inputs with each concat read only by it replaced by that one's inputs."""
    out: list[fx.Node] = []
    for i in inputs:
        out.extend(_spliced_parts(spliced[i], spliced) if i in spliced else [i])
    return out


def add_into(first: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """`other` added into the first channels of `first` (the graph's mark of an
    `add-into:` merge; never called)."""
    raise AssertionError("a mark in the traced graph, not run")  # pragma: no cover


def _residual_into(first: Any, rest: Any) -> tuple[fx.Node, fx.Node] | None:
    """(y, s) when `first` is `y[:, :c] + s` (or `s + y[:, :c]`) and `rest` is `y[:, c:]`."""
    if not isinstance(first, fx.Node) or not isinstance(rest, fx.Node):
        return None
    if first.target not in ADDS or len(first.args) != 2 or first.kwargs:
        return None
    for head, other in (first.args, first.args[::-1]):
        if not (isinstance(head, fx.Node) and isinstance(other, fx.Node)):
            continue
        if head.target is not operator.getitem or rest.target is not operator.getitem:
            continue
        y, index = head.args
        if rest.args[0] is not y or not isinstance(index, tuple) or len(index) != 2:
            continue
        tail = rest.args[1]
        if index[0] != slice(None) or not isinstance(tail, tuple) or tail[0] != slice(None):
            continue
        c = index[1].stop if isinstance(index[1], slice) else None
        whole = isinstance(c, int) and c > 0
        if whole and index[1] in (slice(0, c), slice(None, c)) and tail[1:] == (slice(c, None),):
            return _node(y), other
    return None


def _equal_split(n: fx.Node) -> bool:
    """`x.split(size, 1)` (or `torch.split`) into slices of one whole size, on channels."""
    size = n.args[1] if len(n.args) > 1 else n.kwargs.get("split_size_or_sections",
                                                            n.kwargs.get("split_size"))
    dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)
    return isinstance(size, int) and isinstance(dim, int) and dim == 1


def _split_sizes(n: fx.Node) -> list[int] | None:
    """The sizes of `x.split([a, b, ...], 1)` (or `torch.split`); None for other splits."""
    sizes = n.args[1] if len(n.args) > 1 else n.kwargs.get("split_size_or_sections",
                                                             n.kwargs.get("split_size"))
    dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)
    if not isinstance(sizes, (list, tuple)) or dim != 1:
        return None
    return list(sizes) if all(isinstance(s, int) and s > 0 for s in sizes) else None


def _channel_range(index: Any, channels: int | None = None) -> tuple[int, int] | None:
    """(start, end) of `x[:, start:end]` (trailing `:` allowed; `x[:, start:]` of an input
    with `channels`); None for other indexing."""
    if not isinstance(index, tuple) or len(index) < 2 or index[0] != slice(None):
        return None
    if any(i != slice(None) for i in index[2:]) or not isinstance(index[1], slice):
        return None
    start, end, step = index[1].start or 0, index[1].stop, index[1].step
    end = channels if end is None else end
    if step not in (None, 1) or not isinstance(start, int) or not isinstance(end, int):
        return None
    return (start, end) if 0 <= start < end else None


def _has_merge(mode: str) -> bool:
    """True when this archc's IR has the merge `mode` (`mul:` came with the CNN zoo)."""
    return mode in get_args(ir.Merge.model_fields["mode"].annotation)


def library_functions() -> dict:
    """Functions of libraries that are one archc layer (traced as one call, not into):
    torchvision's ShuffleNetV2 `channel_shuffle(x, groups)`."""
    import sys

    found = {}
    shufflenet = sys.modules.get("torchvision.models.shufflenetv2")
    if shufflenet is not None:
        found[shufflenet.channel_shuffle] = lambda args, kwargs: kind_layer(
            "channel-shuffle", [Arg("groups", args[1], REQUIRED, "groups", positional=True)]
        )
    return found


def _flat(branches: list[DItem]) -> list[DItem]:
    """`cat(cat(a, b), c)` of one input is `cat(a, b, c)`: a 4-way `torch.cat`, split in two
    by `running_concats` or written nested, becomes one `concat:` of 4 branches again. A
    branch that is a bare merge starts at the same fork as its parent (a path before it would
    make it a group), and an unlabelled merge adds no level to the weights' names."""
    out: list[DItem] = []
    for branch in branches:
        if isinstance(branch, DMerge) and branch.mode == "concat" and branch.label is None:
            out.extend(branch.branches)
        else:
            out.append(branch)
    return out
