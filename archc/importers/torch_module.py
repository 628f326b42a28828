"""`archc import torchvision:resnet50` / `pkg.module:factory`: a PyTorch module → archc IR.

The pipeline: build the module from its source → run it once to learn every module's
input and output shapes → draft each module (torch_layers for torch.nn layers,
nn.Sequential in order, torch.fx for any other forward) → unify the instances of each
module class into a block with parameters (torch_blocks) → the network → check the spec
right away against the source module (torch_verify).

Labels keep the module names, so the spec's state_dict keys are the source's and a
strict `load_state_dict` of the source's weights works. What has no archc form is a
diagnostic naming the module path and the op, never dropped.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import sys
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics, did_you_mean
from archc.compiler.parse import notation_kind
from archc.importers import leaf_rows  # noqa: F401  (the libraries' rows join the table)
from archc.importers.leaves import OWN, Leaf, leaf_for, make_layer, place
from archc.importers.torch_blocks import Blocks, Emitter, Unified, fold_loops, same
from archc.importers.torch_draft import (
    NUM_CLASSES,
    DCall,
    DGroup,
    DItem,
    DLayer,
    nest_numbered,
    shortcut_args,
    walk,
)
from archc.importers.torch_graph import GraphBody, Located, Untraceable, trace
from archc.importers.torch_layers import Unsupported
from archc.layers import lookup

# Diagnostic codes: the import itself failed / something has no archc form / the written
# spec does not reproduce its source.
E_IMPORT, E_NO_FORM, E_MISMATCH = "E002", "E101", "E203"

# Input sizes tried, in order, when the source does not say what its input is.
PROBE_SHAPES = ((3, 224, 224), (3, 32, 32), (1, 28, 28), (3, 299, 299), (3, 64, 64))


class SourceProblem(Exception):
    """The source cannot be imported or built; the message is the one line shown."""


def load(
    source: str,
    diags: Diagnostics,
    *,
    args: dict | None = None,
    input_shape: tuple[int, int, int] | None = None,
    check_shape: tuple[int, int, int] | None = None,
    verify: bool = True,
) -> ir.SpecFile | None:
    """The IR of the module that `source` builds, checked against it; None on errors.

    `args` are the factory's keyword arguments (strings are read as Python literals
    where they are ones). `input_shape` (C, H, W) is the spec's input; without it the
    first of `PROBE_SHAPES` the module accepts. `check_shape` is the input the check
    runs at (default: `input_shape`).
    """
    where = ir.Span(file=source)
    try:
        model, name, classes = build_source(source, args or {})
        shapes, input_shape = probe(model, input_shape)
    except SourceProblem as problem:
        diags.error(E_IMPORT, where, str(problem))
        return None
    guesses: list[str] = []
    spec = to_spec(model, name, input_shape, shapes, diags, source, classes, guesses)
    if spec is None or not verify:
        return spec
    from archc.importers.torch_verify import verify_spec

    before = len(diags.items)
    if not verify_spec(spec, model, check_shape or input_shape, diags, where):
        for i in range(before, len(diags.items)):  # say what the import had to guess
            diags.items[i] = replace(diags.items[i], notes=(*diags.items[i].notes, *guesses))
        return None
    return spec


# --------------------------------------------------------------------------- the source


def literal_args(args: dict) -> dict:
    """`--arg k=v` values as Python values where they read as literals (`10`, `True`)."""
    out = {}
    for key, value in args.items():
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass  # a plain string argument
        out[key] = value
    return out


def build_source(source: str, args: dict) -> tuple[nn.Module, str, int | None]:
    """The module `source` names, built with `args`, the network name it suggests, and the
    number of classes it was built for (when it has a `num_classes` argument)."""
    module_name, _, attr = source.partition(":")
    if not module_name or not attr:
        raise SourceProblem(f"`{source}` is not `module:callable` (e.g. torchvision:resnet50)")
    args = literal_args(args)
    if module_name == "torchvision":
        factory = _torchvision_builder(attr)
        args.setdefault("weights", None)  # never download
    else:
        factory = _attribute(_import(module_name), module_name, attr)
    if isinstance(factory, nn.Module):
        if args:
            raise SourceProblem(f"`{source}` is a module instance; it takes no --arg")
        model = factory
    elif callable(factory):
        try:
            model = factory(**args)
        except Exception as error:  # the user's factory failed: say how, in one line
            raise SourceProblem(f"`{source}` failed: {_one_line(error)}") from None
    else:
        raise SourceProblem(f"`{source}` is a {type(factory).__name__}, not a callable")
    if not isinstance(model, nn.Module):
        raise SourceProblem(f"`{source}` returned a {type(model).__name__}, not an nn.Module")
    classes = num_classes_of(factory, model, args)
    named = args.get("model_name")  # timm:create_model --arg model_name=resnet18
    return model.eval(), snake(named if isinstance(named, str) else attr.split(".")[-1]), classes


def _torchvision_builder(name: str):
    import torchvision.models as models

    names = models.list_models()
    if name not in names:
        hint = did_you_mean(name, names)
        raise SourceProblem(f"torchvision has no model `{name}`" + (f"; {hint}" if hint else ""))
    return models.get_model_builder(name)


def _import(module_name: str):
    """Import the user's module; the working directory is importable, as with `python -m`."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise SourceProblem(
                f"cannot import `{module_name}`: no module named `{error.name}`"
            ) from None
        raise SourceProblem(f"importing `{module_name}` failed: {_one_line(error)}") from None
    except Exception as error:
        raise SourceProblem(f"importing `{module_name}` failed: {_one_line(error)}") from None


def _attribute(module, module_name: str, attr: str):
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            hint = did_you_mean(part, public)
            raise SourceProblem(f"`{module_name}` has no `{attr}`" + (f"; {hint}" if hint else ""))
        obj = getattr(obj, part)
    return obj


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def snake(name: str) -> str:
    """`BasicConv2d` → `basic_conv2d`, `resnet50` stays."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"\W+", "_", name).strip("_").lower() or "net"


# --------------------------------------------------------------------------- shapes


def probe(model: nn.Module, shape: tuple | None) -> tuple[dict[Any, tuple], tuple]:
    """Run the model once; every module's (input shape, output shape) by id, and the input;
    a module that returns several tensors, `("arity", id)`: (how many,).

    In training mode first, so that auxiliary heads run too (archc checks them at every
    size): Inception-v3 runs at 224×224 in eval mode, but its auxiliary head needs 299×299.
    A model that does not run in training mode at any size is probed in eval mode."""
    tried = [shape] if shape else PROBE_SHAPES
    last = None
    for training, candidate in ((t, c) for t in (True, False) for c in tried):
        seen: dict[Any, tuple] = {}

        def record(module, inputs, output, seen=seen):
            if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
                seen.setdefault(id(module), (tuple(inputs[0].shape[1:]), tuple(output.shape[1:])))
            several = isinstance(output, (list, tuple)) and len(output) > 1
            if several and all(isinstance(o, torch.Tensor) for o in output):
                seen.setdefault(("arity", id(module)), (len(output),))

        hooks = [m.register_forward_hook(record) for m in model.modules()]
        try:
            _shapes_only(model, candidate, training)
            return seen, tuple(candidate)
        except Exception as error:  # a size the model does not take: try the next
            last = error
        finally:
            for h in hooks:
                h.remove()
    sizes = " or ".join("x".join(map(str, s)) for s in tried)
    assert last is not None  # every size was tried, and each failed
    raise SourceProblem(f"the module does not run on an input of {sizes}: {_one_line(last)}")


def _shapes_only(model: nn.Module, shape: tuple, training: bool = False) -> None:
    """Run the model for its shapes: on the meta device (no arithmetic, so a ResNet-50 at
    224×224 takes milliseconds), or for real where an op has no meta kernel. A batch of two,
    as batch norm in training mode needs; the modules' own modes are restored after."""
    from torch.func import functional_call

    modes = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        with torch.no_grad():
            try:
                meta = {
                    k: torch.empty_like(v, device="meta")
                    for k, v in [*model.named_parameters(), *model.named_buffers()]
                }
                functional_call(model, meta, (torch.zeros(2, *shape, device="meta"),))
            except NotImplementedError:
                if training:  # for real, training mode would move the running statistics
                    raise
                model(torch.zeros(2, *shape))
    finally:
        for m, mode in modes.items():
            m.training = mode


# --------------------------------------------------------------------------- drafting


def class_key(module: nn.Module) -> Any:
    """What makes instances one block: their class (every plain nn.Sequential is one)."""
    return type(module)


class Drafter:
    """Drafts every module of a model once; collects what has no archc form."""

    def __init__(self, shapes: dict[Any, tuple], diags: Diagnostics, source: str):
        self.shapes, self.diags, self.source = shapes, diags, source
        self.bodies: dict[int, list[DItem]] = {}
        self.instances: dict[Any, list[nn.Module]] = {}
        self.reached: set[str] = set()
        self.covered: set[str] = set()  # modules a leaf row stands for, children included
        self.guesses: list[str] = []  # modules fx could not trace, read as their children
        self.repeats: dict[tuple, int] = {}  # a problem → how many more instances have it
        self.tensor_params: dict[int, list[str | None]] = {}  # id → its `@` parameters
        self.output_names: dict[int, list[str]] = {}  # id → its block's `-> @a, @b`
        self.ok = True

    def problem(
        self, path: str, message: str, owner: Any = None, located: Located | None = None
    ) -> None:
        """Record what has no archc form, at the forward line when known; the other
        instances of one class with the same problem are counted in the first's notes."""
        self.ok = False
        span = _where(owner, self.source)
        notes: tuple[str, ...] = ()
        if located is not None and located.file and located.line is not None:
            span = ir.Span(
                file=located.file, line=located.line, column=1, end_line=located.line, end_column=2
            )
            notes = (f"in the forward: {located.code}",) if located.code else ()
        key = (owner, span, message)
        if key in self.repeats:
            self.repeats[key] += 1
            return
        self.repeats[key] = 0
        self.diags.error(
            E_NO_FORM,
            span,
            f"`{path or '<root>'}`: {message}",
            "rewrite that part with archc layers, or leave it out of the import",
            notes,
        )

    def note_repeats(self) -> None:
        """Say on each reported problem how many more instances of its class have it."""
        for (_, span, message), more in self.repeats.items():
            if more:
                for i, d in enumerate(self.diags.items):
                    if d.span == span and d.message.endswith(message):
                        note = f"and {more} more instance{'s' if more > 1 else ''} of the class"
                        self.diags.items[i] = replace(d, notes=(*d.notes, note))

    def body(self, module: nn.Module, path: str,
             concrete: dict[str, Any] | None = None) -> list[DItem]:
        """The draft body of a module instance (cached by instance); `concrete` says how
        its caller passes several tensors (see `trace`)."""
        if id(module) in self.bodies:
            return self.bodies[id(module)]
        if concrete is not None:
            self.bodies[id(module)] = self.traced(module, path, concrete)
            return self.bodies[id(module)]
        row = leaf_for(module)
        if row is not None and row.block:
            items = self.from_row(row, module, path)
            if items is not None:
                self.bodies[id(module)] = items
                return items
        if _runs_in_order(module):
            items = [
                self.child(c, _join(path, n), None if n.isdigit() else n, module)
                for n, c in module.named_children()
            ]
            self.check_numbering(module, path, items)
        else:
            items = self.traced(module, path)
        self.bodies[id(module)] = items
        return items

    def check_numbering(self, module: nn.Module, path: str, items: list[DItem]) -> None:
        """A child at a numbered place that became several layers (timm's norm-act as
        `bn  relu`) moves the numbers of the children after it: report it where a later
        numbered child has weights, whose keys would then not line up."""
        children = list(module.named_children())
        for i, ((name, child), item) in enumerate(zip(children, items)):
            count = len(item.items) if isinstance(item, DGroup) and item.label is None else 1
            later = [n for n, c in children[i + 1:] if n.isdigit() and _has_state(c)]
            if name.isdigit() and count > 1 and later:
                self.problem(
                    _join(path, name),
                    f"{type(child).__name__} becomes {count} layers at a numbered "
                    f"place, which would renumber the weights of `{_join(path, later[0])}`",
                    type(module),
                )

    def traced(self, module: nn.Module, path: str,
               concrete: dict[str, Any] | None = None) -> list[DItem]:
        """The draft body of a module with its own forward, traced in training mode (as
        its caller calls it, with `concrete`)."""
        was_training = module.training
        module.train()  # what runs in training only (auxiliary heads) is traced too
        try:
            graph = trace(module, concrete)
            drafted = GraphBody(
                module,
                graph,
                lambda c, t, label, form: self.child(c, _join(path, t), label, module, form),
                self.projection,
                lambda m: self.shapes.get(id(m)),
                lambda m: self.shapes.get(("arity", id(m)), (1,))[0],
                is_block=bool(path),
            )
            items = drafted.body()
            if drafted.tensor_params:
                self.tensor_params[id(module)] = drafted.tensor_params
            if drafted.output_names:
                self.output_names[id(module)] = drafted.output_names
            scales = [i.label for i in walk(items) if isinstance(i, DLayer) and i.callee == "scale"]
            self.reached.update(_join(path, label) for label in scales if label)
            return items
        except Located as problem:
            self.problem(path, f"{type(module).__name__}.forward {problem}", type(module), problem)
        except Untraceable as problem:
            fallback = self.in_order(module, path, problem)
            if fallback is not None:
                return fallback
            self.problem(path, f"{type(module).__name__}: {problem}", type(module))
        except Unsupported as problem:
            self.problem(path, f"{type(module).__name__}: {problem}", type(module))
        finally:
            module.train(was_training)
        return []

    def in_order(self, module: nn.Module, path: str, problem: Untraceable) -> list[DItem] | None:
        """A module fx cannot trace, read as its children called one after another, each
        drafted on its own (the check after the import says whether that was right);
        None when it has no children or holds tensors of its own."""
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if own or not any(True for _ in module.children()):
            return None
        self.guesses.append(
            f"`{path or '<root>'}`: {type(module).__name__}.forward "
            f"{str(problem).replace('its forward ', '', 1)}, so it "
            "was read as its children in order"
        )
        return _RowContext(self, module, path).children()

    def check_all_called(self, model: nn.Module) -> None:
        """A module with weights that the forward never calls would be lost: report it."""
        for path, module in model.named_modules():
            own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            if not own or self.is_covered(path):
                continue
            row = leaf_for(module)
            if row is not None and not row.block and path not in self.reached:
                self.problem(
                    path,
                    f"this {type(module).__name__} has weights but the forward never calls it",
                    type(model),
                )
            elif row is None or row.block:  # a block's own tensor: only as a `scale`
                for name, _ in own:
                    if _join(path, name) not in self.reached:
                        self.problem(
                            _join(path, name),
                            f"{type(module).__name__}'s own tensor `{name}` is not used as a "
                            "layer scale (x · γ with γ of shape (C, 1, 1))",
                            type(module),
                        )

    def is_covered(self, path: str) -> bool:
        """Whether a leaf row stands for the module at `path` or one above it."""
        parts = path.split(".")
        return any(".".join(parts[:n]) in self.covered for n in range(1, len(parts) + 1))

    def child(self, module: nn.Module, path: str, label: str | None, parent: nn.Module,
              concrete: dict[str, Any] | None = None) -> DItem:
        """The draft item of a call of `module` (a layer, a group, or a block call); one
        called with several tensors (`concrete` says how) is always a block call."""
        self.reached.add(path)
        if concrete is not None:
            if id(module) not in self.bodies:
                self.instances.setdefault(class_key(module), []).append(module)
            self.body(module, path, concrete)
            return DCall(module, path, label, takes=self.tensor_params.get(id(module), []))
        row = leaf_for(module)
        if row is not None and not row.block:
            items = self.from_row(row, module, path, parent)
            if items is not None:
                _unname_stateless(items, module)
            if items is not None and label is None and _names_children(items):
                self.bodies[id(module)] = items  # keyed `3.conv`: a numbered block call
                self.instances.setdefault(class_key(module), []).append(module)
                return DCall(module, path, label)
            if items is not None:
                self.covered.add(path)
                try:
                    return place(items, label) or DLayer("identity", label=label)
                except Unsupported as problem:
                    self.problem(path, f"{type(module).__name__}: {problem}", type(parent))
                    return DLayer("identity", label=label)
        if type(module) is nn.Sequential and label is not None:
            return DGroup(self.body(module, path), label)
        if type(module).__module__.startswith("torch.nn") and type(module) is not nn.Sequential:
            self.problem(path, f"nn.{type(module).__name__} has no archc layer kind", type(parent))
            return DLayer("identity", label=label)
        if id(module) not in self.bodies:
            self.instances.setdefault(class_key(module), []).append(module)
        self.body(module, path)
        return DCall(module, path, label)

    def from_row(
        self, row: Leaf, module: nn.Module, path: str, parent: nn.Module | None = None
    ) -> list[DItem] | None:
        """The items of `module` by its row of the leaf table; None when the row declines
        it (then it is read as usual), [] after a reported problem."""
        try:
            items = row.items(module, _RowContext(self, module, path))
        except Unsupported as problem:
            self.problem(path, f"{type(module).__name__}: {problem}", type(parent or module))
            return []
        if items is not None:
            own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            self.reached.update(_join(path, name) for name, _ in own)  # the row keys them
        return items

    def projection(self, module: nn.Module) -> list | None:
        """`shortcut`'s options when `module` is the 1×1 projection it would build, else None."""
        parts = list(module.children()) if type(module) is nn.Sequential else [module]
        names = [n for n, _ in module.named_children()]
        if type(module) is nn.Sequential and names != [str(i) for i in range(len(parts))]:
            return None
        if not parts or len(parts) > 2 or not isinstance(parts[0], nn.Conv2d):
            return None
        conv = parts[0]
        plain = (conv.kernel_size, conv.padding, conv.dilation, conv.groups) == (
            (1, 1),
            (0, 0),
            (1, 1),
            1,
        )
        square = len(set(conv.stride)) == 1
        bn = parts[1] if len(parts) == 2 else None
        default_bn = bn is None or (
            type(bn) is nn.BatchNorm2d
            and bn.eps == 1e-5
            and bn.momentum == 0.1
            and bn.affine
            and bn.track_running_stats
        )
        if not (plain and square and default_bn and id(module) in self.shapes):
            return None
        inp, out = self.shapes[id(module)]
        return shortcut_args(bn is not None, conv.bias is not None, inp == out)


class _RowContext:
    """What a leaf row may ask of the drafter about the module it converts."""

    def __init__(self, drafter: Drafter, module: nn.Module, path: str):
        self.drafter, self.module, self.path = drafter, module, path

    @property
    def shapes(self) -> tuple[tuple, tuple] | None:
        """The module's (input, output) shapes without the batch, when it ran."""
        return self.drafter.shapes.get(id(self.module))

    def child(self, name: str) -> DItem | None:
        """Child `name` (or a deeper module, `paths.0`) drafted as any module is, labelled
        `name` (numbered when it ends in a number); None when it is missing, or a named
        identity or empty sequence."""
        try:  # `paths.0`: a member of a child ModuleList
            sub = self.module.get_submodule(name)
        except AttributeError:
            return None
        numbered = name.rpartition(".")[2].isdigit()
        empty = isinstance(sub, nn.Identity) or (type(sub) is nn.Sequential and not len(sub))
        if empty and not numbered:
            return None
        return self.drafter.child(sub, _join(self.path, name), None if numbered else name,
                                  self.module)

    def children(self) -> list[DItem]:
        """Every child drafted, in the order they were registered."""
        found = [self.child(name) for name, _ in self.module.named_children()]
        return [item for item in found if item is not None]

    def layer(self, kind: str, *, label: str | None = None, own: bool = False,
              **args: Any) -> DLayer:
        """A layer of registry `kind` (arguments equal to its defaults left out); with
        `own`, its tensors are the module's own; a label that names a child module stands
        for all of it (`conv_proj` of a patch-embed)."""
        label = OWN if own else label
        if label is not None and label != OWN and isinstance(getattr(self.module, label, None),
                                                             nn.Module):
            self.drafter.reached.add(_join(self.path, label))
            self.drafter.covered.add(_join(self.path, label))
        return make_layer(kind, label, **args)


def _unname_stateless(items: list[DItem], module: nn.Module) -> None:
    """Beside an item keyed as the module's own, children without tensors (its activation)
    need no name: they are numbered, as a spec writes `bn1: bn  relu`."""
    if not any(getattr(i, "label", None) == OWN for i in items):
        return
    for item in items:
        child = getattr(module, item.label or "", None) if item is not None else None
        if isinstance(child, nn.Module) and not _has_state(child):
            item.label = None


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _names_children(items: list[DItem]) -> bool:
    """Whether a row's items key tensors inside the module (labels other than its own)."""
    return any(getattr(i, "label", None) not in (None, OWN) for i in items if i is not None)


def _runs_in_order(module: nn.Module) -> bool:
    """An nn.Sequential (or subclass) whose forward is Sequential's own."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(owner: Any, source: str) -> ir.Span:
    """The span of a class's definition (where its forward is), else the source itself."""
    try:
        file = inspect.getsourcefile(owner)
        _, line = inspect.getsourcelines(owner)
        assert file is not None  # getsourcelines found the source, so it has a file
        return ir.Span(file=file, line=line, column=1, end_line=line, end_column=2)
    except (TypeError, OSError):
        return ir.Span(file=source)


# --------------------------------------------------------------------------- the spec


def block_names(instances: dict[Any, list]) -> dict[Any, str]:
    """A block name per class: its snake-case name, never a layer kind's or another's."""
    taken: set[str] = {"shortcut"}
    names = {}
    for key in instances:
        # A plain nn.Sequential at a numbered place (EfficientNet's features.1): a stage.
        base = "stage" if key is nn.Sequential else snake(key.__name__)
        if lookup(base) is not None or notation_kind(base) is not None:
            base += "_block"
        if notation_kind(base) is not None:  # `mlp_block` still reads as the layer `mlp`
            base = f"block_{base.removesuffix('_block')}"
        name, n = base, 2
        while name in taken:
            name, n = f"{base}{n}", n + 1
        taken.add(name)
        names[key] = name
    return names


def to_spec(
    model: nn.Module,
    name: str,
    input_shape: tuple,
    shapes: dict[Any, tuple],
    diags: Diagnostics,
    source: str,
    num_classes: int | None = None,
    guesses: list[str] | None = None,
) -> ir.SpecFile | None:
    """The IR of `model`: one block per module class, then the network; None on problems.
    With `num_classes`, the fc layers with that many outputs read `FC-{num_classes}`.
    `guesses` receives a line for each module fx could not trace, read as its children."""
    drafter = Drafter(shapes, diags, source)
    root = drafter.body(model, "")
    if guesses is not None:
        guesses.extend(drafter.guesses)
    if drafter.ok:  # after another problem, the modules it hides would all be reported
        drafter.check_all_called(model)
    drafter.note_repeats()
    if not drafter.ok:
        return None
    for items in drafter.bodies.values():  # `conv_kxk.0`, `conv_kxk.1` → `conv_kxk:` numbered
        nest_numbered(items)
        if not items:  # a module that computes nothing (DropPath at 0): a block needs a body
            items.append(DLayer("identity"))
    instances = drafter.instances
    blocks = Blocks(
        drafter.bodies,
        instances,
        block_names(instances),
        class_key,
        lambda m: id(m) in shapes and shapes[id(m)][0] != shapes[id(m)][1],
        drafter.tensor_params,
        drafter.output_names,
    )
    classes = _bind_num_classes(drafter.bodies.values(), num_classes)
    body = fold_loops(blocks.resolve(root))
    unified = Unified([body], root=True)
    network = ir.NetworkDef(
        name=name,
        params=[ir.Param(name="num_classes", default=ir.Num(value=num_classes))]
        if classes and num_classes is not None else [],  # (it binds only a given count)
        input=ir.InputDecl(dims=[ir.Num(value=d) for d in input_shape]),
        body=Emitter(unified).items(body),
    )
    bad = _bad_labels(network.body) + [
        label for b in blocks.definitions for label in _bad_labels(b.body)
    ]
    for label in bad:
        drafter.problem(label, "this module path is not a valid archc label", type(model))
    if bad:
        return None
    return ir.SpecFile(path=f"{name}.arch", statements=[*blocks.definitions, network])


def _bind_num_classes(bodies, num_classes: int | None) -> bool:
    """Make each body's last weighted layer, when it is an fc with `num_classes` outputs,
    say so (`FC-{num_classes}`); True when there was one. A hidden fc that happens to
    have as many outputs is left alone."""
    found = False
    for body in bodies:
        weighted = [i for i in walk(body) if isinstance(i, DLayer) and i.callee in WEIGHTED]
        last = weighted[-1] if weighted else None
        if last is None or last.callee != "fc" or num_classes is None:
            continue
        for arg in last.args:
            if arg.name == "out" and same(arg.value, num_classes):
                arg.value, found = NUM_CLASSES, True
    return found


WEIGHTED = ("fc", "conv")


def num_classes_of(factory: Any, model: nn.Module, args: dict) -> int | None:
    """The classes the factory was asked for: `num_classes` in its arguments, or the default
    of that parameter of the factory or of the module's class."""
    if isinstance(args.get("num_classes"), int):
        return args["num_classes"]
    for function in (factory, type(model).__init__):
        try:
            param = inspect.signature(function).parameters.get("num_classes")
        except (TypeError, ValueError):
            continue
        if param is not None and isinstance(param.default, int):
            return param.default
    return None


# `denselayer{i}` inside a loop; `convs.1` (a dotted label) for a container called apart
_LABEL = re.compile(r"[A-Za-z_]([\w-]|\{i\})*(\.([\w-]|\{i\})+)*\Z")


def _bad_labels(items: list) -> list[str]:
    bad = []
    for item in items:
        if item.label is not None and not _LABEL.match(item.label):
            bad.append(item.label)
        inner = getattr(item, "items", None) or getattr(item, "branches", None) or []
        if isinstance(item, ir.Tap):
            inner = [item.head]
        bad += _bad_labels(inner)
    return bad
