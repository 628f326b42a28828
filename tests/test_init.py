"""The torch backend draws every weight once, with torchvision's scheme: convs and linears
skip torch's default draw (archc/layers/core.py `weighted`) and `initialize` sets them, so
no tensor may be left as allocated memory."""
from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

import archc
from archc.backends.module import to_module
from archc.layers.core import init_deferred, weighted, weighted_composite
from archc.layers.token_modules import MLP, WindowAttention

SPECS = [
    ("specs/resnet18.arch", {}),
    ("specs/mobilenet.arch", {"network": "mobilenet_v2"}),
    ("specs/convnext.arch", {"network": "convnext_tiny"}),
    ("specs/shufflenet.arch", {"network": "shufflenet_v2_x0_5"}),
    # a small ViT: its MLPs are built on the meta device and drawn once by `initialize`
    ("specs/vit.arch", {"network": "vit_b_16", "image_size": 32, "patch": 8, "depth": 2,
                        "heads": 2, "hidden": 64, "mlp_dim": 128}),
]


def expected_std(module: nn.Module) -> float:
    """torchvision's: Kaiming-normal with fan_out for convs, N(0, 0.01) for linears."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.out_channels * math.prod(module.kernel_size)  # as torch counts it
        return math.sqrt(2.0 / fan_out)
    return 0.01


@pytest.mark.parametrize("spec,kwargs", SPECS, ids=[s for s, _ in SPECS])
def test_every_weight_is_drawn_from_torchvisions_scheme(spec, kwargs):
    model = archc.build(spec, **kwargs)
    weighted_layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert weighted_layers
    for m in weighted_layers:
        w = m.weight.detach()
        assert torch.isfinite(w).all()
        assert w.count_nonzero() > 0.99 * w.numel()  # drawn, not zeroed pages
        if w.numel() >= 2000:  # enough samples for the standard deviation to say
            assert w.std().item() == pytest.approx(expected_std(m), rel=0.15)
            assert abs(w.mean().item()) < 0.15 * expected_std(m)
        if m.bias is not None:
            assert (m.bias == 0).all()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert (m.weight == 1).all() and (m.bias == 0).all()
            assert (m.running_mean == 0).all() and (m.running_var == 1).all()
    assert all(torch.isfinite(t).all() for t in model.state_dict().values()
               if t.is_floating_point())


def test_the_same_seed_builds_the_same_weights():
    torch.manual_seed(0)
    a = archc.build("specs/resnet18.arch").state_dict()
    torch.manual_seed(0)
    b = archc.build("specs/resnet18.arch").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_none_keeps_torchs_defaults():
    net = archc.load("specs/resnet18.arch")
    torch.manual_seed(3)
    model = to_module(net, init="none")
    torch.manual_seed(3)
    reference = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    torch.testing.assert_close(model.conv1.weight, reference.weight, rtol=0, atol=0)


def test_weighted_modules_are_exact_torch_classes():
    with init_deferred():
        conv = weighted(nn.Conv2d, 4, 8, 3)
        linear = weighted(nn.Linear, 4, 8)
    assert type(conv) is nn.Conv2d and type(linear) is nn.Linear
    torch.manual_seed(1)
    outside = weighted(nn.Linear, 4, 8)
    torch.manual_seed(1)
    assert torch.equal(outside.weight, nn.Linear(4, 8).weight)  # the default draw


def test_deferral_belongs_to_the_thread_that_asked():
    seen = {}

    def other() -> None:
        torch.manual_seed(2)
        seen["linear"] = weighted(nn.Linear, 64, 64)

    with init_deferred():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    torch.manual_seed(2)
    assert torch.equal(seen["linear"].weight, nn.Linear(64, 64).weight)


def test_a_composite_of_linears_is_drawn_once_and_anything_else_as_usual():
    with init_deferred():
        mlp = weighted_composite(MLP, 8, 32, 8)
        attention = weighted_composite(WindowAttention, 8, 2, 3)  # a buffer, a bias table
    assert type(mlp) is MLP and mlp[0].weight.device.type == "cpu"
    assert mlp[0].weight.shape == (32, 8) and mlp[3].weight.shape == (8, 32)
    # the buffer and the table were built as usual, not left as allocated memory
    assert attention.relative_position_index.max() == 24
    assert 0.01 < attention.relative_position_bias_table.std() < 0.04  # N(0, 0.02)
    torch.manual_seed(4)
    outside = weighted_composite(MLP, 8, 32, 8)
    torch.manual_seed(4)
    assert torch.equal(outside[0].weight, MLP(8, 32, 8)[0].weight)  # the default draw
