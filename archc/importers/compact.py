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

from archc.compiler import ir
from archc.importers.common import RESERVED, identifier

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
    """Replace merges that recur (same structure, numbers aside) by calls of new blocks.

    The activations that follow every occurrence alike (ResNet's relu after the add) go
    into the block too.
    """
    replace: dict[int, tuple[ir.Layer, int]] = {}
    claimed: set[int] = set()
    for indices in _recurring(items):
        trail = _common_trail(items, indices)
        lead = _common_lead(items, indices, trail)
        units = _with_defaults(
            [ir.Group(items=items[i - lead:i + 1 + trail]) for i in indices])
        spans = {j for i in indices for j in range(i - lead, i + 1 + trail)}
        if units is None or spans & claimed:  # another block already holds some of them
            continue
        claimed |= spans
        block, calls = _make_block(units, names)
        blocks.append(block)
        replace.update({i - lead: (call, lead + 1 + trail) for i, call in zip(indices, calls)})
    out, i = [], 0
    while i < len(items):
        call, width = replace.get(i, (items[i], 1))
        out.append(call)
        i += width
    return out


def _recurring(items: list) -> list[list[int]]:
    """Indices of the merges, grouped by structure (layer kinds, no numbers), twice or more."""
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        if isinstance(item, ir.Merge) and item.repeat is None:
            groups.setdefault(_shape(item), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _shape(item: Any) -> Any:
    """Structure without numbers or labels: kinds, nesting and non-numeric arguments."""
    if isinstance(item, ir.Layer):
        words = tuple(sorted((a.name or "", _plain(a.value)) for a in item.args
                             if not isinstance(a.value, ir.Num)))
        return ("L", item.callee, words, item.repeat is not None)
    if isinstance(item, ir.Group):
        return ("G", tuple(_shape(i) for i in item.items), item.repeat is not None)
    if isinstance(item, ir.Merge):
        return ("M", item.mode, tuple(_shape(b) for b in item.branches))
    if isinstance(item, ir.Tap):
        return ("T", _shape(item.head))
    return ("?", type(item).__name__)


def _common_trail(items: list, indices: list[int]) -> int:
    """How many activation layers follow every occurrence, the same each time."""
    from archc.layers import REGISTRY

    limit = min(b - a - 1 for a, b in zip(indices, [*indices[1:], len(items)]))
    count = 0
    while count < limit:
        after = [items[i + 1 + count] for i in indices]
        first = after[0]
        kind = REGISTRY.get(getattr(first, "callee", ""))
        if not (isinstance(first, ir.Layer) and kind is not None and first.repeat is None
                and kind.style.group == "activation"
                and all(_key(a) == _key(first) for a in after)):
            break
        count += 1
    return count


def _common_lead(items: list, indices: list[int], trail: int) -> int:
    """How many layers before every occurrence have the same kinds (numbers aside): the
    squeeze conv of SqueezeNet's fire module belongs to it."""
    starts = [0, *[i + 1 + trail for i in indices[:-1]]]  # where the previous unit ends
    limit = min(i - start for i, start in zip(indices, starts))
    count = 0
    while count < limit:
        before = [items[i - 1 - count] for i in indices]
        if not all(isinstance(b, ir.Layer) and b.repeat is None for b in before) or len(
            {_shape(b) for b in before}
        ) != 1:
            break
        count += 1
    return count


def _with_defaults(units: list[ir.Group]) -> list[ir.Group] | None:
    """The units with every argument any of them gives spelled out in all (registry
    defaults), so their numbers line up; None when an argument has no default."""
    from archc.layers import REGISTRY

    per_unit = [list(_layers(u)) for u in units]
    filled: list[list[ir.Layer]] = [[] for _ in units]
    for position in zip(*per_unit):
        kind = REGISTRY.get(position[0].callee)
        wanted: list[str] = []
        for lay in position:
            wanted += [n for n in (_arg_name(kind, a) for a in lay.args) if n not in wanted]
        for slot, lay in enumerate(position):
            have = {_arg_name(kind, a): a for a in lay.args}
            args = [a for a in lay.args if a.name is None]  # positional ones stay first
            for name in wanted:  # then one order in every unit, so the columns line up
                if name in have:
                    if have[name].name is not None:
                        args.append(have[name])
                    continue
                param = kind.param(name) if kind else None
                if param is None or param.required or param.default is None:
                    return None
                args.append(ir.Arg(name=name, value=_expr(param.default), span=lay.span))
            filled[slot].append(lay.model_copy(update={"args": args}))
    return [_replace_layers(u, iter(f)) for u, f in zip(units, filled)]


def _arg_name(kind, arg: ir.Arg) -> str:
    if arg.name is None and kind is not None and kind.params:
        return kind.params[0].name  # the importers give only a first parameter by position
    return arg.name or ""


def _expr(value: Any) -> ir.Expr:
    if isinstance(value, bool):
        return ir.Name(id="true" if value else "false")
    if isinstance(value, str):
        return ir.Name(id=value)
    return ir.Num(value=value)


def _plain(expr: Any) -> Any:
    """An argument's value as Python data: 3, True, 'same', (1, 3)."""
    if isinstance(expr, ir.Num):
        return expr.value
    if isinstance(expr, ir.Name):
        return {"true": True, "false": False}.get(expr.id, expr.id)
    if isinstance(expr, ir.Tuple):
        return tuple(_plain(i) for i in expr.items)
    return getattr(expr, "value", None)


def _replace_layers(item: Any, layers: Any) -> Any:
    """A copy of `item` whose layers, in textual order, are taken from the iterator."""
    if isinstance(item, ir.Layer):
        return next(layers)
    if isinstance(item, ir.Group):
        return item.model_copy(update={"items": [_replace_layers(i, layers) for i in item.items]})
    if isinstance(item, ir.Merge):
        return item.model_copy(
            update={"branches": [_replace_layers(b, layers) for b in item.branches]})
    if isinstance(item, ir.Tap):
        return item.model_copy(update={"head": _replace_layers(item.head, layers)})
    return item


def _layers(item: Any):
    """Every layer inside an item, in textual order."""
    if isinstance(item, ir.Layer):
        yield item
    for child in getattr(item, "items", None) or getattr(item, "branches", None) or []:
        yield from _layers(child)
    if isinstance(item, ir.Tap):
        yield from _layers(item.head)


def _make_block(units: list[ir.Group], names: set[str]) -> tuple[ir.BlockDef, list[ir.Layer]]:
    """The block for recurring units, and one call per unit."""
    columns = _columns(units)  # (argument name, layer, values per unit) of every number
    ids = _instance_ids(units)
    roles = _roles(units, ids)
    params, exprs = _parameters(columns, roles)
    body = _fill(units[0], exprs, roles[0] if roles else None)
    name = _block_name(ids, units[0].items[0], names)
    block = ir.BlockDef(name=name, params=[ir.Param(name=p) for p, _ in params], body=body.items,
                        span=units[0].items[0].span, name_span=units[0].items[0].span)
    calls = [
        ir.Layer(callee=name, args=[ir.Arg(value=ir.Num(value=col[1][u])) for _, col in params],
                 label=identifier(ids[u][1]) if ids else None, span=unit.items[0].span,
                 callee_span=unit.items[0].span)
        for u, unit in enumerate(units)
    ]
    return block, calls


def _columns(units: list[ir.Group]) -> list[tuple[str, int, tuple]]:
    """Every numeric argument: (its name, the layer's position, its value in each unit)."""
    from archc.layers import REGISTRY

    per_unit = [[(_arg_name(REGISTRY.get(lay.callee), a), n, a.value.value)
                 for n, lay in enumerate(_layers(u)) for a in lay.args
                 if isinstance(a.value, ir.Num)] for u in units]
    return [(cells[0][0], cells[0][1], tuple(c[2] for c in cells)) for cells in zip(*per_unit)]


def _parameters(columns, roles) -> tuple[list[tuple[str, tuple]], dict[int, ir.Expr]]:
    """Block parameters for the numbers that differ between units.

    Columns equal in every unit share one parameter; a column that is a whole multiple of
    another in every unit is written as that multiple (`conv1-{c * 4}`), as papers do.
    """
    params: list[tuple[str, tuple]] = []  # (name, its column)
    exprs: dict[int, ir.Expr] = {}
    first_use: dict[str, int] = {}
    # the narrowest column first, so the others read as its multiples (c, c * 4)
    order = sorted(range(len(columns)), key=lambda i: (min(columns[i][2]), i))
    for index in order:
        arg, layer, values = columns[index]
        if len(set(values)) == 1:
            continue
        found = _as_multiple(values, params)
        if found is not None:
            exprs[index] = found
            used = found if isinstance(found, ir.Name) else found.left
            first_use[used.id] = min(first_use[used.id], index)
            continue
        role = roles[0][layer] if roles else ""
        base = SHORT.get(arg, arg)
        params.append((f"{base}_{role}" if role else f"{base}{index + 1}", (arg, values)))
        exprs[index] = ir.Name(id=params[-1][0])
        first_use[params[-1][0]] = index
    params.sort(key=lambda p: first_use[p[0]])  # the signature in textual order
    renamed = _short_names(params)
    exprs = {i: _rename(e, renamed) for i, e in exprs.items()}
    return [(renamed[n], col) for n, col in params], exprs


def _as_multiple(values: tuple, params: list) -> ir.Expr | None:
    for name, (_, base) in params:
        if all(isinstance(v, int) for v in (*values, *base)) and all(base):
            ratios = {v / b for v, b in zip(values, base)}
            if len(ratios) == 1:
                ratio = ratios.pop()
                if ratio == 1:
                    return ir.Name(id=name)
                if ratio == int(ratio):
                    return ir.BinOp(op="*", left=ir.Name(id=name), right=ir.Num(value=int(ratio)))
                if (1 / ratio) == int(1 / ratio):
                    return ir.BinOp(op="//", left=ir.Name(id=name),
                                    right=ir.Num(value=int(1 / ratio)))
    return None


def _short_names(params: list) -> dict[str, str]:
    """`c_branch2a` → `c` when it is the only parameter of its kind."""
    taken: set[str] = set()
    renamed = {}
    for name, (arg, _) in params:
        alone = sum(1 for _, (a, _) in params if a == arg) == 1
        renamed[name] = identifier(SHORT.get(arg, arg) if alone else name, taken)
    return renamed


def _rename(expr: ir.Expr, names: dict[str, str]) -> ir.Expr:
    if isinstance(expr, ir.Name):
        return ir.Name(id=names.get(expr.id, expr.id))
    if isinstance(expr, ir.BinOp):
        return expr.model_copy(update={"left": _rename(expr.left, names)})
    return expr


def _instance_ids(units: list[ir.Group]) -> list[tuple[str, str]] | None:
    """Per unit (its id, its call label): `inception_3a/1x1`, ... → ("3a", "inception_3a").

    The id is what the unit's layer names share, less what all units share; the label is
    the first layer's name up to the id. None when the names do not say.
    """
    shared = []
    for unit in units:
        labels = [lay.label for lay in _layers(unit) if lay.label]
        if not labels:
            return None
        shared.append(_common_substring(labels))
    head = commonprefix(shared)
    tail = commonprefix([s[::-1] for s in shared])[::-1]
    ids = [s[len(head):len(s) - len(tail)] for s in shared]
    if not all(ids) or len(set(ids)) != len(ids):
        return None
    out = []
    for unit, ident in zip(units, ids):
        first = next(lay.label for lay in _layers(unit) if lay.label)
        at = first.find(ident)
        end = at + len(ident)
        while end < len(first) and first[end].isalnum():  # `2` of res2a_... is `2a`
            end += 1
        out.append((first[at:end], first[:end].strip("_")))
    if len({ident for ident, _ in out}) != len(out):
        return None
    return out


def _common_substring(words: list[str]) -> str:
    """The longest string that every word contains."""
    first = min(words, key=len)
    for size in range(len(first), 0, -1):
        for start in range(len(first) - size + 1):
            part = first[start:start + size]
            if all(part in w for w in words):
                return part
    return ""


def _roles(units: list[ir.Group], ids) -> list[list[str]] | None:
    """Per unit, each layer's name without the unit's id: the labels inside the block."""
    if ids is None:
        return None
    roles = []
    for unit, (ident, label) in zip(units, ids):
        names = []
        for lay in _layers(unit):
            text = lay.label or ""
            text = text[len(label):] if text.startswith(label) else text.replace(ident, "", 1)
            names.append("_".join(w for w in text.split("_") if w))
        roles.append(names)
    labelled = [r for r in roles[0] if r]
    if any(r != roles[0] for r in roles) or len(set(labelled)) != len(labelled):
        return None
    return roles


def _fill(unit: ir.Group, exprs: dict[int, ir.Expr], roles: list[str] | None) -> ir.Group:
    """The block body: `unit` with numbers made parameters, defaults dropped, roles as labels."""
    from archc.importers.common import is_default
    from archc.layers import REGISTRY

    counter = iter(range(10**9))
    role_of = iter(roles or [])

    def layer(lay: ir.Layer) -> ir.Layer:
        kind = REGISTRY.get(lay.callee)
        args = []
        for arg in lay.args:
            if isinstance(arg.value, ir.Num):
                index = next(counter)
                if index in exprs:
                    args.append(arg.model_copy(update={"value": exprs[index]}))
                    continue
            name = _arg_name(kind, arg)
            if not is_default(lay.callee, name, _plain(arg.value)):
                args.append(arg)
        role = next(role_of, "")
        label = None
        if roles is not None and role and lay.label:
            label = identifier(f"{lay.callee}_{role}" if role[0].isdigit() else role)
        return lay.model_copy(update={"args": args, "label": label})

    layers = [layer(lay) for lay in _layers(unit)]
    return _replace_layers(unit, iter(layers))


def _block_name(ids, first: Any, names: set[str]) -> str:
    """From the units' names (`inception_3a` → inception), else from what the merge does."""
    from archc.compiler.parse import notation_kind

    base = ""
    if ids:
        ident, label = ids[0]
        base = label[:len(label) - len(ident)].strip("_")
    if len(base) < 4 or not base.isidentifier():
        mode = getattr(first, "mode", "")
        identity = any(isinstance(b, ir.Layer) and b.callee == "identity"
                       for b in getattr(first, "branches", []))
        base = {"add": "residual" if identity else "residual_proj",
                "concat": "branches", "mul": "gate"}.get(mode, "unit")
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
    """The (length, count) of the repeated run at `start` that saves the most items.

    Linear in practice, not cubic: a unit length is tried only where the next copy would
    start with the same key, and the search stops once no longer unit can save more than
    the best found (a unit of `length` saves at most `remaining - length` items).
    """
    best, saved = (1, 1), 0
    remaining = len(keys) - start
    for length in range(1, remaining // 2 + 1):
        if saved >= remaining - length:
            break
        if keys[start + length - 1] is None:
            break
        if keys[start + length] != keys[start]:
            continue
        unit = keys[start:start + length]
        count = 1
        while keys[start + count * length:start + (count + 1) * length] == unit:
            count += 1
        if count >= 2 and (count - 1) * length > saved:
            best, saved = (length, count), (count - 1) * length
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
