"""The tensor-operation kinds compute what timm's (or torch's) modules compute.

Each kind is built from the registry, given timm's weights where it has any (loaded
strictly, so the state_dict names are timm's), randomised so the oracle tells cases apart,
and run on random input beside timm's module. Shapes, parameter and MAC counts, generated
Python and ONNX are checked for every kind by tests/test_registry.py, test_counts.py and
test_onnx.py on tests/fixtures/every_kind.arch.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import archc
from archc.layers import REGISTRY, REQUIRED

timm_layers = pytest.importorskip("timm.layers")


def build(kind: str, in_shape: tuple[int, ...], **given):
    """The registry kind's module for input `shape`, with its defaults under `given`."""
    k = REGISTRY[kind]
    params = {p.name: p.default for p in k.params if p.default is not REQUIRED} | given
    return k.torch(in_shape, params).eval()


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def randomise(module: nn.Module, seed: int = 1) -> None:
    """Every parameter and BN statistic drawn at random: a fresh init (gain 1, mean 0, var 1)
    would let a wrong formula pass."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                values = torch.rand(t.shape, generator=g) + 0.5 if "var" in name else \
                    torch.randn(t.shape, generator=g)
                t.copy_(values)


@pytest.mark.parametrize("stride, padding, groups, gamma, eps", [
    (1, "same", 1, 1.0, 1e-6), (2, 1, 2, 1.7139588594436646, 1e-8), (1, 0, 1, 2.0, 1e-5)])
def test_std_conv_is_timms_scaled_std_conv(stride, padding, groups, gamma, eps):
    ours = build("std-conv", (4, 9, 10), out=6, kernel=3, stride=stride, padding=padding,
                 groups=groups, gamma=gamma, eps=eps)
    pad = 1 if padding == "same" else padding
    theirs = timm_layers.ScaledStdConv2d(4, 6, 3, stride=stride, padding=pad, groups=groups,
                                         gamma=gamma, eps=eps).eval()
    randomise(ours)
    assert set(ours.state_dict()) == {"weight", "bias", "gain"}
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = randn(2, 4, 9, 10)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours(x), nn.functional.conv2d(x, ours.weight, ours.bias, stride,
                                                            pad, 1, groups), atol=1e-2)


@pytest.mark.parametrize("filt, stride, mode", [(3, 2, "reflect"), (5, 2, "reflect"),
                                                 (3, 1, "reflect"), (4, 2, "constant")])
def test_blur_pool_is_timms(filt, stride, mode):
    ours = build("blur-pool", (5, 12, 9), filter=filt, stride=stride, pad_mode=mode)
    theirs = timm_layers.BlurPool2d(5, filt_size=filt, stride=stride, pad_mode=mode).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict()) == []  # the filter is fixed
    x = randn(2, 5, 12, 9)
    torch.testing.assert_close(ours(x), theirs(x))
    assert tuple(ours(x).shape[1:]) == REGISTRY["blur-pool"].shape(
        (5, 12, 9), {"filter": filt, "stride": stride, "pad_mode": mode}, None)


def test_space_to_depth_is_timms_channel_order():
    x = randn(2, 3, 8, 12)
    torch.testing.assert_close(build("space-to-depth", (3, 8, 12))(x),
                               timm_layers.SpaceToDepth(4)(x))


@pytest.mark.parametrize("kernel", [3, 5])
def test_eca_is_timms_eca_module(kernel):
    ours = build("eca", (16, 5, 4), kernel=kernel)
    theirs = timm_layers.EcaModule(kernel_size=kernel).eval()
    randomise(ours)
    theirs.load_state_dict(ours.state_dict(), strict=True)  # `conv.weight`, (1, 1, k)
    x = randn(2, 16, 5, 4)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("radix, groups", [(2, 1), (2, 2), (4, 2), (1, 1)])
def test_split_attention_is_resnests(radix, groups):
    """timm's SplitAttn is conv → bn0 → act0 → the attention; ours is the attention, given
    the same conv's output, with fc1, bn1 and fc2 under timm's keys."""
    in_c, out_c, attn = 8, 8, 4 * radix  # timm: rd_channels · radix
    theirs = timm_layers.SplitAttn(in_c, out_c, radix=radix, groups=groups, rd_channels=4,
                                   norm_layer=nn.BatchNorm2d).eval()
    randomise(theirs)
    ours = build("split-attention", (out_c * radix, 6, 5), radix=radix, hidden=attn,
                 groups=groups)
    attention = {k: v for k, v in theirs.state_dict().items() if k.split(".")[0] in
                 ("fc1", "bn1", "fc2")}
    ours.load_state_dict(attention, strict=True)
    x = randn(2, in_c, 6, 5)
    with torch.no_grad():
        stacked = theirs.act0(theirs.bn0(theirs.conv(x)))
        torch.testing.assert_close(ours(stacked), theirs(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("radix, groups, stride, dilation", [(2, 1, 1, 1), (4, 2, 2, 1),
                                                              (1, 4, 1, 2)])
def test_splat_conv_is_timms_split_attn_whole(radix, groups, stride, dilation):
    """ResNeSt's conv2: timm's SplitAttn (conv, bn0, act0 and the attention) loads into
    splat-conv strictly, keys and all, and computes the same."""
    theirs = timm_layers.SplitAttn(16, 8, stride=stride, padding=dilation, dilation=dilation,
                                   groups=groups, radix=radix, norm_layer=nn.BatchNorm2d).eval()
    randomise(theirs)
    ours = build("splat-conv", (16, 9, 7), out=8, hidden=theirs.fc1.out_channels, radix=radix,
                 groups=groups, stride=stride, dilation=dilation)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = randn(2, 16, 9, 7)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_split_attention_is_selective_kernels():
    """SKNet: the paths stacked (B, n, C, H, W) are the paths concatenated, viewed."""
    from timm.layers.selective_kernel import SelectiveKernelAttn

    theirs = SelectiveKernelAttn(6, num_paths=3, attn_channels=4).eval()
    randomise(theirs)
    ours = build("split-attention", (18, 5, 5), radix=3, hidden=4, bias=False, names="sk")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    paths = [randn(2, 6, 5, 5, seed=i) for i in range(3)]
    stacked = torch.stack(paths, 1)
    want = (stacked * theirs(stacked)).sum(1)
    torch.testing.assert_close(ours(torch.cat(paths, 1)), want, rtol=1e-4, atol=1e-5)


def test_count_include_pad_false_is_inception_v4s_pool():
    from timm.models.inception_v4 import InceptionA

    pool = InceptionA().branch3[0]  # timm's: AvgPool2d(3, 1, 1, count_include_pad=False)
    assert isinstance(pool, nn.AvgPool2d) and not pool.count_include_pad
    ours = build("avgpool", (4, 7, 6), kernel=3, stride=1, padding=1, count_include_pad=False)
    x = randn(2, 4, 7, 6).abs() + 1
    torch.testing.assert_close(ours(x), pool(x))
    counted = build("avgpool", (4, 7, 6), kernel=3, stride=1, padding=1)
    assert not torch.allclose(ours(x), counted(x))  # the border windows differ


def test_simple_operations_compute_their_formula():
    x = randn(2, 6, 7, 9)
    assert torch.equal(build("channel-slice", (6, 7, 9), start=2, end=5)(x), x[:, 2:5])
    torch.testing.assert_close(build("constant-scale", (6, 7, 9), factor=0.17, shift=-1.0)(x),
                               x * 0.17 - 1.0)
    assert torch.equal(build("reshape", (6, 7, 9), shape=(42, 9))(x), x.reshape(2, 42, 9))
    assert torch.equal(build("crop", (6, 7, 9), height=4, width=4)(x), x[:, :, 1:5, 2:6])


def test_timm_keys_through_a_spec():
    """Labels give timm's full keys: an ECA-ResNet block's `se.conv.weight`, an NF-ResNet
    conv's `conv1.gain`, ResNeSt's `attn.fc1.weight`."""
    text = ("network t:\n    input 8x8x8\n    conv1: std-conv3-8(gamma=1.7)\n"
            "    se: eca(3)\n    conv2: conv3-16(groups=2)\n"
            "    attn: split-attention(hidden=4)\n")
    model = archc.build(archc.check("t.arch", text=text).network)
    keys = set(model.state_dict())
    assert {"conv1.gain", "conv1.weight", "se.conv.weight", "attn.fc1.weight",
            "attn.bn1.running_var", "attn.fc2.bias"} <= keys


# --------------------------------------------------------------------------- add-into


def darknet_shortcut(out: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """darknet's shortcut_cpu (src/blas.c), loop for loop: `add` (w1, h1, c1) into `out`
    (w2, h2, c2); stride = w1 / w2 and sample = w2 / w1, each at least 1."""
    out = out.clone()
    _, c2, h2, w2 = out.shape
    _, c1, h1, w1 = add.shape
    stride, sample = max(1, w1 // w2), max(1, w2 // w1)
    for b in range(out.shape[0]):
        for k in range(min(c1, c2)):
            for j in range(min(h1, h2)):
                for i in range(min(w1, w2)):
                    out[b, k, j * sample, i * sample] += add[b, k, j * stride, i * stride]
    return out


@pytest.mark.parametrize("base, other", [
    ((6, 4, 4), (2, 4, 4)),  # ReXNet: into the first channels
    ((2, 4, 4), (6, 4, 4)),  # the first channels of a wider one
    ((8, 3, 3), (4, 6, 6)),  # darknet's resnet: 64×56×56 into 128×28×28
    ((4, 6, 6), (4, 3, 3)),  # a smaller one spread out
    ((3, 5, 5), (5, 10, 10)), ((3, 7, 7), (2, 2, 2)), ((2, 2, 2), (3, 7, 7)),
])
def test_add_into_is_darknets_shortcut(base, other):
    from archc.layers import MERGES

    merge = MERGES["add-into"]
    assert merge.shape([base, other]) == base
    a, b = randn(2, *base, seed=1), randn(2, *other, seed=2)
    got = merge.combine([a, b])
    torch.testing.assert_close(got, darknet_shortcut(a, b))
    assert not torch.allclose(got, a)  # the oracle sees the addition


def test_add_into_exports_to_onnx(tmp_path):
    """A strided and a spread add-into through onnxruntime."""
    try:
        from test_onnx import assert_matches, export_with_known_weights
    except ImportError:  # pragma: no cover - tests/ is a package
        from tests.test_onnx import assert_matches, export_with_known_weights

    text = ("network t:\n    input 3x8x8\n    conv3-6\n    add-into:\n        conv3-8(stride=2)\n"
            "        identity\n    add-into:\n        [upsample conv1-4]\n        identity\n"
            "    gap flatten fc-2\n")
    net = archc.check("t.arch", text=text).network
    written, model = export_with_known_weights(net, tmp_path)
    assert_matches(written[0], model, net.input_shape)


def test_affine_is_timms_learnable_affine_block():
    """`affine` loads HGNetV2's LearnableAffineBlock strictly (`scale`, `bias` of shape (1,))
    and computes scale · x + bias."""
    from timm.models.hgnet import LearnableAffineBlock

    theirs = LearnableAffineBlock(scale_value=0.7, bias_value=-0.3)
    ours = build("affine", (6, 7, 9))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = randn(2, 6, 7, 9)
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours(x), x * 0.7 - 0.3)


def test_pad_is_torchs_pad_and_crops_on_a_negative_side():
    """`pad((top, bottom, left, right))` is F.pad(x, (left, right, top, bottom)); a negative
    side crops, as torch's does, and cropping a whole axis away is a located E202."""
    x = randn(2, 3, 5, 4)
    ours = build("pad", (3, 5, 4), padding=(2, 0, 1, 3))
    assert torch.equal(ours(x), nn.functional.pad(x, (1, 3, 2, 0)))
    crop = build("pad", (3, 5, 4), padding=(0, -1, 0, 1))
    assert torch.equal(crop(x), nn.functional.pad(x, (0, 1, 0, -1)))
    result = archc.check("pad.arch", text="network p:\n    input 3x8x8\n"
                         "    pad((0, -8, 0, 1)) global-avgpool\n")
    assert [(d.code, d.span.line, d.span.column) for d in result.diagnostics] == [("E202", 3, 5)]
