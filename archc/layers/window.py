"""Sliding windows (conv and pools): output sizes, padding, and lost edges.

Kernel, stride, padding and dilation are each an int (square) or a pair (height, width),
as in `conv(192, kernel=(1, 7))`; the rules work per axis.
"""

from __future__ import annotations

from typing import Any, Callable, overload

from archc.layers.core import Shape, ShapeContext, ShapeProblem, fmt, image

Pair = tuple[int, int]
AXES = ("height", "width")
# TensorFlow's `SAME` padding (timm's Conv2dSame, MaxPool2dSame): worked out from the input
# size, so that a window gives ⌈size / stride⌉ outputs, the odd pixel padded after.
TF_SAME = "tf-same"


@overload
def pair(value: int | Pair) -> Pair: ...
@overload
def pair(value: int | Pair | tuple[Pair, Pair]) -> tuple[int | Pair, int | Pair]: ...


def pair(value: int | Pair | tuple[Pair, Pair]) -> tuple[int | Pair, int | Pair]:
    """`value` per axis (height, width): an int is the same on both."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def square(value: int | Pair) -> int | Pair:
    """A pair with equal sides as one int (how torch and the summary print it)."""
    h, w = pair(value)
    return h if h == w else (h, w)


def by_axis(value: int | Pair, sep: str = "×") -> str:
    """`3` for 3 or (3, 3), `1×7` for (1, 7)."""
    h, w = pair(value)
    return str(h) if h == w else f"{h}{sep}{w}"


def tf_same(size: int, k: int, s: int, d: int = 1) -> Pair:
    """TensorFlow's `SAME` padding of one axis of `size`, (before, after): the total that
    makes ⌈size / s⌉ windows of kernel k and dilation d, half before and the rest after."""
    total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def tf_same_sides(inp: Shape, p: dict[str, Any], stride: int | Pair) -> tuple[Pair, Pair]:
    """`padding="tf-same"` of a conv or pool on the image `inp`: ((top, bottom), (left,
    right)), as `window` takes an uneven padding."""
    _, h, w = inp
    kernel, dilation = pair(p["kernel"]), pair(p.get("dilation", 1))
    height, width = (tf_same(n, k, s, d)
                     for n, k, s, d in zip((h, w), kernel, pair(stride), dilation))
    return height, width


def window_axis_size(spatial: Callable[[dict[str, Any]], Any]
                     ) -> Callable[[int, int, dict[str, Any]], int | None]:
    """A conv's or pool's output size on one axis (0: height, 1: width) for an input size,
    None below 1: its window's (`spatial`), with `tf-same` padding worked out from the
    size, which no fixed padding gives."""
    def size(n: int, axis: int, p: dict[str, Any]) -> int | None:
        window = spatial(p)
        k, s, pad, d = (pair(v)[axis] for v in window[:4])
        if p.get("padding") == TF_SAME:
            pad = tf_same(n, k, s, d)
        out = window_out(n, k, s, pad, d, window[4])
        return out if out >= 1 else None
    return size


def resolve_padding(p: dict[str, Any]) -> int | Pair:
    """The padding of a conv or pool as numbers: `same` is half the (dilated) kernel on each
    axis, `valid` is 0. An int stays an int, so square layers read as before. `tf-same` has
    no numbers before the input size is known (see `tf_same_sides`): asking is a bug."""
    pad = p.get("padding", 0)
    if pad == TF_SAME:
        raise ValueError("padding=\"tf-same\" depends on the input size: use tf_same_sides")
    if pad == "valid":
        return 0
    if pad != "same":
        number: int | Pair = pad  # a number or (h, w), as the parameter's type allows
        return number
    kernel, dilation = pair(p["kernel"]), pair(p.get("dilation", 1))
    if any(k % 2 == 0 for k in kernel):
        raise ShapeProblem(
            "E204",
            f"padding=same needs an odd kernel, got kernel={square(p['kernel'])}",
            "give the padding as a number, e.g. padding=1"
            if kernel[0] == kernel[1]
            else f"give the padding as numbers, e.g. padding={tuple((k - 1) // 2 for k in kernel)}",
        )
    half = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return square((half[0], half[1]))


def sides(value: int | Pair | tuple[int, int, int, int]) -> tuple[Pair, Pair]:
    """A padding as ((top, bottom), (left, right)): an int pads all four sides alike, (h, w)
    both sides of each axis alike, and (top, bottom, left, right) each side by itself."""
    if isinstance(value, tuple) and len(value) == 4:
        return (value[0], value[1]), (value[2], value[3])
    h, w = pair(value)
    return (h, h), (w, w)


def is_asymmetric(value: object) -> bool:
    """True for a padding (top, bottom, left, right) with unequal sides on an axis."""
    return isinstance(value, tuple) and len(value) == 4 and (
        value[0] != value[1] or value[2] != value[3])


def window_out(size: int, k: int, s: int, pad: int | Pair, d: int = 1, ceil: bool = False) -> int:
    """Output length of a sliding window (conv or pool) on one axis, with PyTorch's rules.

    `pad` pads both ends alike, or is (before, after) for a window padded unevenly."""
    before, after = pair(pad)
    span = size + before + after - d * (k - 1) - 1
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + before:  # the last window must start inside the input
            out -= 1
        return out
    return span // s + 1


def _refuse_negative(kind: str, p: dict[str, Any], pad: int | Pair | tuple[Pair, Pair]
                     ) -> None:
    """E204 for a negative padding: PyTorch would crop, or fail at forward time, where the
    spec plainly meant to pad."""
    values = [pad] if isinstance(pad, int) else [v for part in pad
                                                 for v in (part if isinstance(part, tuple)
                                                           else (part,))]
    if any(v < 0 for v in values):
        raise ShapeProblem(
            "E204",
            f"{kind} padding must not be negative, got padding={p.get('padding', pad)}",
            "padding adds zeros around the input: give 0 or more",
        )


def window(
    kind: str,
    inp: Shape,
    p: dict[str, Any],
    ctx: ShapeContext,
    k: int | Pair,
    s: int | Pair,
    pad: int | Pair | tuple[Pair, Pair],
    d: int | Pair = 1,
    ceil: bool = False,
) -> tuple[int, int]:
    """The output height and width of a window over the image `inp`; warns (W301) when
    flooring loses an edge, refuses (E202) an output below 1. `pad` per axis pads both ends
    alike, or is (before, after)."""
    c, h, w = image(kind, inp)
    _refuse_negative(kind, p, pad)
    out, lost = [], []
    for axis, size, k_, s_, pad_, d_ in zip(AXES, (h, w), pair(k), pair(s), pair(pad), pair(d)):
        n = window_out(size, k_, s_, pad_, d_, ceil)
        before, after = pair(pad_)
        if n < 1:
            need = d_ * (k_ - 1) + 1 - before - after
            raise ShapeProblem(
                "E202",
                f"{kind} makes the {axis} {n} (input {fmt(inp)})",
                f"this layer needs an input {axis} of at least {max(need, 1)}; "
                "use a larger input, or less striding or pooling before it",
            )
        last = (n - 1) * s_ - before + d_ * (k_ - 1)  # the last input row a window reaches
        # A kernel smaller than its stride skips rows by design; only an edge lost to
        # flooring is silent.
        if last < size - 1 and d_ * (k_ - 1) + 1 >= s_:
            lost.append(f"{size - 1 - last} of {size} {'rows' if axis == 'height' else 'columns'}")
        out.append(n)
    if lost:
        ctx.warn(
            "W301",
            f"{kind} drops the last {' and '.join(lost)} of {fmt(inp)}",
            # only pools have `ceil`: a conv's hint must not offer it
            "pad the input, use ceil=true, or pick an input size that fits the stride"
            if "ceil" in p
            else "pad the input, or pick an input size that fits the stride",
        )
    return out[0], out[1]
