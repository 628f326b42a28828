"""`archc diff A B`: what one network adds, removes or changes with respect to another.

Each side is a spec (`specs/resnet18.arch`), one variant of a table or one network of a
file (`specs/vgg.arch:A`, `specs/vgg.arch:vgg_bn`), or a zoo member by its torchvision
name (`resnet34`, `vgg16_bn`: specs/zoo.yaml).
Both are checked, then aligned module by module: the children of two matching scopes are
aligned as sequences (difflib over keys that leave out the numbering, so an inserted layer
does not make every later one look renamed), and matching scopes are compared inside. A
block or group that exists on one side only is one row, with its parameter and MAC count.
Rows carry shape, parameter and MAC deltas; the totals close the report. Nothing here
imports torch.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archc.backends.summary import compact, layer_text, scope_title
from archc.compiler.graph import (
    Call,
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
    layers,
)
from archc.layers import fmt
from archc.zoo import find_spec


class DiffInputError(Exception):
    """A side that names no spec: one line for the user."""


@dataclass
class Side:
    """One network of the comparison and how the user named it."""

    label: str
    network: Network


@dataclass
class Row:
    """One difference: `added` (only in B), `removed` (only in A) or `changed`."""

    change: str
    path: str  # in B for added and changed rows, in A for removed ones
    what: str  # `conv 3×3, 64` or `basic(c=64, stride=1)`
    kind: str  # the layer kind, or `block` / `group`
    shape_a: list[int] | None = None
    shape_b: list[int] | None = None
    params_a: int = 0
    params_b: int = 0
    macs_a: int = 0
    macs_b: int = 0
    path_a: str | None = None
    notes: list[str] = field(default_factory=list)  # what changed, in words

    @property
    def params_delta(self) -> int:
        """Parameters of B minus A."""
        return self.params_b - self.params_a

    @property
    def macs_delta(self) -> int:
        """MACs of B minus A."""
        return self.macs_b - self.macs_a


@dataclass
class Diff:
    """The rows of a comparison, in B's order (removed rows where they stood in A)."""

    a: Side
    b: Side
    rows: list[Row]

    def counts(self) -> dict[str, int]:
        """How many rows of each change."""
        return {c: sum(r.change == c for r in self.rows) for c in ("added", "removed", "changed")}


# --------------------------------------------------------------------------- inputs


def load_side(text: str, params: dict[str, Any] | None = None,
              input_shape: tuple[int, ...] | None = None):
    """Check one side, given as `PATH`, `PATH:VARIANT`, `PATH:NETWORK` or a zoo name.

    Returns the `CheckResult` (it may hold errors) and the label; raises `DiffInputError`
    when the text names no spec file.
    """
    from archc.api import check

    entry = None if Path(text).is_file() else _zoo().get(text)
    if entry is not None:  # a torchvision builder's name, as specs/zoo.yaml writes it
        result = check(entry.spec, {**entry.sets, **(params or {})}, network=entry.network,
                       variant=entry.variant, input_shape=input_shape)
        return result, text
    path, _, choice = _split(text)
    network, variant = _choice(path, choice) if choice else (None, None)
    result = check(path, params, network=network, variant=variant, input_shape=input_shape)
    return result, text


def _zoo() -> dict:
    from archc.zoo import ZOO_FILE, load_zoo

    return load_zoo() if ZOO_FILE.is_file() else {}


def _split(text: str) -> tuple[Path, str, str]:
    """(spec path, ':', variant or network): the file part is what exists."""
    candidates = [(text, "", "")]
    if ":" in text:
        head, _, tail = text.rpartition(":")
        candidates.insert(0, (head, ":", tail))
    for head, sep, tail in candidates:
        path = _find(head)
        if path is not None:
            return path, sep, tail
    raise DiffInputError(f"`{text}` is neither a spec file nor a zoo network")


def _find(name: str) -> Path | None:
    path = Path(name)
    if path.is_file():
        return path
    if path.suffix or "/" in name:
        return None
    return find_spec(name)


def _choice(path: Path, choice: str) -> tuple[str | None, str | None]:
    """`vgg_bn` names a network of the file; anything else is a variant of its table."""
    from archc.compiler.diagnostics import Diagnostics
    from archc.compiler.sources import load_program

    program = load_program(str(path), Diagnostics())
    return (choice, None) if choice in program.networks else (None, choice)


# --------------------------------------------------------------------------- alignment


def diff(a: Side, b: Side) -> Diff:
    """Align two networks and collect their differences."""
    rows: list[Row] = []
    _scopes(a.network.root, b.network.root, rows)
    return Diff(a, b, rows)


def _key(module: Module) -> tuple:
    """What must agree for two modules to be 'the same one': never their number."""
    name = "#" if module.name.isdigit() else module.name
    if isinstance(module, LayerNode):  # the input shape tells apart two `conv3-64` of VGG-B
        return name, module.kind, layer_text(module), module.in_shape
    return (name, module.kind, module.title, tuple(sorted(map(str, module.args.items()))),
            module.in_shape)


def _scopes(a: Scope, b: Scope, rows: list[Row]) -> None:
    """Align the children of two matching scopes and recurse into the pairs; named tensors
    wired differently (`concat(@a, @b)` against `concat(@b, @a)`) are a change of the scope."""
    before, after = _wiring(a), _wiring(b)
    if before != after:
        rows.append(Row("changed", b.path, "wiring", "group" if b.kind != "block" else "block",
                        _shape(a.out_shape), _shape(b.out_shape), path_a=a.path,
                        notes=[f"named tensors: {' '.join(before) or 'none'} → "
                               f"{' '.join(after) or 'none'}"]))
    steps = _slid(_alignment(a.children, b.children), a.children, b.children)
    run: list[tuple[str, Module]] = []
    for x, y in steps + [(None, None)]:
        if x is not None and y is not None or (x is None and y is None):
            rows.extend(_run("removed", [m for c, m in run if c == "removed"]))
            rows.extend(_run("added", [m for c, m in run if c == "added"]))
            run = []
            if x is not None:
                _pair(x, y, rows)
        else:
            run.append(("removed", x) if y is None else ("added", y))


def _wiring(scope: Scope) -> list[str]:
    """How a scope's named tensors flow, in plan order: `-> a`, `@a`, `call(@a)->b`."""
    words: list[str] = []

    def visit(op: Op) -> None:
        if isinstance(op, Save):
            words.append(f"-> {op.name}")
        elif isinstance(op, Load):
            words.append(f"@{op.name}")
        elif isinstance(op, Seq):
            for inner in op.ops:
                visit(inner)
        elif isinstance(op, Parallel):
            for branch in op.branches:
                visit(branch)
        elif isinstance(op, TapOut):
            visit(op.op)
        elif isinstance(op, Call):
            child = scope.child(op.child)
            # a block's tensor arguments (a group's are its own row's, by the same names)
            if isinstance(child, Scope) and child.kind == "block" and (child.reads
                                                                        or child.writes):
                words.append(f"{child.name}(" + ", ".join(f"@{r}" for r in child.reads) + ")"
                             + "".join(f" -> {w}" for w in child.writes if w))

    visit(scope.plan)
    return words + [f"-> @{name}" for name in scope.outputs]


Step = tuple  # (module of A or None, module of B or None)


def _alignment(old: list[Module], new: list[Module]) -> list[Step]:
    """difflib's alignment as steps: pairs, and modules of one side only."""
    matcher = difflib.SequenceMatcher(None, [_key(m) for m in old], [_key(m) for m in new],
                                      autojunk=False)
    steps: list[Step] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        xs, ys = old[i1:i2], new[j1:j2]
        paired = 0
        for x, y in zip(xs, ys):  # in a replacement, modules of the same kind are changes
            if op != "equal" and not _comparable(x, y):
                break
            steps.append((x, y))
            paired += 1
        steps.extend((x, None) for x in xs[paired:])
        steps.extend((None, y) for y in ys[paired:])
    return steps


def _slid(steps: list[Step], old: list[Module], new: list[Module]) -> list[Step]:
    """Slide each one-sided run so that it starts at a layer with weights: VGG-B adds
    `conv relu` after `conv relu`, which difflib may report as `relu conv`."""
    steps = list(steps)
    for side in (0, 1):
        i = 0
        while i < len(steps):
            if not _one_sided(steps[i], side):
                i += 1
                continue
            j = i
            while j < len(steps) and _one_sided(steps[j], side):
                j += 1
            for _ in range(j - i):  # at most the run's length
                first = steps[i][side]
                if j >= len(steps) or None in steps[j] or _is_head(first):
                    break
                after = steps[j]
                if _key(after[side]) != _key(first):
                    break
                # the pair after the run takes the run's first module; the run moves on
                steps[i:j + 1] = [_with(after, side, first), *steps[i + 1:j], _only(after, side)]
                i, j = i + 1, j + 1
            i = j
    return steps


def _one_sided(step: Step, side: int) -> bool:
    return step[side] is not None and step[1 - side] is None


def _is_head(module: Module) -> bool:
    return isinstance(module, Scope) or bool(module.n_params)


def _with(step: Step, side: int, module: Module) -> Step:
    return (module, step[1]) if side == 0 else (step[0], module)


def _only(step: Step, side: int) -> Step:
    return (step[0], None) if side == 0 else (None, step[1])


def _run(change: str, modules: list[Module]) -> list[Row]:
    """Rows for modules on one side only; a parameter-free layer that keeps the shape (the
    relu after a conv) joins the row of the layer before it: one row per added unit."""
    rows: list[Row] = []
    for module in modules:
        joins = (rows and isinstance(module, LayerNode) and not module.n_params
                 and module.in_shape == module.out_shape and rows[-1].kind != "block")
        if joins:
            rows[-1].what += f" + {layer_text(module)}"
        else:
            rows.append(_whole(change, module))
    return rows


def _comparable(x: Module, y: Module) -> bool:
    if isinstance(x, LayerNode) and isinstance(y, LayerNode):
        return x.kind == y.kind
    # scopes: the same block, or the same label (a stage written another way)
    return (isinstance(x, Scope) and isinstance(y, Scope)
            and (x.title == y.title or x.name == y.name and not x.name.isdigit()))


def _pair(x: Module, y: Module, rows: list[Row]) -> None:
    """Two modules that correspond: recurse into scopes, compare layers."""
    if isinstance(x, Scope) and isinstance(y, Scope):
        _scopes(x, y, rows)
        return
    if not (isinstance(x, LayerNode) and isinstance(y, LayerNode)):
        rows.extend(_run("removed", [x]) + _run("added", [y]))
        return
    notes = _layer_changes(x, y)
    if notes:
        rows.append(Row("changed", y.path, _change_text(x, y), y.kind, _shape(x.out_shape),
                        _shape(y.out_shape), x.n_params, y.n_params, x.macs, y.macs,
                        path_a=x.path, notes=notes))


def _layer_changes(x: LayerNode, y: LayerNode) -> list[str]:
    notes = []
    if x.params != y.params:
        changed = sorted(k for k in {*x.params, *y.params} if x.params.get(k) != y.params.get(k))
        notes.extend(f"{k}: {x.params.get(k)} → {y.params.get(k)}" for k in changed)
    if x.in_shape != y.in_shape:
        notes.append(f"input {fmt(x.in_shape)} → {fmt(y.in_shape)}")
    if x.out_shape != y.out_shape:
        notes.append(f"output {fmt(x.out_shape)} → {fmt(y.out_shape)}")
    return notes


def _change_text(x: LayerNode, y: LayerNode) -> str:
    before, after = layer_text(x), layer_text(y)
    return before if before == after else f"{before} → {after}"


def _whole(change: str, module: Module) -> Row:
    """A module on one side only, as one row (a block with its totals)."""
    inner = list(layers(module))
    params, macs = sum(m.n_params for m in inner), sum(m.macs for m in inner)
    if isinstance(module, LayerNode):
        what, kind = layer_text(module), module.kind
    else:
        what = scope_title(module) or f"[{len(inner)} layers]"
        kind = module.kind
    shape = _shape(module.out_shape)
    if change == "added":
        return Row(change, module.path, what, kind, shape_b=shape, params_b=params, macs_b=macs)
    return Row(change, module.path, what, kind, shape_a=shape, params_a=params, macs_a=macs,
               path_a=module.path)


def _shape(shape) -> list[int] | None:
    return list(shape) if shape is not None else None


# --------------------------------------------------------------------------- output


SIGNS = {"added": "+", "removed": "-", "changed": "~"}


def _signed(n: int, as_count=compact) -> str:
    return "0" if n == 0 else ("+" if n > 0 else "-") + as_count(abs(n))


def format_text(d: Diff) -> str:
    """The rows as a table, then the totals."""
    a, b = d.a.network, d.b.network
    counts = d.counts()
    out = [f"{d.a.label} → {d.b.label}: " + ", ".join(f"{n} {c}" for c, n in counts.items())]
    table = [("", "path", "layer", "output", "params", "MACs")]
    for row in d.rows:
        shape = row.shape_a if row.change == "removed" else row.shape_b
        if row.change == "changed" and row.shape_a != row.shape_b:
            shape_text = f"{_fmt(row.shape_a)} → {_fmt(row.shape_b)}"
        else:
            shape_text = _fmt(shape)
        notes = [n for n in row.notes if not n.startswith("output ")]  # the column shows it
        what = row.what + (f"  ({'; '.join(notes)})" if notes else "")
        table.append((SIGNS[row.change], row.path, what, shape_text,
                      _signed(row.params_delta, lambda n: f"{n:,}"), _signed(row.macs_delta)))
    if d.rows:
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for r in table:
            cells = [c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(r, widths))]
            out.append("  ".join(cells).rstrip())
    else:
        out.append("no differences")
    out.append(f"total: params {a.n_params:,} → {b.n_params:,} "
               f"({_signed(b.n_params - a.n_params, lambda n: f'{n:,}')}), "
               f"MACs {compact(a.macs)} → {compact(b.macs)} ({_signed(b.macs - a.macs)}), "
               f"output {fmt(a.output_shape)} → {fmt(b.output_shape)}")
    return "\n".join(out)


def _fmt(shape: list[int] | None) -> str:
    return fmt(tuple(shape)) if shape is not None else "-"


def to_json(d: Diff) -> dict[str, Any]:
    """The comparison for tools: both sides, every row with its deltas, the totals."""
    def side(s: Side) -> dict[str, Any]:
        net = s.network
        return {"label": s.label, "network": net.name, "input": list(net.input_shape),
                "output": _shape(net.output_shape), "params": net.n_params, "macs": net.macs}

    rows = [{**asdict(r), "params_delta": r.params_delta, "macs_delta": r.macs_delta}
            for r in d.rows]
    a, b = d.a.network, d.b.network
    return {"a": side(d.a), "b": side(d.b), "counts": d.counts(), "rows": rows,
            "totals": {"params_delta": b.n_params - a.n_params, "macs_delta": b.macs - a.macs}}


# --------------------------------------------------------------------------- drawing

COLOURS = {"added": "#74c476", "removed": "#fb6a4a", "changed": "#fdae6b"}


def draw(d: Diff, output: Path) -> Path:
    """Both networks side by side in one SVG, what differs filled green, red or orange."""
    from archc.backends.dot import to_dot

    if output.suffix.lower() != ".svg":
        raise ValueError(f"--graph writes SVG, not `{output.suffix or output.name}`")
    removed = [r for r in d.rows if r.change == "removed"]
    marked_b = [r for r in d.rows if r.change != "removed"]
    changed_a = [r for r in d.rows if r.change == "changed"]
    svgs = [_svg(_coloured(to_dot(side.network, depth=None), rows, use_a, _title(side)))
            for side, rows, use_a in ((d.a, removed + changed_a, True), (d.b, marked_b, False))]
    output.write_text(_side_by_side(svgs), encoding="utf-8")
    return output


NODE = re.compile(r'^\t+("(?:[^"\\]|\\.)*"|[\w.]+) \[', re.M)


def _title(side: Side) -> str:
    net = side.network
    return f"{side.label}: {fmt(net.input_shape)} → {fmt(net.output_shape)}"


def _coloured(source: str, rows: list[Row], use_a: bool, title: str) -> str:
    """The DOT source with the nodes of `rows` refilled (attributes set again at the end)
    and the side's name as the title."""
    nodes = {m.group(1).strip('"') for m in NODE.finditer(source)}
    extra = [f'\tlabel="{title}"']
    for row in rows:
        path = row.path_a if use_a and row.path_a else row.path
        for node in _drawn(path, nodes):
            extra.append(f'\t"{node}" [fillcolor="{COLOURS[row.change]}" penwidth=2 '
                         f'color="#222222"]')
    head, _, _ = source.rstrip().rpartition("}")
    return head + "\n".join(extra) + "\n}\n"


def _drawn(path: str, nodes: set[str]) -> list[str]:
    """The nodes that draw module `path`: itself, its parts, or the box it is collapsed in."""
    inside = [n for n in nodes if n == path or n.startswith((path + ".", path + "/"))]
    if inside:
        return inside
    parts = path.split(".")
    for n in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:n]) in nodes:
            return [".".join(parts[:n])]
    return []


def _svg(source: str) -> str:
    import tempfile

    from archc.backends.dot import render

    with tempfile.TemporaryDirectory() as tmp:
        out = render(source, Path(tmp) / "side.svg")
        text = Path(out).read_text(encoding="utf-8")
    return text[text.index("<svg"):]


def _side_by_side(svgs: list[str]) -> str:
    """Nest the SVGs in one, left to right."""
    sizes = [tuple(float(v) for v in re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"',
                                               s).groups()) for s in svgs]
    gap = 24.0
    width = sum(w for w, _ in sizes) + gap * (len(sizes) - 1)
    height = max(h for _, h in sizes)
    parts, x = [], 0.0
    for svg, (w, h) in zip(svgs, sizes):
        # in the outer viewBox one user unit is one point: sizes without units
        svg = re.sub(r'width="[\d.]+pt" height="[\d.]+pt"', f'width="{w}" height="{h}"', svg,
                     count=1)
        parts.append(svg.replace("<svg", f'<svg x="{x}" y="0"', 1))
        x += w + gap
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" '
            f'xmlns:xlink="http://www.w3.org/1999/xlink" width="{width}pt" '
            f'height="{height}pt" viewBox="0 0 {width} {height}">\n' + "\n".join(parts)
            + "\n</svg>\n")
