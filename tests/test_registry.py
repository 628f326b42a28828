"""Every layer kind of the registry agrees with the torch module it builds.

For every kind in `archc.layers.KINDS`, on image and flat inputs: the static shape rule gives
the shape torch's forward gives, and refuses only inputs torch refuses (or, listed below, on
purpose); `count_params` counts the module's parameters, and `count_macs` is half the FLOPs
that torch's FlopCounterMode counts.
Property tests then search conv and pool hyper-parameters and input sizes: whenever torch
accepts an input the static shape is torch's, and whenever torch refuses it (an output size
below 1, or too much padding) the shape rule raises ShapeProblem.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archc.layers import KINDS, REGISTRY, REQUIRED, LayerKind, ShapeContext, ShapeProblem

# Example parameters per kind (one or more sets). A kind added to the registry must be
# added here too: test_examples_cover_every_kind fails until it is.
EXAMPLES: dict[str, list[dict]] = {
    "conv": [{"out": 6, "kernel": 3, "stride": 2, "padding": 1},
             {"out": 4, "kernel": 3, "padding": "same", "dilation": 2, "groups": 2, "bias": False},
             {"out": 5, "kernel": 2, "padding": "valid"},
             {"out": 4, "kernel": (1, 3), "stride": (2, 1), "padding": (0, 1), "dilation": (1, 2)},
             {"out": 2, "kernel": (3, 5), "padding": "same", "dilation": (2, 1)}],
    "maxpool": [{"kernel": 3, "stride": 2, "ceil": True}, {}, {"kernel": (3, 1), "stride": (2, 1)}],
    "avgpool": [{"kernel": 3, "stride": 2, "padding": 1}, {"kernel": 2, "ceil": True},
                {"kernel": (2, 3), "stride": (1, 2), "padding": (1, 1), "ceil": True}],
    "adaptiveavgpool": [{"size": 3}],
    "adaptivemaxpool": [{"size": 2}],
    "globalavgpool": [{}],
    "flatten": [{}],
    "fc": [{"out": 5}, {"out": 3, "bias": False}],
    "dropout": [{"p": 0.3}],
    "dropout2d": [{"p": 0.3}],
    "bn": [{}, {"affine": False, "eps": 1e-3}],
    "lrn": [{"size": 3, "alpha": 1e-3, "beta": 0.5, "k": 2.0}],
    "softmax": [{}],
    "relu": [{}],
    "sigmoid": [{}],
    "tanh": [{}],
    "leakyrelu": [{"slope": 0.1}],
    "elu": [{"alpha": 0.5}],
    "maxout": [{"k": 2}],
    "identity": [{}],
    "relu6": [{}],
    "silu": [{}],
    "hardswish": [{}],
    "hardsigmoid": [{}],
    "gelu": [{}, {"approximate": "tanh"}],
    "mish": [{}],
    "prelu": [{}, {"per_channel": True, "init": 0.1}],
    "layernorm": [{}, {"eps": 1e-6, "affine": False}],
    "layernorm2d": [{"eps": 1e-6}, {"affine": False}],
    "groupnorm": [{"groups": 2}, {"groups": 1, "eps": 1e-3, "affine": False}],
    "channel-shuffle": [{"groups": 2}],
    "scale": [{"init": 0.5}],
    "channel-fc": [{"out": 5}, {"out": 4, "bias": False, "last": True}],
    "stochastic-depth": [{"p": 0.2}, {"p": 0.5, "mode": "batch"}],
    "permute": [{"dims": (0, 2, 3, 1)}, {"dims": (0, 1)}],
}

# Inputs: images with an odd and an even channel count (groups=2 and maxout k=2 refuse 3),
# odd unequal sides, and flat features.
SHAPES = {"image3": (3, 9, 11), "image4": (4, 9, 11), "flat6": (6,), "flat5": (5,)}
# (kind, "image" or "flat"): where archc's rule refuses inputs on purpose although torch's
# module would run them, and why.
STRICTER = {
    ("dropout2d", "flat"): "channel dropout of flat features is element dropout: use dropout",
    ("globalavgpool", "flat"): "torch's 1×1 adaptive pool would average an N×F batch as one "
                               "image, mixing the samples",
    ("scale", "flat"): "a (C, 1, 1) scale would broadcast a batch of features into a cube",
    ("channel-fc", "flat"): "a Linear over flat features is `fc`",
}
BATCH = 2

CASES = [pytest.param(kind, params, id=f"{kind}-{i}")
         for kind, examples in EXAMPLES.items() for i, params in enumerate(examples)]


def full_params(kind: LayerKind, given: dict) -> dict:
    """The kind's defaults with `given` on top: what the resolver hands a shape rule."""
    missing = [p.name for p in kind.params if p.required and p.name not in given]
    assert not missing, f"example for {kind.name} lacks required {missing}"
    return {**{p.name: p.default for p in kind.params if p.default is not REQUIRED}, **given}


def static_shape(kind: LayerKind, shape, params: dict):
    """The shape rule's output, or None when it raises ShapeProblem."""
    try:
        return kind.shape(shape, params, ShapeContext())
    except ShapeProblem:
        return None


def run_torch(kind: LayerKind, shape, params: dict):
    """Build the kind's module and run a batch of `shape` inputs in eval mode.

    Returns (module, output, FLOPs counted), or None when torch refuses the input.
    """
    x = torch.randn(BATCH, *shape, generator=torch.Generator().manual_seed(0))
    try:
        module = kind.torch(shape, params).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = module(x)
    except (RuntimeError, ValueError, IndexError, ShapeProblem):
        return None
    return module, out, counter.get_total_flops()


def test_examples_cover_every_kind():
    assert set(EXAMPLES) == {k.name for k in KINDS}


@pytest.mark.filterwarnings("ignore:dropout2d. Received a 2-D input:UserWarning")
@pytest.mark.parametrize("kind_name, given", CASES)
@pytest.mark.parametrize("shape_id", list(SHAPES))
def test_registry_rules_match_torch(kind_name, given, shape_id):
    kind, shape = REGISTRY[kind_name], SHAPES[shape_id]
    params = full_params(kind, given)
    expected = static_shape(kind, shape, params)
    ran = run_torch(kind, shape, params)
    if expected is None:  # archc refuses only what torch refuses, or on purpose
        rank = "flat" if len(shape) == 1 else "image"
        assert ran is None or (kind_name, rank) in STRICTER, \
            f"archc refuses {shape} for {kind_name}, torch runs it"
        return
    assert ran is not None, f"archc accepts {shape} for {kind_name} -> {expected}, torch refuses"
    module, out, flops = ran
    assert tuple(out.shape) == (BATCH, *expected)
    assert kind.count_params(shape, params) == sum(p.numel() for p in module.parameters())
    # FlopCounterMode counts conv and matmul FLOPs (2 per multiply-accumulate), exactly
    # what count_macs counts; every other kind counts 0 on both sides.
    assert 2 * BATCH * kind.count_macs(shape, expected, params) == flops


def test_every_kind_takes_some_input():
    """Each kind's examples run on at least one of the inputs: the checks above bite."""
    for kind_name, examples in EXAMPLES.items():
        kind = REGISTRY[kind_name]
        assert all(any(static_shape(kind, shape, full_params(kind, given)) is not None
                       for shape in SHAPES.values()) for given in examples), kind_name


# --------------------------------------------------------------------------- properties

CHANNELS = 2
sizes = st.integers(1, 24)


def torch_shape(module: nn.Module, h: int, w: int):
    """torch's output shape for a 1×C×h×w input, or None when torch refuses it."""
    try:
        with torch.no_grad():
            return tuple(module(torch.zeros(1, CHANNELS, h, w)).shape[1:])
    except RuntimeError:
        return None


def archc_shape(kind_name: str, given: dict, h: int, w: int):
    """archc's static shape for a C×h×w input, or None when the rule raises ShapeProblem."""
    kind = REGISTRY[kind_name]
    return static_shape(kind, (CHANNELS, h, w), full_params(kind, given))


@settings(max_examples=300, deadline=None)
@given(kernel=st.integers(1, 7), stride=st.integers(1, 4), dilation=st.integers(1, 3),
       padding=st.one_of(st.integers(0, 4), st.sampled_from(["same", "valid"])), h=sizes, w=sizes)
@example(kernel=3, stride=1, dilation=1, padding="same", h=1, w=1)
@example(kernel=5, stride=2, dilation=2, padding=0, h=8, w=9)  # 8 < 2·4+1: nothing fits
def test_conv_shape_rule_matches_torch(kernel, stride, dilation, padding, h, w):
    assume(not (padding == "same" and kernel % 2 == 0))  # archc refuses it: tested below
    given_ = {"out": 3, "kernel": kernel, "stride": stride, "dilation": dilation,
              "padding": padding}
    # torch's padding="same" works at stride 1 only; archc's `same` is half the dilated
    # kernel at any stride, which is the integer padding torch gets here.
    pad = dilation * (kernel - 1) // 2 if padding == "same" else padding
    module = nn.Conv2d(CHANNELS, 3, kernel, stride, pad, dilation)
    expected = torch_shape(module, h, w)
    assert archc_shape("conv", given_, h, w) == expected
    if padding == "same" and stride == 1:  # and agrees with torch's own `same`
        assert expected == torch_shape(nn.Conv2d(CHANNELS, 3, kernel, 1, "same", dilation), h, w)


pairs = st.tuples(st.integers(1, 5), st.integers(1, 5))


@settings(max_examples=200, deadline=None)
@given(kernel=pairs, stride=pairs, dilation=pairs, padding=st.tuples(st.integers(0, 3),
       st.integers(0, 3)), h=sizes, w=sizes)
@example(kernel=(1, 7), stride=(1, 1), dilation=(1, 1), padding=(0, 3), h=17, w=17)
def test_non_square_conv_matches_torch(kernel, stride, dilation, padding, h, w):
    """kernel, stride, padding and dilation as (h, w) pairs: the rule works per axis."""
    given_ = {"out": 3, "kernel": kernel, "stride": stride, "dilation": dilation,
              "padding": padding}
    expected = torch_shape(nn.Conv2d(CHANNELS, 3, kernel, stride, padding, dilation), h, w)
    assert archc_shape("conv", given_, h, w) == expected


@settings(max_examples=200, deadline=None)
@given(kernel=pairs, stride=pairs, pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       ceil=st.booleans(), h=sizes, w=sizes)
def test_non_square_pool_matches_torch(kernel, stride, pad, ceil, h, w):
    given_ = {"kernel": kernel, "stride": stride, "padding": pad, "ceil": ceil}
    try:
        module = nn.MaxPool2d(kernel, stride, pad, ceil_mode=ceil)
    except (RuntimeError, ValueError):
        module = None
    expected = torch_shape(module, h, w) if module is not None else None
    assert archc_shape("maxpool", given_, h, w) == expected


@pytest.mark.parametrize("kernel", [2, 4, (3, 2)])
def test_same_padding_needs_an_odd_kernel(kernel):
    conv = REGISTRY["conv"]
    params = full_params(conv, {"out": 3, "kernel": kernel, "padding": "same"})
    with pytest.raises(ShapeProblem, match="odd kernel"):
        conv.shape((CHANNELS, 8, 8), params, ShapeContext())


POOLS = {"maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d}


@pytest.mark.parametrize("kind_name", list(POOLS))
@settings(max_examples=300, deadline=None)
@given(kernel=st.integers(1, 5), stride=st.one_of(st.none(), st.integers(1, 4)),
       padding=st.integers(0, 3), ceil=st.booleans(), h=sizes, w=sizes)
@example(kernel=3, stride=2, padding=0, ceil=True, h=6, w=7)  # the last window starts in the pad
@example(kernel=2, stride=None, padding=0, ceil=False, h=1, w=5)  # height 0
@example(kernel=2, stride=2, padding=2, ceil=False, h=8, w=8)  # too much padding
def test_pool_shape_rule_matches_torch(kind_name, kernel, stride, padding, ceil, h, w):
    given_ = {"kernel": kernel, "stride": stride, "padding": padding, "ceil": ceil}
    try:
        module = POOLS[kind_name](kernel, stride, padding, ceil_mode=ceil)
    except (RuntimeError, ValueError):  # a torch that checks at construction refuses it
        module = None
    expected = torch_shape(module, h, w) if module is not None else None
    assert archc_shape(kind_name, given_, h, w) == expected
