"""The layer table: per layer its shape, parameters, MACs, memory and receptive field.

`summarize` turns a checked `Network` into one `Row` per layer; `format_table` prints
the rows as a fixed-width table (like Keras' `summary()` or torchinfo) and `to_json`
gives the same data to scripts. Nothing here imports torch, so `archc summary` is as
quick as `archc check`.

The receptive field (RF) of a layer's output is the side of the input window one of
its output positions sees; the effective stride ("jump") is how far that window moves
in input pixels when the position moves by one. Both follow the data flow of the plan
(branches, merges, taps), not the registration order of the modules.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from archc.compiler.graph import (
    Call,
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
    walk,
)
from archc.layers import REGISTRY, Shape, fmt
from archc.layers.window import pair

FLOAT32 = 4  # bytes per activation and per parameter


@dataclass(frozen=True)
class Row:
    """One layer of the table; `rf` and `jump` are (height, width) in input pixels."""

    path: str
    name: str
    kind: str
    hyper: str
    in_shape: Shape | None
    out_shape: Shape | None
    params: int
    macs: int
    act_bytes: int
    rf: tuple[int, int]
    jump: tuple[int, int]
    rf_global: bool
    depth: int


# --------------------------------------------------------------------------- shared text


def compact(n: float) -> str:
    """A count in three significant digits: 9408 → 9.41K, 2359296 → 2.36M."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def human_bytes(n: float) -> str:
    """A byte count in KB, MB or GB (powers of 1000, as torchinfo reports them)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def layer_text(node: LayerNode) -> str:
    """The kind and its key hyper-parameters, e.g. `conv 3×3, 64, /2`."""
    hyper = REGISTRY[node.kind].summary(node.params)
    return f"{node.kind} {hyper}" if hyper else node.kind


def scope_title(scope: Scope) -> str:
    """A block call as written, `basic(c=64, stride=1)`; "" for an unnamed group."""
    if not scope.title:
        return ""
    args = ", ".join(f"{k}={v}" for k, v in scope.args.items())
    return f"{scope.title}({args})"


def scope_heading(scope: Scope) -> str:
    """The path and, for a block, its call: `layer1.0: basic(c=64, stride=1)`."""
    title = scope_title(scope)
    return f"{scope.path}: {title}" if title else scope.path


def depth_of(path: str) -> int:
    """The nesting level of a module path: `conv1` is 1, `layer1.0.conv1` is 3."""
    return path.count(".") + 1 if path else 0


# --------------------------------------------------------------------------- receptive field


@dataclass(frozen=True)
class _Field:
    """What one position of the current tensor sees of the input, per axis (h, w)."""

    rf: tuple[int, int]
    jump: tuple[int, int]
    hw: tuple[int, int]  # spatial size of the last image tensor (a later fc sees all of it)
    whole: bool = False  # one position sees the whole input


def _hw(values: Iterable[int]) -> tuple[int, int]:
    """Two values, one per axis, as the pair (height, width)."""
    h, w = values
    return h, w


def _window(f: _Field, kernel: tuple[int, int], stride: tuple[int, int]
            ) -> tuple[tuple[int, int], tuple[int, int]]:
    """rf_out = rf_in + (k_eff - 1) · jump_in and jump_out = jump_in · stride, per axis."""
    rf = _hw(r + (k - 1) * j for r, k, j in zip(f.rf, kernel, f.jump))
    jump = _hw(j * s for j, s in zip(f.jump, stride))
    return rf, jump


_ADAPTIVE = ("adaptiveavgpool", "adaptivemaxpool", "globalavgpool")  # no fixed window


def _adaptive_kernel(size: int, out: int) -> int:
    """The widest window adaptive pooling uses from `size` to `out` (PyTorch's split)."""
    return max(-(-(i + 1) * size // out) - (i * size // out) for i in range(out))


def _through(node: LayerNode, f: _Field) -> _Field:
    """The field after `node`, given the field of its input."""
    inp, out = node.in_shape, node.out_shape
    if inp is None or out is None:
        return f
    window = REGISTRY[node.kind].spatial(node.params) if len(inp) == 3 else None
    if window is not None:
        kernel, stride, dilation = pair(window[0]), pair(window[1]), pair(window[3])
        rf, jump = _window(f, _hw(d * (k - 1) + 1 for k, d in zip(kernel, dilation)), stride)
    elif node.kind in _ADAPTIVE and inp[1:] != out[1:]:
        # Adaptive pooling has no fixed window; the widest one bounds what it sees, and
        # the stride is rounded down when the sizes do not divide.
        kernel = _hw(_adaptive_kernel(i, o) for i, o in zip(inp[1:], out[1:]))
        rf, jump = _window(f, kernel, _hw(max(i // o, 1) for i, o in zip(inp[1:], out[1:])))
    elif node.kind == "upsample":
        # Each output position sees what its source pixel saw; neighbours are a
        # 1/scale step apart in the input (rounded down, at least 1, as jumps are whole).
        scale = node.params["scale"]
        rf, jump = f.rf, _hw(max(j // scale, 1) for j in f.jump)
    elif node.kind in ("self-attention", "pixel-attention"):  # every position attends to all
        return _Field(f.rf, f.jump, f.hw, True)
    elif len(inp) == 1 and node.macs:
        # A layer that multiplies flat features (fc) mixes every position of the map
        # that was flattened: a window as large as that map.
        rf, jump = _window(f, f.hw, f.hw)
        return _Field(rf, jump, (1, 1), True)
    else:
        return f
    hw = _hw(out[1:]) if len(out) == 3 else f.hw
    return _Field(rf, jump, hw, f.whole or hw == (1, 1))


def _merge(fields: list[_Field]) -> _Field:
    """After concat or add: the widest field of the branches (their jumps agree)."""
    return _Field(_hw(max(f.rf[i] for f in fields) for i in range(2)),
                  _hw(max(f.jump[i] for f in fields) for i in range(2)),
                  fields[0].hw, any(f.whole for f in fields))


def _trace(scope: Scope, op: Op, f: _Field, seen: dict[str, _Field], env: dict) -> _Field:
    """Follow the plan from a field; record the field after every layer in `seen`. `env`
    holds the fields of the named tensors of `scope`."""
    if isinstance(op, Call):
        child = scope.child(op.child)
        if isinstance(child, Scope):
            inner = {name: env[read] for name, read in zip(child.inputs, child.reads)}
            out = _trace(child, child.plan, f, seen, inner)
            env.update((w, inner[o]) for w, o in zip(child.writes, child.outputs) if w)
            return out
        seen[child.path] = _through(child, f)
        return seen[child.path]
    if isinstance(op, Seq):
        for inner_op in op.ops:
            f = _trace(scope, inner_op, f, seen, env)
        return f
    if isinstance(op, Parallel):
        return _merge([_trace(scope, branch, f, seen, env) for branch in op.branches])
    if isinstance(op, TapOut):
        _trace(scope, op.op, f, seen, env)  # a side head: the main path goes on unchanged
        return f
    if isinstance(op, Save):
        env[op.name] = f
        return f
    if isinstance(op, Load):
        return env[op.name]
    assert isinstance(op, Identity)
    return f


def receptive_fields(net: Network) -> dict[str, tuple[tuple[int, int], tuple[int, int], bool]]:
    """Per layer path: (rf, jump, global), rf and jump per axis (height, width)."""
    hw = _hw(net.input_shape[1:3]) if len(net.input_shape) == 3 else (1, 1)
    seen: dict[str, _Field] = {}
    _trace(net.root, net.root.plan, _Field((1, 1), (1, 1), hw), seen, {})
    return {path: (f.rf, f.jump, f.whole) for path, f in seen.items()}


# --------------------------------------------------------------------------- rows


def module_depths(net: Network) -> dict[str, int]:
    """Per module path: its nesting level, counted in scopes, not dots (a dotted label,
    `convs.0`, is one level below its scope)."""
    depths: dict[str, int] = {}

    def visit(scope: Scope, level: int) -> None:
        for child in scope.children:
            depths[child.path] = level + 1
            if isinstance(child, Scope):
                visit(child, level + 1)

    visit(net.root, 0)
    return depths


def summarize(net: Network) -> list[Row]:
    """One row per layer, in registration order (forward order within every branch)."""
    fields = receptive_fields(net)
    depths = module_depths(net)
    rows = []
    for module in walk(net.root):
        if not isinstance(module, LayerNode):
            continue
        rf, jump, whole = fields.get(module.path, ((1, 1), (1, 1), False))
        out = module.out_shape
        rows.append(Row(
            path=module.path, name=module.name, kind=module.kind,
            hyper=REGISTRY[module.kind].summary(module.params),
            in_shape=module.in_shape, out_shape=out, params=module.n_params, macs=module.macs,
            act_bytes=FLOAT32 * math.prod(out) if out else 0,
            rf=rf, jump=jump, rf_global=whole, depth=depths[module.path] - 1))
    return rows


def _totals(rows: list[Row], net: Network) -> dict:
    """The figures under the table, as numbers."""
    params = sum(r.params for r in rows)
    # BatchNorm's running mean and variance are buffers: saved, but not learned.
    buffers = sum(2 * r.in_shape[0] for r in rows if r.kind == "bn" and r.in_shape)
    return {"params": params, "trainable_params": params, "non_trainable_params": 0,
            "buffers": buffers, "macs": sum(r.macs for r in rows),
            "inference_macs": net.inference_macs,
            "activation_bytes": sum(r.act_bytes for r in rows),
            "param_bytes": FLOAT32 * params}


# --------------------------------------------------------------------------- text table

_COLUMNS = ("Layer", "Kind", "Hyper-params", "Output", "Params", "MACs", "Act. mem", "RF",
            "Stride")
_RIGHT = {"Params", "MACs", "Act. mem", "RF", "Stride"}


def _pair(value: tuple[int, int]) -> str:
    """`7` for a square value, `7×5` when height and width differ."""
    return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"


def _cells(row: Row) -> tuple[str, ...]:
    return ("  " * row.depth + row.name, row.kind, row.hyper, fmt(row.out_shape),
            f"{row.params:,}" if row.params else "-", compact(row.macs) if row.macs else "-",
            human_bytes(row.act_bytes), "global" if row.rf_global else _pair(row.rf),
            "-" if row.rf_global else _pair(row.jump))


def _headings(rows: list[Row], net: Network) -> dict[int, list[str]]:
    """Before which row each scope starts: the group header lines, indented by depth."""
    scopes = {m.path: m for m in walk(net.root) if isinstance(m, Scope) and m.path}
    depths = module_depths(net)
    taps = set(net.aux_outputs)
    params: dict[str, int] = {}
    for row in rows:
        parts = row.path.split(".")
        for n in range(1, len(parts)):
            key = ".".join(parts[:n])
            params[key] = params.get(key, 0) + row.params
    out: dict[int, list[str]] = {}
    opened: set[str] = set()
    for i, row in enumerate(rows):
        parts = row.path.split(".")
        for n in range(1, len(parts)):
            path = ".".join(parts[:n])
            if path in opened or path not in scopes:
                continue
            opened.add(path)
            scope = scopes[path]
            note = "  [side head, training only]" if path in taps else ""
            line = (f"{'  ' * (depths[path] - 1)}{scope_heading(scope)}  → {fmt(scope.out_shape)}, "
                    f"{params[path]:,} params")
            out.setdefault(i, []).append(line + note)
    return out


def format_table(rows: list[Row], net: Network) -> str:
    """The rows as a plain-text table, blocks as header lines, then the totals."""
    cells = [_COLUMNS] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_COLUMNS))]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(v.rjust(w) if name in _RIGHT else v.ljust(w)
                         for v, w, name in zip(values, widths, _COLUMNS)).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    headings = _headings(rows, net)
    out = [f"{net.name}: {fmt(net.input_shape)} → {fmt(net.output_shape)}", "=" * len(rule),
           line(_COLUMNS), rule]
    for i, row in enumerate(rows):
        out.extend(headings.get(i, []))
        out.append(line(cells[i + 1]))
    out.append("=" * len(rule))
    out.extend(_totals_text(_totals(rows, net), net))
    return "\n".join(out)


def _totals_text(t: dict, net: Network) -> list[str]:
    aux = ", ".join(f"{name} {fmt(shape)}" for name, shape in net.aux_outputs.items())
    lines = [
        ("Total params", f"{t['params']:,}"),
        ("Trainable params", f"{t['trainable_params']:,}"),
        ("Non-trainable params", f"{t['non_trainable_params']:,}"),
        ("Buffers (BN running stats)", f"{t['buffers']:,}"),
        ("Total MACs", f"{compact(t['macs'])} ({t['macs']:,})"
         + (" in training, with the auxiliary heads" if aux else "")),
        *([("Inference MACs", f"{compact(t['inference_macs'])} ({t['inference_macs']:,})"
            " without them")] if aux else []),
        ("Activation memory",
         f"{human_bytes(t['activation_bytes'])} per sample (float32, sum of layer outputs)"),
        ("Parameter memory", f"{t['param_bytes'] / 1e6:.2f} MB (float32)"),
        ("Input", fmt(net.input_shape)),
        ("Output", fmt(net.output_shape) + (f"  (training also: {aux})" if aux else "")),
    ]
    width = max(len(k) for k, _ in lines)
    return [f"{k + ':':<{width + 1}} {v}" for k, v in lines]


# --------------------------------------------------------------------------- json


def to_json(rows: list[Row], net: Network) -> dict:
    """The table for scripts: network, input, output, layers (one dict per row), totals."""
    layers = []
    for row in rows:
        item = asdict(row)
        item.update(in_shape=list(row.in_shape or ()), out_shape=list(row.out_shape or ()),
                    rf=list(row.rf), jump=list(row.jump))
        layers.append(item)
    return {"network": net.name, "input": list(net.input_shape),
            "output": list(net.output_shape or ()),
            "aux_outputs": {k: list(v or ()) for k, v in net.aux_outputs.items()},
            "layers": layers, "totals": _totals(rows, net)}
