"""Shape analyses over a resolved network, beyond the per-layer rules in the registry.

- `input_sizes`: which input heights/widths the built network accepts (the smallest,
  and the step between valid sizes where a layer needs one);
- receptive fields live with the summary (backends/summary.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

from .graph import Call, Identity, LayerNode, Network, Op, Parallel, Scope, Seq, TapOut
from .layers import REGISTRY, window_out

_INVALID = -1


@dataclass(frozen=True)
class InputSizes:
    """The input sizes (one spatial axis) a network accepts."""

    smallest: int | None  # None: no size up to the scanned limit works
    step: int  # valid sizes are smallest + k*step (1 when every size works)
    largest: int | None  # None: unbounded (as far as scanned)

    def describe(self) -> str:
        """`any H×W ≥ 32×32`, `H = W = 32 + 32k`, or `from 193 to 224`."""
        if self.smallest is None:
            return "none found"
        s = self.smallest
        if self.largest is not None:
            if self.largest == s:
                return f"exactly {s}×{s}"
            step = f" in steps of {self.step}" if self.step > 1 else ""
            return f"from {s}×{s} to {self.largest}×{self.largest}{step}"
        if self.step == 1:
            return f"any H×W ≥ {s}×{s}"
        return (
            f"H, W ≥ {s} and a multiple of {self.step} apart: {s}, {s + self.step}, "
            f"{s + 2 * self.step}, ..."
        )


Sizes = tuple[int, ...]  # one candidate input size per entry; _INVALID once it fails


class _Spatial:
    """Propagates all candidate spatial sizes through the plan at once, memoising repeated
    blocks. Walking the plan once for the whole tuple, rather than once per size, keeps the
    scan of ResNet-152's 320 sizes to a few milliseconds."""

    def __init__(self) -> None:
        self.memo: dict[tuple, Sizes] = {}
        self.keys: dict[int, tuple | None] = {}
        self.children: dict[int, dict[str, object]] = {}

    def key(self, scope: Scope) -> tuple | None:
        """Calls of one block with the same arguments behave alike: one memo entry."""
        if id(scope) not in self.keys:
            self.keys[id(scope)] = (
                (scope.title, repr(sorted(scope.args.items()))) if scope.kind == "block" else None
            )
        return self.keys[id(scope)]

    def scope(self, scope: Scope, hs: Sizes) -> Sizes:
        key = self.key(scope)
        if key is not None and (key, hs) in self.memo:
            return self.memo[key, hs]
        out = self.op(scope, scope.plan, hs)
        if key is not None:
            self.memo[key, hs] = out
        return out

    def op(self, scope: Scope, op: Op, hs: Sizes) -> Sizes:
        if isinstance(op, Call):
            named = self.children.get(id(scope))
            if named is None:
                named = self.children[id(scope)] = {c.name: c for c in scope.children}
            child = named[op.child]
            return self.scope(child, hs) if isinstance(child, Scope) else self.layer(child, hs)
        if isinstance(op, Seq):
            for sub in op.ops:
                hs = self.op(scope, sub, hs)
            return hs
        if isinstance(op, Parallel):  # the branches must agree on the size they produce
            outs = [self.op(scope, b, hs) for b in op.branches]
            return tuple(o[0] if o.count(o[0]) == len(o) else _INVALID for o in zip(*outs))
        if isinstance(op, TapOut):  # the tap must work, the main path goes on unchanged
            tapped = self.op(scope, op.op, hs)
            return tuple(_INVALID if t == _INVALID else h for h, t in zip(hs, tapped))
        assert isinstance(op, Identity)
        return hs

    def layer(self, layer: LayerNode, hs: Sizes) -> Sizes:
        if layer.in_shape is None or len(layer.in_shape) != 3:
            return hs
        if layer.kind == "flatten":  # the fc after it was sized for the declared input
            return tuple(h if h == layer.in_shape[1] else _INVALID for h in hs)
        if layer.kind in ("adaptiveavgpool", "adaptivemaxpool", "globalavgpool"):
            size = layer.params.get("size", 1)
            return tuple(_INVALID if h == _INVALID else size for h in hs)
        window = REGISTRY[layer.kind].spatial(layer.params)
        if window is None:
            return hs
        k, s, pad, d, ceil = window
        outs = (window_out(h, k, s, pad, d, ceil) if h != _INVALID else _INVALID for h in hs)
        return tuple(o if o >= 1 else _INVALID for o in outs)


def input_sizes(net: Network, scan: int = 96) -> InputSizes:
    """Which square inputs the network accepts, from a scan of sizes around the declared one.

    The scan runs the spatial rules only, so it stays cheap even for ResNet-152.
    """
    declared = net.input_shape[1]
    limit = max(declared, scan) + scan
    candidates = tuple(range(1, limit + 1))
    outs = _Spatial().scope(net.root, candidates)
    valid = [h for h, out in zip(candidates, outs) if out != _INVALID]
    if not valid:
        return InputSizes(None, 1, None)
    step = 0
    for a, b in zip(valid, valid[1:]):
        step = gcd(step, b - a)
    largest = valid[-1] if valid[-1] < limit - step else None
    return InputSizes(valid[0], max(step, 1), largest)
