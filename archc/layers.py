"""The one registry of layer kinds.

Each `LayerKind` holds everything archc knows about a kind of layer: its parameter
schema, its paper-notation sugar, its shape rule, its parameter and MAC counts, its
torch constructor and its diagram style. Adding a layer touches this file only.

This module must not import torch at import time: `archc check` stays instant. The
torch constructors import it when they are called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

Shape = tuple[int, ...]  # (C, H, W) for images, (F,) for flat features

REQUIRED = object()  # default of a parameter that must be given


@dataclass(frozen=True)
class Param:
    """One parameter of a layer kind: its name, type and default."""

    name: str
    type: str  # "int", "float", "bool", "padding", "int?" (int or none)
    default: Any = REQUIRED
    doc: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """True when the parameter has no default."""
        return self.default is REQUIRED


class ShapeProblem(Exception):
    """Raised by a shape rule; the checker turns it into a located diagnostic."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass
class ShapeContext:
    """What a shape rule may report besides its result: warnings."""

    warnings: list[tuple[str, str, str | None]] = field(default_factory=list)

    def warn(self, code: str, message: str, hint: str | None = None) -> None:
        """Record a warning for the layer being checked."""
        self.warnings.append((code, message, hint))


@dataclass(frozen=True)
class Style:
    """How a kind is drawn: fill colour, node shape, and its legend group."""

    group: str
    fill: str
    shape: str = "box"


@dataclass(frozen=True)
class LayerKind:
    """A registry entry: one kind of layer."""

    name: str
    doc: str
    params: tuple[Param, ...]
    shape: Callable[[Shape, dict, ShapeContext], Shape]
    torch: Callable[[Shape, dict], Any]
    style: Style
    aliases: tuple[str, ...] = ()
    sugar: tuple[str | None, tuple[str, ...]] = (None, ())  # (head digits -> param, dash parts)
    count_params: Callable[[Shape, dict], int] = lambda shape, p: 0
    count_macs: Callable[[Shape, Shape, dict], int] = lambda inp, out, p: 0
    spatial: Callable[[dict], tuple[int, int, int, int, bool] | None] = lambda p: None
    summary: Callable[[dict], str] = lambda p: ""

    def param(self, name: str) -> Param | None:
        """The parameter called `name` (or one of its aliases), if any."""
        for p in self.params:
            if name == p.name or name in p.aliases:
                return p
        return None


def normalize(word: str) -> str:
    """The lookup key of a kind name: case-, dash- and underscore-insensitive."""
    return word.lower().replace("-", "").replace("_", "")


# --------------------------------------------------------------------------- shape helpers


def _image(kind: str, inp: Shape) -> tuple[int, int, int]:
    if len(inp) != 3:
        raise ShapeProblem(
            "E203",
            f"{kind} expects an image tensor C×H×W, got {fmt(inp)}",
            "it comes after a flatten or fc; move it before them",
        )
    return inp  # type: ignore[return-value]


def fmt(shape: Shape | None) -> str:
    """A shape as the paper writes it: 64×56×56."""
    return "?" if shape is None else "×".join(str(d) for d in shape)


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


def _window(
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
    c, h, w = _image(kind, inp)
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


def _check_positive(kind: str, p: dict, *names: str) -> None:
    for name in names:
        value = p.get(name)
        if value is not None and value < 1:
            raise ShapeProblem("E204", f"{kind}: {name} must be at least 1, got {value}")


# --------------------------------------------------------------------------- conv


def _conv_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    c, _, _ = _image("conv", inp)
    _check_positive("conv", p, "out", "kernel", "stride", "dilation", "groups")
    if c % p["groups"] or p["out"] % p["groups"]:
        raise ShapeProblem(
            "E201",
            f"conv groups={p['groups']} must divide both the input "
            f"channels ({c}) and out ({p['out']})",
        )
    pad = resolve_padding(p)
    h, w = _window("conv", inp, p, ctx, p["kernel"], p["stride"], pad, p["dilation"])
    return (p["out"], h, w)


def _conv_params(inp: Shape, p: dict) -> int:
    per_filter = inp[0] // p["groups"] * p["kernel"] ** 2
    return p["out"] * per_filter + (p["out"] if p["bias"] else 0)


def _conv_macs(inp: Shape, out: Shape, p: dict) -> int:
    return math.prod(out) * (inp[0] // p["groups"]) * p["kernel"] ** 2


def _conv_torch(inp: Shape, p: dict):
    import torch.nn as nn

    return nn.Conv2d(
        inp[0],
        p["out"],
        p["kernel"],
        stride=p["stride"],
        padding=resolve_padding(p),
        dilation=p["dilation"],
        groups=p["groups"],
        bias=p["bias"],
    )


# --------------------------------------------------------------------------- pooling


def _pool_stride(p: dict) -> int:
    return p["kernel"] if p.get("stride") is None else p["stride"]


def _pool_shape(kind: str) -> Callable[[Shape, dict, ShapeContext], Shape]:
    def rule(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
        _check_positive(kind, p, "kernel", "stride")
        if p["padding"] * 2 > p["kernel"]:
            raise ShapeProblem(
                "E204",
                f"{kind} padding ({p['padding']}) must be at most half the kernel ({p['kernel']})",
            )
        h, w = _window(
            kind, inp, p, ctx, p["kernel"], _pool_stride(p), p["padding"], ceil=p["ceil"]
        )
        return (inp[0], h, w)

    return rule


def _pool_torch(cls: str) -> Callable[[Shape, dict], Any]:
    """The constructor of nn.MaxPool2d or nn.AvgPool2d from a pool's parameters."""

    def make(inp: Shape, p: dict):
        import torch.nn as nn

        return getattr(nn, cls)(p["kernel"], _pool_stride(p), p["padding"], ceil_mode=p["ceil"])

    return make


def _adaptive_shape(kind: str) -> Callable[[Shape, dict, ShapeContext], Shape]:
    def rule(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
        c, _, _ = _image(kind, inp)
        _check_positive(kind, p, "size")
        return (c, p.get("size", 1), p.get("size", 1))

    return rule


def _adaptive_torch(cls: str) -> Callable[[Shape, dict], Any]:
    """The constructor of nn.AdaptiveAvgPool2d or nn.AdaptiveMaxPool2d (size 1: global)."""

    def make(inp: Shape, p: dict):
        import torch.nn as nn

        return getattr(nn, cls)(p.get("size", 1))

    return make


# --------------------------------------------------------------------------- fc, flatten


def _flatten_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    return (math.prod(inp),)


def _flatten_torch(inp: Shape, p: dict):
    import torch.nn as nn

    return nn.Flatten(1)


def _fc_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    if len(inp) != 1:
        raise ShapeProblem(
            "E203",
            f"fc expects flat features, got {fmt(inp)}",
            "add `flatten` before it (or `global-avgpool flatten`)",
        )
    _check_positive("fc", p, "out")
    return (p["out"],)


def _fc_params(inp: Shape, p: dict) -> int:
    return inp[0] * p["out"] + (p["out"] if p["bias"] else 0)


def _fc_torch(inp: Shape, p: dict):
    import torch.nn as nn

    return nn.Linear(inp[0], p["out"], bias=p["bias"])


# --------------------------------------------------------------------------- norms, dropout


def _same_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    return inp


def _image_same_shape(kind: str) -> Callable[[Shape, dict, ShapeContext], Shape]:
    def rule(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
        return _image(kind, inp)

    return rule


def _bn_params(inp: Shape, p: dict) -> int:
    return 2 * inp[0] if p["affine"] else 0


def _bn_torch(inp: Shape, p: dict):
    import torch.nn as nn

    cls = nn.BatchNorm2d if len(inp) == 3 else nn.BatchNorm1d
    return cls(inp[0], eps=p["eps"], momentum=p["momentum"], affine=p["affine"])


def _lrn_torch(inp: Shape, p: dict):
    import torch.nn as nn

    return nn.LocalResponseNorm(p["size"], alpha=p["alpha"], beta=p["beta"], k=p["k"])


def _dropout_check(kind: str, image: bool) -> Callable[[Shape, dict, ShapeContext], Shape]:
    def rule(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
        if not 0 <= p["p"] <= 1:
            raise ShapeProblem("E204", f"{kind} probability p must be in [0, 1], got {p['p']}")
        return _image(kind, inp) if image else inp

    return rule


def _dropout_torch(cls: str) -> Callable[[Shape, dict], Any]:
    """The constructor of nn.Dropout or nn.Dropout2d."""

    def make(inp: Shape, p: dict):
        import torch.nn as nn

        return getattr(nn, cls)(p["p"])

    return make


# --------------------------------------------------------------------------- activations


def _simple_torch(name: str, **fixed: Any) -> Callable[[Shape, dict], Any]:
    def make(inp: Shape, p: dict):
        import torch.nn as nn

        return getattr(nn, name)(**fixed)

    return make


def _leaky_torch(inp: Shape, p: dict):
    import torch.nn as nn

    return nn.LeakyReLU(p["slope"])


def _elu_torch(inp: Shape, p: dict):
    import torch.nn as nn

    return nn.ELU(p["alpha"])


def _softmax_torch(inp: Shape, p: dict):
    import torch.nn as nn

    return nn.Softmax(dim=1)


def _maxout_shape(inp: Shape, p: dict, ctx: ShapeContext) -> Shape:
    _check_positive("maxout", p, "k")
    if inp[0] % p["k"]:
        raise ShapeProblem(
            "E201",
            f"maxout with k={p['k']} needs channels divisible by {p['k']}, got {inp[0]}",
            f"give the layer before it a multiple of {p['k']} channels",
        )
    return (inp[0] // p["k"],) + tuple(inp[1:])


def _maxout_torch(inp: Shape, p: dict):
    from .backends.modules import Maxout

    return Maxout(p["k"])


# --------------------------------------------------------------------------- the registry

_CONV = Style("conv", "#9ecae1")
_POOL = Style("pool", "#fdd0a2", "box")
_NORM = Style("norm", "#c7e9c0")
_ACT = Style("activation", "#fcbba1", "box")
_FC = Style("fc", "#bcbddc")
_REG = Style("regularization", "#e0e0e0")
_SHAPE = Style("reshape", "#f0f0f0")

_POOL_PARAMS = (
    Param("kernel", "int", 2, "window size"),
    Param("stride", "int?", None, "step; defaults to the kernel"),
    Param("padding", "int", 0, "zero padding", ("pad",)),
    Param("ceil", "bool", False, "ceil mode: keep a partial last window", ("ceil_mode",)),
)


def _pool_spatial(p: dict) -> tuple[int, int, int, int, bool]:
    return (p["kernel"], _pool_stride(p), p["padding"], 1, p["ceil"])


KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "conv",
        "2-D convolution; `convK-C` is a K×K conv with C filters and same padding.",
        (
            Param("out", "int", doc="output channels", aliases=("channels", "filters")),
            Param("kernel", "int", 3, "kernel size", ("k", "kernel_size")),
            Param("stride", "int", 1, "step"),
            Param(
                "padding",
                "padding",
                "same",
                "a number, `same` (half the kernel) or `valid` (0)",
                ("pad",),
            ),
            Param("dilation", "int", 1, "spacing of the kernel taps"),
            Param("groups", "int", 1, "grouped convolution"),
            Param("bias", "bool", True, "learn a bias"),
        ),
        _conv_shape,
        _conv_torch,
        _CONV,
        ("convolution", "conv2d"),
        ("kernel", ("out",)),
        _conv_params,
        _conv_macs,
        spatial=lambda p: (p["kernel"], p["stride"], resolve_padding(p), p["dilation"], False),
        summary=lambda p: (
            f"{p['kernel']}×{p['kernel']}, {p['out']}"
            + (f", /{p['stride']}" if p["stride"] != 1 else "")
        ),
    ),
    LayerKind(
        "maxpool",
        "Max pooling; `maxpool` alone is VGG's 2×2 window with stride 2.",
        _POOL_PARAMS,
        _pool_shape("maxpool"),
        _pool_torch("MaxPool2d"),
        _POOL,
        ("max-pool", "maxpool2d", "pool"),
        ("kernel", ("stride",)),
        spatial=_pool_spatial,
        summary=lambda p: f"{p['kernel']}×{p['kernel']}, /{_pool_stride(p)}",
    ),
    LayerKind(
        "avgpool",
        "Average pooling.",
        _POOL_PARAMS,
        _pool_shape("avgpool"),
        _pool_torch("AvgPool2d"),
        _POOL,
        ("avg-pool", "avgpool2d", "averagepool"),
        ("kernel", ("stride",)),
        spatial=_pool_spatial,
        summary=lambda p: f"{p['kernel']}×{p['kernel']}, /{_pool_stride(p)}",
    ),
    LayerKind(
        "adaptiveavgpool",
        "Adaptive average pooling to size×size.",
        (Param("size", "int", 1, "output height and width"),),
        _adaptive_shape("adaptive-avgpool"),
        _adaptive_torch("AdaptiveAvgPool2d"),
        _POOL,
        ("adaptive-avgpool",),
        (None, ("size",)),
        spatial=lambda p: None,
        summary=lambda p: f"→{p['size']}×{p['size']}",
    ),
    LayerKind(
        "adaptivemaxpool",
        "Adaptive max pooling to size×size.",
        (Param("size", "int", 1, "output height and width"),),
        _adaptive_shape("adaptive-maxpool"),
        _adaptive_torch("AdaptiveMaxPool2d"),
        _POOL,
        ("adaptive-maxpool",),
        (None, ("size",)),
        summary=lambda p: f"→{p['size']}×{p['size']}",
    ),
    LayerKind(
        "globalavgpool",
        "Global average pooling: C×H×W → C×1×1.",
        (),
        _adaptive_shape("global-avgpool"),
        _adaptive_torch("AdaptiveAvgPool2d"),
        _POOL,
        ("global-avgpool", "gap", "globalavgpooling"),
    ),
    LayerKind(
        "flatten", "Flatten C×H×W to C·H·W features.", (), _flatten_shape, _flatten_torch, _SHAPE
    ),
    LayerKind(
        "fc",
        "Fully connected layer; `FC-4096` has 4096 outputs, inputs are inferred.",
        (
            Param("out", "int", doc="output features", aliases=("features",)),
            Param("bias", "bool", True, "learn a bias"),
        ),
        _fc_shape,
        _fc_torch,
        _FC,
        ("linear", "dense", "fullyconnected"),
        (None, ("out",)),
        _fc_params,
        lambda inp, out, p: inp[0] * p["out"],
        summary=lambda p: f"{p['out']}",
    ),
    LayerKind(
        "dropout",
        "Dropout of single activations.",
        (Param("p", "float", 0.5, "drop probability"),),
        _dropout_check("dropout", False),
        _dropout_torch("Dropout"),
        _REG,
        (),
        (None, ("p",)),
        summary=lambda p: f"p={p['p']}",
    ),
    LayerKind(
        "dropout2d",
        "Dropout of whole channels.",
        (Param("p", "float", 0.5, "drop probability"),),
        _dropout_check("dropout2d", True),
        _dropout_torch("Dropout2d"),
        _REG,
        (),
        (None, ("p",)),
        summary=lambda p: f"p={p['p']}",
    ),
    LayerKind(
        "bn",
        "Batch normalisation (2-D for images, 1-D for features).",
        (
            Param("eps", "float", 1e-5, "added to the variance"),
            Param("momentum", "float", 0.1, "running-average momentum"),
            Param("affine", "bool", True, "learn scale and shift"),
        ),
        _same_shape,
        _bn_torch,
        _NORM,
        ("batchnorm", "batchnorm2d", "bnorm"),
        (None, ()),
        _bn_params,
    ),
    LayerKind(
        "lrn",
        "Local response normalisation across channels (AlexNet). PyTorch's formula: "
        "alpha is divided by size.",
        (
            Param("size", "int", 5, "channels in the window", ("n",)),
            Param("alpha", "float", 1e-4, "scale"),
            Param("beta", "float", 0.75, "exponent"),
            Param("k", "float", 1.0, "additive constant"),
        ),
        _image_same_shape("lrn"),
        _lrn_torch,
        _NORM,
        ("localresponsenorm",),
        (None, ("size",)),
        summary=lambda p: f"n={p['size']}",
    ),
    LayerKind("softmax", "Softmax over channels/classes.", (), _same_shape, _softmax_torch, _ACT),
    LayerKind(
        "relu", "Rectified linear unit: max(0, x).", (), _same_shape, _simple_torch("ReLU"), _ACT
    ),
    LayerKind("sigmoid", "Logistic sigmoid.", (), _same_shape, _simple_torch("Sigmoid"), _ACT),
    LayerKind("tanh", "Hyperbolic tangent.", (), _same_shape, _simple_torch("Tanh"), _ACT),
    LayerKind(
        "leakyrelu",
        "Leaky ReLU: max(slope·x, x); the lecture uses slope 0.1.",
        (Param("slope", "float", 0.01, "negative slope", ("negative_slope",)),),
        _same_shape,
        _leaky_torch,
        _ACT,
        ("leaky-relu", "lrelu"),
        (None, ("slope",)),
        summary=lambda p: f"{p['slope']}",
    ),
    LayerKind(
        "elu",
        "Exponential linear unit.",
        (Param("alpha", "float", 1.0, "saturation"),),
        _same_shape,
        _elu_torch,
        _ACT,
        (),
        (None, ("alpha",)),
    ),
    LayerKind(
        "maxout",
        "Maxout: the maximum over groups of k consecutive channels.",
        (Param("k", "int", 2, "pieces per output channel", ("pieces",)),),
        _maxout_shape,
        _maxout_torch,
        _ACT,
        (),
        ("k", ()),
        summary=lambda p: f"k={p['k']}",
    ),
    LayerKind(
        "identity", "Passes its input through.", (), _same_shape, _simple_torch("Identity"), _SHAPE
    ),
)

REGISTRY: dict[str, LayerKind] = {k.name: k for k in KINDS}
_LOOKUP: dict[str, LayerKind] = {}
for _kind in KINDS:
    for _key in (_kind.name, *_kind.aliases):
        _LOOKUP[normalize(_key)] = _kind


def lookup(word: str) -> LayerKind | None:
    """The kind a spec word names (`FC`, `soft-max`, `LRN`, ...), or None."""
    return _LOOKUP.get(normalize(word))


def kind_names() -> list[str]:
    """Every name and alias a spec may use for a layer kind."""
    return sorted({n for k in KINDS for n in (k.name, *k.aliases)})
