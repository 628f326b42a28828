"""Make an imported network read like a hand-written spec: blocks and `xN` repeats.

- Merges that recur with the same structure, differing only in numbers (GoogLeNet's
  inception modules, darknet's residual units), become one `block` whose parameters are
  the numbers that differ; each occurrence becomes a call, labelled with what its
  layers' names share (`inception_3a`).
- Runs of identical items in a sequence become one item (or a group) with `xN`.

Both change only how the network is written: the layers, their order and their
parameters stay the same, so the weights conversion can follow the uncompacted order.
"""

from __future__ import annotations

from os.path import commonprefix
from typing import Any

from .. import ir
from .common import RESERVED, identifier

SHORT = {"out": "c"}  # a block parameter for channels reads as c_...


def compact(spec: ir.SpecFile) -> ir.SpecFile:
    """The spec with recurring merges as blocks and repeated runs as `xN`."""
    network = spec.statements[0]
    blocks: list[ir.BlockDef] = []
    body = _blocks(network.body, blocks, {network.name})
    body = _repeats(body)
    blocks = [b.model_copy(update={"body": _repeats(b.body)}) for b in blocks]
    network = network.model_copy(update={"body": body})
    return spec.model_copy(update={"statements": [*blocks, network]})


# --------------------------------------------------------------------------- keys


def _key(item: Any, holes: bool = False) -> Any:
    """What makes two items the same: structure without labels (numbers as holes)."""
    data = ir.structure(item)
    return _strip(data, holes)


def _strip(data: Any, holes: bool) -> Any:
    if isinstance(data, dict):
        value = data.get("value")
        if holes and "name" in data and isinstance(value, dict) and value.get("type") == "num":
            return ("arg", data["name"], "#")  # a layer argument's number may differ
        return tuple(sorted((k, _strip(v, holes)) for k, v in data.items() if k != "label"))
    if isinstance(data, list):
        return tuple(_strip(v, holes) for v in data)
    return data


# --------------------------------------------------------------------------- blocks


def _blocks(items: list, blocks: list[ir.BlockDef], names: set[str]) -> list:
    """Replace merges that recur (same structure, numbers aside) by calls of new blocks."""
    merges = [i for i in items if isinstance(i, ir.Merge) and i.repeat is None]
    by_key: dict[Any, list[ir.Merge]] = {}
    for merge in merges:
        by_key.setdefault(_key(merge, holes=True), []).append(merge)
    calls: dict[int, ir.Layer] = {}
    for group in by_key.values():
        if len(group) < 2:
            continue
        block, group_calls = _make_block(group, names)
        blocks.append(block)
        calls.update({id(m): c for m, c in zip(group, group_calls)})
    return [calls.get(id(i), i) for i in items]


def _make_block(instances: list[ir.Merge], names: set[str]) -> tuple[ir.BlockDef, list[ir.Layer]]:
    values = [_numbers(m) for m in instances]
    differ = [i for i in range(len(values[0])) if len({v[i][1] for v in values}) > 1]
    prefixes = [_label_prefix(m) for m in instances]
    roles_agree = len({_roles(m, p) for m, p in zip(instances, prefixes)}) == 1
    taken: set[str] = set()
    params = []
    for i in differ:
        arg, label = values[0][i][0], values[0][i][2]
        role = label[len(prefixes[0]):] if label and roles_agree else ""
        params.append(identifier(f"{SHORT.get(arg, arg)}_{role}" if role else
                                 f"{SHORT.get(arg, arg)}{len(params) + 1}", taken))
    holes = {i: p for i, p in zip(differ, params)}
    body_item = _fill(instances[0], holes, prefixes[0] if roles_agree else None)
    name = _block_name(prefixes[0], instances[0].mode, names)
    block = ir.BlockDef(name=name, params=[ir.Param(name=p) for p in params], body=[body_item],
                        span=instances[0].span, name_span=instances[0].span)
    labels = [p.rstrip("_") for p in prefixes]
    use_labels = all(labels) and len(set(labels)) == len(labels)
    calls = [
        ir.Layer(
            callee=name,
            args=[ir.Arg(value=ir.Num(value=v[i][1])) for i in differ],
            label=identifier(label) if use_labels else None,
            span=m.span,
            callee_span=m.span,
        )
        for m, v, label in zip(instances, values, labels)
    ]
    return block, calls


def _layers(item: Any):
    """Every layer inside an item, in textual order."""
    if isinstance(item, ir.Layer):
        yield item
    for child in getattr(item, "items", None) or getattr(item, "branches", None) or []:
        yield from _layers(child)
    if isinstance(item, ir.Tap):
        yield from _layers(item.head)


def _numbers(item: Any) -> list[tuple[str, Any, str | None]]:
    """(argument name, number, layer label) of every numeric argument, in textual order."""
    return [
        (arg.name or "value", arg.value.value, layer.label)
        for layer in _layers(item)
        for arg in layer.args
        if isinstance(arg.value, ir.Num)
    ]


def _label_prefix(item: Any) -> str:
    labels = [lay.label for lay in _layers(item) if lay.label]
    return commonprefix(labels) if len(labels) > 1 else ""


def _roles(item: Any, prefix: str) -> tuple:
    return tuple((lay.label or "")[len(prefix):] for lay in _layers(item))


def _fill(item: Any, holes: dict[int, str], prefix: str | None) -> Any:
    """A copy of `item` with the numbers at `holes` made parameters and labels made roles."""
    counter = iter(range(10**9))

    def layer(lay: ir.Layer) -> ir.Layer:
        args = []
        for arg in lay.args:
            if isinstance(arg.value, ir.Num):
                index = next(counter)
                if index in holes:
                    arg = arg.model_copy(update={"value": ir.Name(id=holes[index])})
            args.append(arg)
        return lay.model_copy(update={"args": args, "label": _role_label(lay, prefix)})

    def walk(node: Any) -> Any:
        if isinstance(node, ir.Layer):
            return layer(node)
        if isinstance(node, ir.Group):
            return node.model_copy(update={"items": [walk(i) for i in node.items]})
        if isinstance(node, ir.Merge):
            return node.model_copy(update={"branches": [walk(b) for b in node.branches]})
        if isinstance(node, ir.Tap):
            return node.model_copy(update={"head": walk(node.head)})
        return node

    return walk(item)


def _role_label(lay: ir.Layer, prefix: str | None) -> str | None:
    if prefix is None or not lay.label:
        return None
    role = lay.label[len(prefix):].strip("_")
    if not role:
        return None
    return identifier(f"{lay.callee}_{role}" if role[0].isdigit() else role)


def _block_name(prefix: str, mode: str, names: set[str]) -> str:
    from ..parse import notation_kind

    words = [w for w in prefix.strip("_").split("_") if w and not any(c.isdigit() for c in w)]
    base = "_".join(words) or {"add": "residual", "concat": "branches"}.get(mode, "unit")
    if notation_kind(base) or base.lower() in RESERVED:
        base += "_block"
    name, n = base, 2
    while name in names:
        name, n = f"{base}{n}", n + 1
    names.add(name)
    return name


# --------------------------------------------------------------------------- repeats


def _repeats(items: list) -> list:
    """Runs of identical items (labels aside) as one item with `xN`, innermost first."""
    items = [_inside(i) for i in items]
    keys = [None if isinstance(i, ir.Tap) or i.repeat is not None else _key(i) for i in items]
    out: list = []
    i = 0
    while i < len(items):
        length, count = _best_run(keys, i)
        if count < 2:
            out.append(items[i])
            i += 1
            continue
        chunk = [_unlabelled(x) for x in items[i:i + length]]
        unit = chunk[0] if length == 1 else ir.Group(items=chunk)
        out.append(unit.model_copy(update={"repeat": ir.Num(value=count)}))
        i += length * count
    return out


def _best_run(keys: list, start: int) -> tuple[int, int]:
    """The (length, count) of the repeated run at `start` that saves the most items."""
    best = (1, 1)
    for length in range(1, (len(keys) - start) // 2 + 1):
        unit = keys[start:start + length]
        if None in unit:
            break
        count = 1
        while keys[start + count * length:start + (count + 1) * length] == unit:
            count += 1
        if count >= 2 and (count - 1) * length > (best[1] - 1) * best[0]:
            best = (length, count)
    return best


def _inside(item: Any) -> Any:
    if isinstance(item, ir.Group) and item.repeat is None:
        return item.model_copy(update={"items": _repeats(item.items)})
    if isinstance(item, ir.Merge):
        return item.model_copy(update={"branches": [_inside(b) for b in item.branches]})
    return item


def _unlabelled(item: Any) -> Any:
    """A copy without labels: the copies of a repeat are numbered, not named."""
    if isinstance(item, ir.Group):
        items = [_unlabelled(i) for i in item.items]
        return item.model_copy(update={"label": None, "items": items})
    if isinstance(item, ir.Merge):
        return item.model_copy(update={"label": None,
                                       "branches": [_unlabelled(b) for b in item.branches]})
    return item.model_copy(update={"label": None})
