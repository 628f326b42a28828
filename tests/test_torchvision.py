"""The specs under specs/ compile to torchvision's reference networks, exactly.

For each network: the same parameter count (archc's static count, the built module, and
torchvision's module, for 1000 and for 2 classes), state_dict keys that line up so the
archc module loads torchvision's weights strictly, and then the same eval-mode outputs.
VGG-C and VGG-A-LRN, which torchvision lacks, are checked against counts worked out by
hand from the paper's Table 1.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import archc

SPECS = Path(__file__).resolve().parents[1] / "specs"

# test id: (torchvision builder, spec file, archc.load keywords, builder keywords)
CASES: dict[str, tuple[str, str, dict, dict]] = {
    "alexnet": ("alexnet", "alexnet.arch", {}, {}),
    "vgg11": ("vgg11", "vgg.arch", {"variant": "A"}, {}),
    "vgg11_bn": ("vgg11_bn", "vgg.arch", {"network": "vgg_bn", "variant": "A"}, {}),
    "vgg13": ("vgg13", "vgg.arch", {"variant": "B"}, {}),
    "vgg16": ("vgg16", "vgg.arch", {"variant": "D"}, {}),
    "vgg16_bn": ("vgg16_bn", "vgg.arch", {"network": "vgg_bn", "variant": "D"}, {}),
    "vgg16-vgg_d.arch": ("vgg16", "vgg_d.arch", {}, {}),
    "vgg19": ("vgg19", "vgg.arch", {"variant": "E"}, {}),
    "googlenet": ("googlenet", "googlenet.arch", {}, {"aux_logits": True, "init_weights": False}),
    "resnet18": ("resnet18", "resnet18.arch", {}, {}),
    "resnet34": ("resnet34", "resnet34.arch", {}, {}),
    "resnet50": ("resnet50", "resnet50.arch", {}, {}),
    "resnet101": ("resnet101", "resnet101.arch", {}, {}),
    "resnet152": ("resnet152", "resnet152.arch", {}, {}),
}


def load(case: str, num_classes: int = 1000):
    """The checked archc network of a case."""
    _, spec, kwargs, _ = CASES[case]
    return archc.load(SPECS / spec, num_classes=num_classes, **kwargs)


def reference(case: str, num_classes: int = 1000) -> torch.nn.Module:
    """torchvision's module of a case (random weights)."""
    builder, _, _, kwargs = CASES[case]
    return getattr(torchvision.models, builder)(num_classes=num_classes, **kwargs)


def numel(model: torch.nn.Module) -> int:
    """Learnable parameters of a module."""
    return sum(p.numel() for p in model.parameters())


def shapes(state: dict) -> dict[str, tuple[int, ...]]:
    """A state_dict's keys with their tensor shapes."""
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.fixture(scope="module", params=list(CASES))
def pair(request):
    """(archc module, torchvision module) of one case at 1000 classes, shared by its tests.

    Module-scoped and parametrized: pytest runs all tests of one case together and frees
    the pair before building the next, so only one VGG pair is in memory at a time.
    """
    torch.manual_seed(0)
    tv = reference(request.param)
    # Every archc weight is overwritten by torchvision's (strictly, so none is missed):
    # allocate without initialising; building VGG twice over with random init costs seconds.
    with torch.device("meta"):
        model = archc.build(load(request.param))
    return model.to_empty(device="cpu"), tv


# --------------------------------------------------------------------------- (a) counts


@pytest.mark.parametrize("num_classes", [1000, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_parameter_count_equals_torchvision(case, num_classes):
    net = load(case, num_classes)
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        built, expected = archc.build(net), reference(case, num_classes)
    assert net.n_params == numel(built) == numel(expected)


# --------------------------------------------------------------------------- (b) weights


def test_loads_torchvision_state_dict_strictly(pair):
    model, tv = pair
    assert shapes(model.state_dict()) == shapes(tv.state_dict())
    model.load_state_dict(tv.state_dict(), strict=True)
    assert numel(model) == numel(tv)


# --------------------------------------------------------------------------- (c) outputs


def test_same_eval_outputs_as_torchvision(pair):
    model, tv = pair
    model.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, expected = model.eval()(x), tv.eval()(x)
    assert got.shape == expected.shape == (2, 1000)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_googlenet_training_outputs_include_both_aux_heads():
    """In training mode both return the logits and the aux heads' logits, in tap order."""
    torch.manual_seed(0)
    tv = reference("googlenet")
    model = archc.build(load("googlenet"))
    model.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)  # the same dropout masks: both draw them in the same order
    expected = tv.train()(x)
    torch.manual_seed(3)
    got = model.train()(x)
    assert len(got) == 3
    for mine, theirs in zip(got, (expected.logits, expected.aux_logits1, expected.aux_logits2)):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- VGG by hand


def conv(k: int, cin: int, cout: int) -> int:
    """A k×k conv with bias: k·k·cin·cout weights + cout biases."""
    return k * k * cin * cout + cout


def fc(fin: int, fout: int) -> int:
    """A fully connected layer with bias."""
    return fin * fout + fout


# Table 1's columns, counted by hand. Every configuration ends in FC-4096 FC-4096 FC-1000
# after the last max pool leaves 512×7×7 = 25088 features.
_CLASSIFIER = fc(512 * 7 * 7, 4096) + fc(4096, 4096) + fc(4096, 1000)
_A = (conv(3, 3, 64) + conv(3, 64, 128) + conv(3, 128, 256) + conv(3, 256, 256)
      + conv(3, 256, 512) + 3 * conv(3, 512, 512) + _CLASSIFIER)
_B = _A + conv(3, 64, 64) + conv(3, 128, 128)  # a second conv in the first two stages
HAND_COUNTS = {
    "A": _A,  # 132,863,336
    "A-LRN": _A,  # LRN has no parameters
    "B": _B,  # 133,047,848
    "C": _B + conv(1, 256, 256) + 2 * conv(1, 512, 512),  # B + three 1x1 convs: 133,638,952
    "D": _B + conv(3, 256, 256) + 2 * conv(3, 512, 512),  # C's 1x1 convs as 3x3: 138,357,544
    "E": _B + 2 * conv(3, 256, 256) + 4 * conv(3, 512, 512),  # 143,667,240
}
# The paper's Table 2, "number of parameters (in millions)".
PAPER_MILLIONS = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}


@pytest.mark.parametrize("variant", list(HAND_COUNTS))
def test_vgg_counts_match_the_paper_by_hand(variant):
    net = archc.load(SPECS / "vgg.arch", variant=variant)
    assert net.n_params == HAND_COUNTS[variant]
    assert round(net.n_params / 1e6) == PAPER_MILLIONS[variant]
    with torch.device("meta"):
        assert numel(archc.build(net)) == HAND_COUNTS[variant]

