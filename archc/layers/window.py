"""Sliding windows (conv and pools): output sizes, padding, and lost edges."""

from __future__ import annotations

from .core import Shape, ShapeContext, ShapeProblem, fmt, image


def resolve_padding(p: dict) -> int:
    """The integer padding of a conv or pool: `same` is half the (dilated) kernel."""
    pad = p.get("padding", 0)
    if pad == "valid":
        return 0
    if pad == "same":
        k, d = p["kernel"], p.get("dilation", 1)
        if k % 2 == 0:
            raise ShapeProblem(
                "E204",
                f"padding=same needs an odd kernel, got kernel={k}",
                "give the padding as a number, e.g. padding=1",
            )
        return d * (k - 1) // 2
    return pad


def window_out(size: int, k: int, s: int, pad: int, d: int = 1, ceil: bool = False) -> int:
    """Output length of a sliding window (conv or pool), with PyTorch's rules."""
    span = size + 2 * pad - d * (k - 1) - 1
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + pad:  # the last window must start inside the input
            out -= 1
        return out
    return span // s + 1


def window(
    kind: str,
    inp: Shape,
    p: dict,
    ctx: ShapeContext,
    k: int,
    s: int,
    pad: int,
    d: int = 1,
    ceil: bool = False,
) -> tuple[int, int]:
    """The output height and width of a window over the image `inp`; warns (W301) when
    flooring loses an edge, refuses (E202) an output below 1."""
    c, h, w = image(kind, inp)
    out, lost = [], []
    for axis, size in (("height", h), ("width", w)):
        n = window_out(size, k, s, pad, d, ceil)
        if n < 1:
            need = d * (k - 1) + 1 - 2 * pad
            raise ShapeProblem(
                "E202",
                f"{kind} makes the {axis} {n} (input {fmt(inp)})",
                f"this layer needs an input {axis} of at least {max(need, 1)}; "
                "use a larger input, or less striding or pooling before it",
            )
        last = (n - 1) * s - pad + d * (k - 1)  # the last input row a window reaches
        # A kernel smaller than its stride skips rows by design; only an edge lost to
        # flooring is silent.
        if last < size - 1 and d * (k - 1) + 1 >= s:
            lost.append(f"{size - 1 - last} of {size} {'rows' if axis == 'height' else 'columns'}")
        out.append(n)
    if lost:
        ctx.warn(
            "W301",
            f"{kind} drops the last {' and '.join(lost)} of {fmt(inp)}",
            "pad the input, use ceil=true, or pick an input size that fits the stride",
        )
    return out[0], out[1]
