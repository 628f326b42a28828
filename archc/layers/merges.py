"""The merges: how parallel branches meet. One table, beside the layer registry.

Each `MergeKind` holds what archc knows about one merge: the inputs its branches get (the
whole input, or for `split` a slice of its channels), its shape rule, how torch combines the
branch outputs, how generated Python writes it, and how the diagram draws it. Like the layer
registry, nothing here imports torch at import time.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable

from archc.layers.core import Shape, ShapeProblem, fmt, mix_split_sizes


@dataclass(frozen=True)
class MergeKind:
    """A merge: `add:`, `add-into:`, `concat:`, `max:`, `mul:`, `sub:`, `split:` or
    `mix-split:`."""

    name: str
    doc: str
    shape: Callable[[list[Shape]], Shape]  # branch outputs → merged output; ShapeProblem
    combine: Callable[[list[Any]], Any]  # branch output tensors → the merged tensor
    operator: str | None  # `+`/`*` between the terms in generated Python; None: torch.cat
    symbol: str  # the label of the diagram's merge node
    splits: bool = False  # each branch gets one slice of the input's channels
    # the slices: "equal" (`x.chunk(n, 1)`), or "first-rest" (MixNet's: C // n each, the
    # first one also takes the remainder, `x.split(sizes, 1)`)
    slicing: str = "equal"
    function: str | None = None  # a binary torch function generated Python folds over the terms
    helper: bool = False  # `function` is archc's (tensor_modules): generated Python copies it
    # how the branches' sizes of one spatial axis must relate (archc.shapes' scan of input
    # sizes): "equal", "broadcast" (a size of 1 fits any) or "first" (any; the first gives it)
    sizes: str = "equal"
    # the named arguments the merge takes: `split(sizes=(16, 24, 24)):`
    params: tuple[str, ...] = ()

    @property
    def elementwise(self) -> bool:
        """Whether the merge combines same-position elements (add, mul, max), drawn as a circle."""
        return self.operator is not None or self.function is not None

    def branch_inputs(self, inp: Shape, n: int, sizes: tuple[int, ...] | None = None
                      ) -> list[Shape]:
        """The input shape of each of `n` branches, for an input `inp`; `sizes` are the
        slices' channels where the spec states them (`split(sizes=(16, 24, 24)):`)."""
        if not self.splits:
            return [inp] * n
        if len(inp) != 3:
            raise ShapeProblem(
                "E203", f"{self.name} divides the channels of an image C×H×W, got {fmt(inp)}"
            )
        return [(c, *inp[1:]) for c in self.slice_sizes(inp[0], n, sizes)]

    def slice_sizes(self, channels: int, n: int, sizes: tuple[int, ...] | None = None
                    ) -> list[int]:
        """The channels of each of `n` slices of `channels`; ShapeProblem where stated
        `sizes` do not sum to the channels, or a slice would be unequal (`split`) or empty
        (`mix-split`)."""
        if sizes is not None:
            if sum(sizes) != channels:
                raise ShapeProblem(
                    "E201",
                    f"{self.name} sizes {', '.join(map(str, sizes))} sum to {sum(sizes)}, "
                    f"but the input has {channels} channels",
                    "the sizes must add up to the channels that reach the merge",
                )
            return list(sizes)
        if self.slicing == "first-rest":
            if channels < n:
                raise ShapeProblem(
                    "E201",
                    f"{self.name} into {n} branches needs at least {n} channels, got {channels}",
                    "each branch needs one channel or more",
                )
            return mix_split_sizes(channels, n)
        if channels % n:
            raise ShapeProblem(
                "E201",
                f"split into {n} branches needs channels divisible by {n}, got {channels}",
                "give the layer before it a multiple of the branch count, or use `mix-split:`",
            )
        return [channels // n] * n

    def inputs(self, x: Any, n: int, sizes: tuple[int, ...] | None = None) -> tuple[Any, ...]:
        """The tensors the branches get: `x` each, or its channel slices (`x.chunk(n, 1)`,
        `x.split(sizes, 1)`)."""
        if not self.splits:
            return (x,) * n
        if sizes is not None:
            return tuple(x.split(list(sizes), 1))
        if self.slicing == "first-rest":
            return tuple(x.split(mix_split_sizes(x.shape[1], n), 1))
        return tuple(x.chunk(n, 1))

    def python_inputs(self, src: str, n: int, sizes: tuple[int, ...] | None = None) -> str:
        """Generated Python giving the branches' slices of `src` (a tuple of n tensors)."""
        if sizes is not None:
            return f"{src}.split({list(sizes)}, 1)"
        if self.slicing == "first-rest":
            return f"{src}.split(mix_split_sizes({src}.shape[1], {n}), 1)"
        return f"{src}.chunk({n}, 1)"


def _same_shapes(name: str) -> Callable[[list[Shape]], Shape]:
    hint = "make every branch end with the same channels"
    if name == "add":  # only an add's `shortcut` projects (archc.compiler.resolve)
        hint += ", or add a `shortcut` branch, which projects when shapes differ"

    def rule(shapes: list[Shape]) -> Shape:
        first = shapes[0]
        if any(s[0] != first[0] for s in shapes):
            raise ShapeProblem(
                "E201",
                f"channel mismatch at {name}: " + " vs ".join(str(s[0]) for s in shapes),
                hint,
            )
        if any(s != first for s in shapes):
            raise ShapeProblem(
                "E203",
                f"shape mismatch at {name}: " + " vs ".join(fmt(s) for s in shapes),
                "every branch must keep the same height and width",
            )
        return first

    return rule


def _difference(shapes: list[Shape]) -> Shape:
    """`sub`'s rule: exactly two branches (the first minus the second) of one shape."""
    if len(shapes) != 2:
        raise ShapeProblem(
            "E204",
            f"`sub:` takes exactly two branches (the first minus the second), got {len(shapes)}",
            "to subtract several, nest the merges; a sum of several is `add:`",
        )
    return _same_shapes("sub")(shapes)


def _broadcast(shapes: list[Shape]) -> Shape:
    """torch's broadcasting of same-rank shapes: each axis equal, or 1 in some branches."""
    if len({len(s) for s in shapes}) == 1:
        out = tuple(max(axis) for axis in zip(*shapes))
        if all(d in (1, o) for s in shapes for d, o in zip(s, out)):
            return out
    raise ShapeProblem(
        "E203",
        "shape mismatch at mul: " + " vs ".join(fmt(s) for s in shapes),
        "each axis must be equal in every branch, or 1 (a gate of C×1×1 scales C×H×W)",
    )


def _channels(name: str) -> Callable[[list[Shape]], Shape]:
    def rule(shapes: list[Shape]) -> Shape:
        if any(len(s) != 3 for s in shapes):
            raise ShapeProblem("E203", f"{name} joins image tensors C×H×W only")
        if any(s[1:] != shapes[0][1:] for s in shapes):
            raise ShapeProblem(
                "E203",
                f"{name} needs equal heights and widths: " + " vs ".join(fmt(s) for s in shapes),
                "give every branch the same stride and padding",
            )
        return (sum(s[0] for s in shapes), *shapes[0][1:])

    return rule


def _overlap(name: str) -> Callable[[list[Shape]], Shape]:
    """The rule of a merge that adds every branch into the first one's shared part: images
    whose heights and widths relate alike, as darknet asserts (H1 // H2 = W1 // W2 both ways,
    so a branch is sampled or spread by the same step on both axes)."""

    def rule(shapes: list[Shape]) -> Shape:
        if any(len(s) != 3 for s in shapes):
            raise ShapeProblem("E203", f"{name} adds image tensors C×H×W only")
        first = shapes[0]
        for s in shapes[1:]:
            (h, w), (h2, w2) = first[1:], s[1:]
            if h2 // h != w2 // w or h // h2 != w // w2:
                raise ShapeProblem(
                    "E203",
                    f"{name} cannot place {fmt(s)} into {fmt(first)}: the heights and the "
                    "widths must relate by the same step",
                    "the first branch gives the shape; the others add into its first "
                    "channels, every k-th pixel of the larger one",
                )
        return first

    return rule


def _add_into(outputs: list[Any]) -> Any:
    from archc.layers.tensor_modules import add_into

    return reduce(add_into, outputs)


def _cat(outputs: list[Any]) -> Any:
    import torch

    return torch.cat(outputs, 1)


def _maximum(outputs: list[Any]) -> Any:
    import torch

    return reduce(torch.maximum, outputs)


MERGE_KINDS: tuple[MergeKind, ...] = (
    MergeKind(
        "concat",
        "Stacks the branches' channels; every branch keeps the same height and width.",
        _channels("concat"),
        _cat,
        None,
        "concat",
    ),
    MergeKind(
        "add",
        "Sums the branches element-wise; every branch gives the same shape.",
        _same_shapes("add"),
        lambda outputs: reduce(operator.add, outputs),
        "+",
        "+",
    ),
    MergeKind(
        "mul",
        "Multiplies the branches element-wise, with broadcasting: a C×1×1 gate scales a "
        "C×H×W branch (squeeze-and-excitation).",
        _broadcast,
        lambda outputs: reduce(operator.mul, outputs),
        "*",
        "×",
        sizes="broadcast",
    ),
    MergeKind(
        "max",
        "Takes the element-wise maximum of the branches; every branch gives the same shape "
        "(Caffe's `Eltwise` MAX, maxout).",
        _same_shapes("max"),
        _maximum,
        None,
        "max",
        function="torch.maximum",
    ),
    MergeKind(
        "sub",
        "Subtracts the second branch from the first, element-wise; exactly two branches of "
        "the same shape (PoolFormer's token mixer, `pool(x) - x`).",
        _difference,
        lambda outputs: operator.sub(*outputs),
        "-",
        "−",
    ),
    MergeKind(
        "add-into",
        "Adds every other branch into the first branch's shared part, as darknet's "
        "[shortcut] does between different shapes: the first min(C) channels (ReXNet's "
        "partial residual `x[:, :c] += shortcut`), every k-th pixel of a branch k times "
        "larger, into every k-th pixel when it is k times smaller. The output has the first "
        "branch's shape.",
        _overlap("add-into"),
        _add_into,
        None,
        "+⊂",
        function="add_into",
        helper=True,
        sizes="first",
    ),
    MergeKind(
        "split",
        "Splits the input's channels into equal slices, one per branch (`x.chunk(n, 1)`), or "
        "into the stated `sizes` (`split(sizes=(16, 24, 24)):`, `x.split(sizes, 1)`), and "
        "stacks the branches' outputs (ShuffleNetV2).",
        _channels("split"),
        _cat,
        None,
        "concat",
        splits=True,
        params=("sizes",),
    ),
    MergeKind(
        "mix-split",
        "Splits the input's channels into one slice per branch as MixNet's MixedConv2d does "
        "(C // n each, the first slice also taking the remainder: 100 into 3 is 34, 33, 33), "
        "and stacks the branches' outputs; each branch may use its own kernel.",
        _channels("mix-split"),
        _cat,
        None,
        "concat",
        splits=True,
        slicing="first-rest",
    ),
)

MERGES: dict[str, MergeKind] = {m.name: m for m in MERGE_KINDS}


def merge_kind(word: str) -> MergeKind | None:
    """The merge a keyword names, case-insensitively (`Concat:` is `concat:`)."""
    return MERGES.get(word.lower())
