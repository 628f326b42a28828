"""Shape analyses over a resolved network, beyond the per-layer rules in the registry.

- `input_sizes`: which input heights/widths the built network accepts (the smallest,
  and the step between valid sizes where a layer needs one);
- receptive fields live with the summary (backends/summary.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

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
    layers,
)
from archc.layers import MERGES, REGISTRY, window_out
from archc.layers.window import pair

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

    def __init__(self, refit: bool = False, axis: int = 0) -> None:
        self.refit = refit
        self.axis = axis  # 0: heights, 1: widths (they differ after a non-square window)
        self.memo: dict[tuple, Sizes] = {}
        self.keys: dict[int, tuple | None] = {}
        self.children: dict[int, dict[str, object]] = {}
        self.recording = False  # the pass at the declared input, for the FIXES_SIZE layers
        self.seen: dict[int, int] = {}

    def key(self, scope: Scope) -> tuple | None:
        """Calls of one block with the same arguments behave alike: one memo entry (not for a
        block that reads named tensors, whose sizes the arguments do not tell)."""
        if id(scope) not in self.keys:
            self.keys[id(scope)] = (
                (scope.title, repr(sorted(scope.args.items())))
                if scope.kind == "block" and not scope.inputs else None
            )
        return self.keys[id(scope)]

    def scope(self, scope: Scope, hs: Sizes, tensors: tuple = ()) -> tuple[Sizes, tuple]:
        """The sizes a scope gives for input sizes `hs` (and its named tensors' sizes), with
        the sizes of the named tensors it returns."""
        key = self.key(scope)
        if key is not None and (key, hs) in self.memo:
            return self.memo[key, hs]
        env = dict(zip(scope.inputs, tensors))
        out = self.op(scope, scope.plan, hs, env), tuple(env[n] for n in scope.outputs)
        if key is not None:
            self.memo[key, hs] = out
        return out

    def op(self, scope: Scope, op: Op, hs: Sizes, env: dict) -> Sizes:
        if isinstance(op, Call):
            named = self.children.get(id(scope))
            if named is None:
                named = self.children[id(scope)] = {c.name: c for c in scope.children}
            child = named[op.child]
            if isinstance(child, LayerNode):
                return self.layer(child, hs)
            out, extras = self.scope(child, hs, tuple(env[r] for r in child.reads))
            env.update((w, e) for w, e in zip(child.writes, extras) if w)
            return out
        if isinstance(op, Seq):
            for sub in op.ops:
                hs = self.op(scope, sub, hs, env)
            return hs
        if isinstance(op, Parallel):  # the branches must agree on the size they produce
            outs = [self.op(scope, b, hs, env) for b in op.branches]
            return tuple(_agreed(op.mode, list(o)) for o in zip(*outs))
        if isinstance(op, TapOut):  # the tap must work, the main path goes on unchanged
            tapped = self.op(scope, op.op, hs, env)
            return tuple(_INVALID if t == _INVALID else h for h, t in zip(hs, tapped))
        if isinstance(op, Save):
            env[op.name] = hs
            return hs
        if isinstance(op, Load):
            return env[op.name]
        assert isinstance(op, Identity)
        return hs

    def layer(self, layer: LayerNode, hs: Sizes) -> Sizes:
        if layer.kind in FIXES_SIZE and not self.refit:  # learned for the declared size only
            return self.fixed(layer, hs)
        if layer.kind == "partition":  # whole groups only
            size = layer.params["size"]
            return tuple(h if h != _INVALID and h % size == 0 else _INVALID for h in hs)
        if layer.kind == "token-pool":  # one vector, whatever the token count: like a 1×1
            # global pool
            return tuple(_INVALID if h == _INVALID else 1 for h in hs)
        if layer.in_shape is None or len(layer.in_shape) != 3:
            return hs
        if layer.kind == "flatten" and not self.refit:  # the fc after it is sized for the
            # declared input
            return tuple(h if h == layer.in_shape[1 + self.axis] else _INVALID for h in hs)
        if layer.kind in ("adaptiveavgpool", "adaptivemaxpool", "globalavgpool"):
            size = layer.params.get("size", 1)
            return tuple(_INVALID if h == _INVALID else size for h in hs)
        if layer.kind == "upsample":  # any size works: it grows by the factor
            scale = layer.params["scale"]
            return tuple(_INVALID if h == _INVALID else h * scale for h in hs)
        kind = REGISTRY[layer.kind]
        if kind.axis_size is not None:  # a crop, space-to-depth: a rule of their own
            sized = (kind.axis_size(h, self.axis, layer.params) if h != _INVALID else None
                     for h in hs)
            return tuple(_INVALID if o is None else o for o in sized)
        window = kind.spatial(layer.params)
        if window is None:
            return hs
        k, s, pad, d = (pair(v)[self.axis] for v in window[:4])  # this axis of (h, w)
        ceil = window[4]
        outs = (window_out(h, k, s, pad, d, ceil) if h != _INVALID else _INVALID for h in hs)
        return tuple(o if o >= 1 else _INVALID for o in outs)


    def fixed(self, layer: LayerNode, hs: Sizes) -> Sizes:
        """A layer whose weights fit one input size (a position embedding: one vector per
        token): the first pass, at the declared input, records the size that reaches it;
        later passes keep only that size."""
        if self.recording:
            self.seen[id(layer)] = hs[0]
            return hs
        want = self.seen.get(id(layer))
        return tuple(h if h == want else _INVALID for h in hs)


# Kinds whose weights are sized by the token count, so the input size is fixed.
FIXES_SIZE = frozenset({"pos-embedding"})


def _agreed(mode: str, sizes: list) -> int:
    """The size merged branches produce, or _INVALID when they disagree; in `mul` a size of 1
    broadcasts (an SE gate's 1×1); `add-into` takes the first branch's."""
    if _INVALID in sizes:
        return _INVALID
    rule = MERGES[mode].sizes
    if rule == "first":
        return sizes[0]
    if rule == "broadcast":
        sizes = [s for s in sizes if s != 1] or [1]
    return sizes[0] if sizes.count(sizes[0]) == len(sizes) else _INVALID


def input_sizes(net: Network, scan: int = 96, refit: bool = False) -> InputSizes:
    """Which square inputs the network accepts, from a scan of sizes around the declared one.

    The scan runs the spatial rules only, so it stays cheap even for ResNet-152. Its cost does
    not grow with the input: below `_FULL_SCAN` every size from 1 is tried; above it, a window
    around the declared size and a low window, and the smallest valid size in between is
    found by bisection along the progression of valid sizes.

    With `refit`, a `flatten` accepts any size: the question is then which inputs work once
    the spec is checked again at that input (the fc after it re-inferred), as the note on a
    'spatial size below 1' error asks.
    """
    # Square inputs; a network with a non-square window is scanned on both axes.
    axes = [_Spatial(refit, 0)] + ([_Spatial(refit, 1)] if _non_square(net) else [])

    def outputs(sizes: Sizes) -> Sizes:
        outs = [axis.scope(net.root, sizes)[0] for axis in axes]
        return tuple(_INVALID if _INVALID in o else o[0] for o in zip(*outs))

    declared = net.input_shape[1]
    if not refit and any(layer.kind in FIXES_SIZE for layer in layers(net.root)):
        for axis in axes:  # what reaches each size-fixing layer at the declared input
            axis.recording = True
            axis.scope(net.root, (net.input_shape[1 + axis.axis],))
            axis.recording, axis.memo = False, {}
    low = range(1, min(declared, _FULL_SCAN) + scan + 1)
    high = range(max(low.stop, declared - scan), declared + scan + 1)
    candidates = (*low, *high)
    limit = candidates[-1]
    outs = outputs(candidates)
    valid = [h for h, out in zip(candidates, outs) if out != _INVALID]
    if not valid:
        return InputSizes(None, 1, None)
    step = 0
    for a, b in zip(valid, valid[1:]):
        step = gcd(step, b - a)
    step = max(step, 1)
    smallest = valid[0]
    if smallest >= low.stop:  # nothing in the low window: the boundary lies between the two
        smallest = _bisect_smallest(lambda h: outputs((h,))[0] != _INVALID,
                                    smallest, step, low.stop)
    largest = valid[-1] if valid[-1] < limit - step else None
    return InputSizes(smallest, step, largest)


def _non_square(net: Network) -> bool:
    """True when some window has a different kernel, stride, padding or dilation per axis."""
    return any(
        isinstance(v, tuple) and v[0] != v[1]
        for layer in layers(net.root)
        for v in (REGISTRY[layer.kind].spatial(layer.params) or ())[:4]
    )


_FULL_SCAN = 2048  # below this declared size every candidate from 1 up is tried


def _bisect_smallest(valid, known: int, step: int, floor: int) -> int:
    """The smallest size of the progression `known - k*step` (k ≥ 0, size ≥ floor) that is
    valid, assuming validity holds from some k down to 0: O(log(known/step)) checks."""
    good, k_bad = 0, (known - floor) // step + 1  # k = good works; k_bad may be out of range
    while k_bad - good > 1:
        mid = (good + k_bad) // 2
        if valid(known - mid * step):
            good = mid
        else:
            k_bad = mid
    return known - good * step
