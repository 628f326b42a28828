"""`upsample` and pools padded (top, bottom, left, right): the shape rules against torch, the
values against torch's functional reference, the input-size scan and the receptive field.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

import archc
from archc.compiler.graph import layers
from archc.layers import REGISTRY, ShapeContext, ShapeProblem

CHANNELS = 2


def padded_pool_reference(x: torch.Tensor, kernel, stride, sides, mode: str) -> torch.Tensor:
    """What a pool padded side by side computes: pad with -inf (max) or 0 (avg), then a pool
    without padding. -inf never wins a max; the zeros count in the average."""
    top, bottom, left, right = sides
    fill = float("-inf") if mode == "max" else 0.0
    x = nn.functional.pad(x, (left, right, top, bottom), value=fill)
    pool = nn.functional.max_pool2d if mode == "max" else nn.functional.avg_pool2d
    return pool(x, kernel, stride)


def static(kind: str, params: dict, h: int, w: int):
    """archc's shape for a C×h×w input, or None when the rule refuses it."""
    full = {"stride": None, "ceil": False, **params}
    try:
        return REGISTRY[kind].shape((CHANNELS, h, w), full, ShapeContext())
    except ShapeProblem:
        return None


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["maxpool", "avgpool"]), kernel=st.integers(1, 4),
       stride=st.integers(1, 3), sides=st.tuples(*[st.integers(0, 3)] * 4),
       h=st.integers(1, 12), w=st.integers(1, 12))
@example(kind="maxpool", kernel=2, stride=1, sides=(0, 1, 0, 1), h=13, w=13)  # darknet's
@example(kind="maxpool", kernel=2, stride=2, sides=(0, 1, 0, 1), h=1, w=1)
def test_pools_padded_by_side_match_the_reference(kind, kernel, stride, sides, h, w):
    params = {"kernel": kernel, "stride": stride, "padding": sides}
    shape = static(kind, params, h, w)
    uneven = sides[0] != sides[1] or sides[2] != sides[3]
    if uneven and max(sides) >= kernel:  # a window could hold padding only
        assert shape is None
        return
    x = torch.randn(2, CHANNELS, h, w, generator=torch.Generator().manual_seed(h * 31 + w))
    try:
        want = padded_pool_reference(x, kernel, stride, sides, kind[:3])
    except RuntimeError:  # the padded image is smaller than the kernel
        assert shape is None
        return
    if not uneven and max(sides[0], sides[2]) * 2 > kernel:  # torch's even-padding limit
        assert shape is None
        return
    assert shape == tuple(want.shape[1:])
    module = REGISTRY[kind].torch((CHANNELS, h, w), {**params, "ceil": False})
    torch.testing.assert_close(module(x), want)


def test_darknet_pool_keeps_the_size_and_takes_the_right_and_bottom():
    net = archc.check("t.arch", text="network t:\n    input 1x3x3\n"
                      "    maxpool(2, stride=1, padding=(0, 1, 0, 1))\n").network
    x = torch.arange(9.0).reshape(1, 1, 3, 3) - 20  # all negative: zero padding would win
    out = archc.build(net)(x)
    assert net.output_shape == (1, 3, 3)
    # each output is the max of its 2×2 window clipped at the right and bottom edges
    assert out[0, 0].tolist() == [[-16, -15, -15], [-13, -12, -12], [-13, -12, -12]]


@pytest.mark.parametrize("padding, message", [
    ("(0, 2, 0, 1)", "0 to 1"), ("(0, -1, 0, 1)", "0 to 1"), ("(1, 0, 0)", "E104"),
])
def test_bad_sides_are_located_errors(padding, message):
    result = archc.check("t.arch", text=f"network t:\n    input 3x8x8\n"
                         f"    maxpool(2, stride=1, padding={padding})\n")
    assert not result.ok
    (diag,) = result.diagnostics
    assert diag.span.line == 3 and message in f"{diag.code} {diag.message}"


def test_uneven_padding_takes_no_ceil():
    result = archc.check("t.arch", text="network t:\n    input 3x8x8\n"
                         "    maxpool(2, padding=(0, 1, 0, 1), ceil=true)\n")
    assert [d.code for d in result.diagnostics] == ["E204"]
    assert "ceil" in result.diagnostics[0].message


@pytest.mark.parametrize("scale, mode", [(2, "nearest"), (3, "nearest"), (2, "bilinear")])
def test_upsample_is_torchs_interpolate(scale, mode):
    net = archc.check("t.arch", text=f"network t:\n    input 3x5x7\n"
                      f'    upsample(scale={scale}, mode="{mode}")\n').network
    (layer,) = layers(net.root)
    assert layer.out_shape == (3, 5 * scale, 7 * scale) and layer.n_params == layer.macs == 0
    x = torch.randn(2, 3, 5, 7)
    want = nn.functional.interpolate(x, scale_factor=scale, mode=mode)
    torch.testing.assert_close(archc.build(net)(x), want)
    if mode == "nearest":  # every pixel repeated scale×scale times
        assert torch.equal(want, x.repeat_interleave(scale, 2).repeat_interleave(scale, 3))


def test_upsample_refuses_flat_features_and_a_zero_scale():
    flat = archc.check("t.arch", text="network t:\n    input 3x4x4\n    flatten upsample\n")
    zero = archc.check("t.arch", text="network t:\n    input 3x4x4\n    upsample(0)\n")
    assert [d.code for d in flat.diagnostics] == ["E203"]
    assert [d.code for d in zero.diagnostics] == ["E204"]


YOLO_NECK = """network neck:
    input 3x{size}x{size}
    conv3-8 maxpool(2, stride=1, padding=(0, 1, 0, 1))
    concat:
        [conv1-8 upsample-2]
        [conv1-4 maxpool(2, stride=1, padding=(0, 1, 0, 1)) maxpool upsample-2 upsample-2]
    global-avgpool flatten FC-3
"""


def test_input_sizes_follow_the_upsample():
    """Two branches upsampled to the same size meet in a concat: the scan needs the factors
    (without them the branches would never match), and the /2 pool in the second branch
    makes them match at even sizes only."""
    from archc.compiler.shapes import input_sizes

    net = archc.check("t.arch", text=YOLO_NECK.format(size=16)).network
    sizes = input_sizes(net)
    assert (sizes.smallest, sizes.step, sizes.largest) == (2, 2, None)
    for size in (15, 18):  # and what the scan says is what the checker says
        assert archc.check("t.arch", text=YOLO_NECK.format(size=size)).ok == (size % 2 == 0)


def test_receptive_field_through_upsample():
    """After a /2 pool and a ×2 upsample the positions are 1 input pixel apart again: a 3×3
    conv then adds 2 to the field, not 4."""
    from archc.backends.summary import receptive_fields

    net = archc.check("t.arch", text="network t:\n    input 3x16x16\n"
                      "    maxpool upsample-2 c: conv3-4\n").network
    rf, jump, _ = receptive_fields(net)["c"]
    assert rf == (4, 4) and jump == (1, 1)


def test_an_edge_lost_to_uneven_padding_is_told_on_the_real_input():
    """13 rows padded 1 on top: 3-row windows at stride 2 end at row 11, so row 12 is lost;
    13 columns padded 1 on the right lose none."""
    result = archc.check("t.arch", text="network t:\n    input 3x13x13\n"
                         "    avgpool(kernel=(3, 2), stride=2, padding=(1, 0, 0, 1))\n")
    assert [d.code for d in result.diagnostics] == ["W301"]
    assert "drops the last 1 of 13 rows of 3×13×13" in result.diagnostics[0].message
    assert result.network.output_shape == (3, 6, 7)
