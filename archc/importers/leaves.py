"""The table of leaf mappings: a module class → archc items, with its state_dict keys.

The PyTorch importer asks this table about every module before it reads the module's
forward. A row (`Leaf`) maps a class to the archc items that compute what the module does;
each item's label says where its weights are, and so lines up the state_dict keys:

- `OWN`: the module's own tensors (`bn1.weight` of a batch norm subclass);
- a name: the tensors of that child (`conv` → `head.conv.weight`), or a tensor of the
  module itself for the kinds whose key is their label (`class_token`);
- none: an item without weights (an activation after the norm).

A row with `block=True` gives the body of a block instead: the module stays one block
call, defined once for all its instances, and the body is read from the row rather than
traced (torchvision's EncoderBlock, whose forward fx cannot read as layers).

Rows are matched by class, most specific first (the module's MRO); a row of a base class
also matches a subclass that keeps the base's forward, or any subclass with
`subclasses=True`. Classes of optional libraries (timm, torchvision) are named as
"package.module:Class", so the table never imports them. Users add rows with
`archc.register_leaf`; a later row for a class replaces an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from torch import nn

from archc.importers.torch_draft import REQUIRED, Arg, DGroup, DItem, DLayer
from archc.importers.torch_layers import MODULES, Unsupported, kind_layer
from archc.layers import lookup as lookup_kind
from archc.layers.core import REQUIRED as KIND_REQUIRED

OWN = "@own"  # the label of an item whose tensors are the module's own


class Context(Protocol):
    """What a row may ask about the module it converts."""

    path: str  # the module's path in the model (`layer1.0.bn1`)

    @property
    def shapes(self) -> tuple[tuple, tuple] | None:
        """The module's (input, output) shapes without the batch, when it ran."""

    def child(self, name: str) -> DItem | None:
        """The draft of child `name` (or of a deeper module, `paths.0`) as the importer
        drafts any module (a layer, a group, a block call), labelled `name` (unlabelled when
        it ends in a number); None for a missing child or an identity."""

    def children(self) -> list[DItem]:
        """The drafts of every child, in the order they were registered."""

    def layer(self, kind: str, *, label: str | None = None, own: bool = False,
              **args: Any) -> DLayer:
        """A layer of a registry `kind` with these arguments (those equal to the kind's
        defaults are left out of the spec); `own`: its tensors are the module's own,
        `label`: they are those of the child (or the module's tensor) of that name."""


Items = Callable[[Any, Context], "list[DItem] | None"]


@dataclass(frozen=True)
class Leaf:
    """One row: instances of `cls` become `items(module, context)`; None from `items`
    means "not this instance: read it as usual"."""

    cls: type | str
    items: Items
    block: bool = False
    subclasses: bool = False


_TABLE: dict[type | str, Leaf] = {}


def register_leaf(cls: type | str, items: Items, *, block: bool = False,
                  subclasses: bool = False) -> Leaf:
    """Add a row for `cls` (a class, or "package.module:Class"); it replaces any earlier
    row for the same class. Returns the row."""
    if not isinstance(cls, (type, str)):
        raise TypeError(f"register_leaf takes a class or 'module:Class', not {cls!r}")
    if isinstance(cls, str) and ":" not in cls:
        raise ValueError(f"'{cls}' is not 'package.module:Class'")
    row = Leaf(cls, items, block, subclasses)
    _TABLE[cls] = row
    return row


def remove_leaf(cls: type | str) -> Leaf | None:
    """Take the row for `cls` out of the table; the row, or None when there was none."""
    return _TABLE.pop(cls, None)


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def leaf_for(module: nn.Module) -> Leaf | None:
    """The row for `module`: the first class of its MRO with a row that matches it."""
    mine = type(module)
    for cls in mine.__mro__:
        row = _TABLE.get(cls) or _TABLE.get(_name(cls))
        if row is None:
            continue
        if cls is mine or row.subclasses or getattr(mine, "forward") is getattr(cls, "forward"):
            return row
        return None  # a subclass with a forward of its own: read that forward
    return None


def rows() -> list[Leaf]:
    """Every row of the table."""
    return list(_TABLE.values())


def make_layer(kind: str, label: str | None = None, **args: Any) -> DLayer:
    """A draft layer of `kind` whose arguments equal to the kind's defaults are left out."""
    found = lookup_kind(kind)
    if found is None:
        raise Unsupported(f"needs the layer kind `{kind}`, which archc lacks")
    defaults = {p.name: p.default for p in found.params}
    unknown = [name for name in args if name not in defaults]
    if unknown:
        raise TypeError(f"`{kind}` has no parameter {', '.join(unknown)}")
    slots = [
        Arg(name, value, REQUIRED if defaults[name] is KIND_REQUIRED else defaults[name], name)
        for name, value in args.items()
    ]
    layer = kind_layer(found.name, slots)
    layer.label = label
    return layer


def place(items: list[DItem], label: str | None) -> DItem | None:
    """A row's items where the module was: labelled with the module's label where they
    hold its own tensors; in a group labelled so when they name the module's children."""
    items = [i for i in items if i is not None]
    named = [i for i in items if getattr(i, "label", None) not in (None, OWN)]
    if named:
        if any(getattr(i, "label", None) == OWN for i in items):
            raise Unsupported("a row that keys items both as the module's own and by name")
        return DGroup(items, label)
    for item in items:
        if getattr(item, "label", None) == OWN:
            item.label = label
    if len(items) == 1:
        if items[0].label is None:
            items[0].label = label
        return items[0]
    return DGroup(items) if items else None


def _layer_row(convert: Callable[[Any], DLayer]) -> Items:
    return lambda module, context: [convert(module)]


def _linear(module: nn.Linear, context: Context) -> list[DItem]:
    """An nn.Linear: `fc` on features; on an image it runs over the last axis, the
    channels after a permute (ConvNeXt's MLP), which is `channel-fc(last=true)`."""
    shapes = context.shapes
    if shapes is None or len(shapes[0]) != 3:
        return [MODULES[nn.Linear](module)]
    return [kind_layer(
        "channel-fc",
        [
            Arg("out", module.out_features, key="c"),
            Arg("bias", module.bias is not None, True, "bias"),
            Arg("last", True, False, "last"),
        ],
        what="an nn.Linear on an image",
    )]


for _cls, _convert in MODULES.items():  # torch.nn's layers: one layer each
    register_leaf(_cls, _layer_row(_convert))
register_leaf(nn.Linear, _linear)
