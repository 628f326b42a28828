"""`archc import` of PyTorch modules: torchvision's networks and modules written here.

Every import is checked by the importer itself (rebuild, strict load, outputs with random
BN statistics). The tests check that independently where it is cheap (their own
torchvision module, their own randomisation, their own comparison), check the spec's
text (blocks, parameters, repeats, labels) and its compactness against the hand-written
specs, and that what has no archc form is reported where the forward has it.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import archc
from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.sources import load_program
from archc.importers.layout import spec_text
from archc.importers.torch_module import load
from archc.importers.torch_verify import randomize_norms, verify_spec

# torchvision's own notice about GoogLeNet's future default init, not about the import.
pytestmark = pytest.mark.filterwarnings("ignore:The default weight initialization of GoogleNet")

SPECS = Path(__file__).resolve().parents[2] / "specs"
SMALL = (3, 64, 64)  # checks run at this size: every network here takes it


def imported(source: str, **kwargs) -> tuple[ir.SpecFile | None, Diagnostics]:
    """The importer's IR of `source` (checked at SMALL unless told) and its diagnostics."""
    diags = Diagnostics()
    return load(source, diags, **{"check_shape": SMALL, **kwargs}), diags


def rebuilt(spec: ir.SpecFile, shape: tuple[int, int, int] = SMALL) -> nn.Module:
    """archc's module of the spec's text, as a user would build it from the written file."""
    result = archc.api.check(spec.path, input_shape=shape, text=spec_text(spec))
    assert result.ok, [d.message for d in result.diagnostics]
    return archc.build(result.network)


def assert_same_outputs(spec: ir.SpecFile, source: nn.Module, shape: tuple = SMALL,
                        batch: int = 2) -> None:
    """The test's own oracle: strict load of the source's weights, equal eval outputs on a
    batch of `shape` inputs."""
    with torch.no_grad():  # random BN statistics, or many nets look alike
        for m in source.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    model = rebuilt(spec, shape)
    model.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got, expected = model.eval()(x), source.eval()(x)
    torch.testing.assert_close(got, expected, atol=1e-5 * expected.abs().max().item(), rtol=0)


def hand_lines(path: Path, network: str) -> int:
    """Lines of a hand-written network and of the blocks and tables it uses (through
    imports too), less blank and comment lines: what a person wrote for that network."""
    program = load_program(str(path), Diagnostics())
    used, todo = [], [program.networks[network]]
    while todo:
        stmt = todo.pop()
        if stmt not in used:
            used.append(stmt)
            todo += [program.blocks.get(n) or program.tables[n] for n in _calls(stmt)
                     if n in program.blocks or n in program.tables]
    return sum(_code_lines(program.sources[s.span.file], s.span) for s in used)


def _calls(node) -> set[str]:
    """The block and table names a statement refers to."""
    found: set[str] = set()
    if isinstance(node, ir.Layer):
        found.add(node.callee)
    if isinstance(node, ir.TableRef):
        found.add(node.table)
    if isinstance(node, ir.Node):
        for field in type(node).model_fields:
            found |= _calls(getattr(node, field))
    if isinstance(node, list):
        for item in node:
            found |= _calls(item)
    return found


def _code_lines(text: str, span: ir.Span) -> int:
    lines = text.splitlines()[span.line - 1 : span.end_line]
    return sum(1 for ln in lines if ln.strip() and not ln.strip().startswith("#"))


def text_lines(spec: ir.SpecFile) -> int:
    """Lines of the spec `archc import` writes."""
    return sum(1 for ln in spec_text(spec).splitlines() if ln.strip())


# --------------------------------------------------------------------------- torchvision

# network: (hand-written spec, its network, what the written spec must say)
TORCHVISION = {
    "alexnet": ("alexnet.arch", "alexnet", ["conv11-64(stride=4, pad=2)", "adaptive-avgpool(6)"]),
    "vgg16": ("vgg.arch", "vgg", ["[conv3-512 relu] x3", "adaptive-avgpool(7)"]),
    "googlenet": ("googlenet.arch", "googlenet", [
        "block inception(c1, c2, c3, c4, c5, c6):", "aux1: tap inception_aux",
        "aux2: tap inception_aux", "inception4a: inception(192, 96, 208, 16, 48, 64)"]),
    "resnet18": ("resnet18.arch", "resnet18", [
        "block basic_block(c, stride=1):", "downsample: shortcut",
        "layer2: [basic_block(128, stride=2) basic_block(128)]"]),
    "resnet50": ("resnet50.arch", "resnet50", [
        "block bottleneck(c, stride=1):", "conv1-{c * 4}",
        "layer3: [bottleneck(256, stride=2) bottleneck(256) x5]"]),
    "densenet121": ("densenet.arch", "densenet121", [
        "block dense_block(n):\n    for i in range(1, n + 1):\n        concat:\n"
        "            shortcut\n            denselayer{i}: dense_layer",
        "        denseblock3: dense_block(24)\n        transition3: transition(512)",
        "conv0: conv7-64(stride=2, bias=false)  norm0: bn  relu0: relu"]),
    "mobilenet_v2": ("mobilenet.arch", "mobilenet_v2", [
        "    conv{k}-{c}(stride=stride, groups=groups, bias=false)  bn  relu6",
        "conv2d_norm_activation(c1, stride=stride, groups=c1)", "shortcut(optional=true)",
        "inverted_residual_2(384, 64) x3"]),
}


@pytest.fixture(scope="module", params=list(TORCHVISION))
def torchvision_import(request):
    """(name, IR) of one torchvision network, imported once for all its tests."""
    spec, diags = imported(f"torchvision:{request.param}")
    assert spec is not None and not diags.items, [d.message for d in diags.items]
    return request.param, spec


def test_torchvision_spec_reads_as_written_by_hand(torchvision_import):
    name, spec = torchvision_import
    text = spec_text(spec)
    for expected in TORCHVISION[name][2]:
        assert expected in text, f"{expected!r} not in\n{text}"


def test_torchvision_spec_is_compact(torchvision_import):
    """At most 1.5× the lines of the hand-written spec in specs/ (docs/importing.md's
    table), and no line over 100 columns: a long group is written over lines, not on one."""
    name, spec = torchvision_import
    assert max(len(line) for line in spec_text(spec).splitlines()) <= 100
    hand = hand_lines(SPECS / TORCHVISION[name][0], TORCHVISION[name][1])
    assert text_lines(spec) <= 1.5 * hand, (text_lines(spec), hand)


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_torchvision_import_is_exact(name):
    """Independent of the importer's own check: a fresh torchvision module, strict keys."""
    spec, _ = imported(f"torchvision:{name}")
    torch.manual_seed(0)
    kwargs = {"init_weights": False} if name == "googlenet" else {}
    assert_same_outputs(spec, getattr(torchvision.models, name)(weights=None, **kwargs))


def test_shufflenet_units_are_splits_with_a_channel_shuffle():
    spec, diags = imported("torchvision:shufflenet_v2_x0_5")
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    unit = "    split:\n        shortcut\n        branch2:\n            conv1-{c}(bias=false)  bn"
    assert unit in text
    assert "    channel-shuffle(2)\n" in text
    assert "stage3: [inverted_residual(48) inverted_residual_2(48) x7]" in text
    assert "global-avgpool  flatten" in text  # x.mean([2, 3])


class Scaled(nn.Module):
    """ConvNeXt's block in small: a channel-last MLP and a layer scale on the residual."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.mlp = nn.Sequential(torchvision.ops.Permute([0, 2, 3, 1]), nn.Linear(c, c),
                                 torchvision.ops.Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.rand(c, 1, 1) + 0.5)

    def forward(self, x):
        x = self.stem(x)
        return x + self.layer_scale * self.mlp(x)


def test_a_layer_scale_and_a_channel_last_linear():
    spec, diags = imported(f"{HERE}:Scaled")
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    assert "mlp: [permute((0, 2, 3, 1)) channel-fc-8(last=true) permute((0, 3, 1, 2))]" in text
    assert "layer_scale: scale" in text
    torch.manual_seed(0)
    assert_same_outputs(spec, Scaled())


def test_factory_arguments_are_read_as_literals():
    spec, diags = imported("torchvision:resnet18", args={"num_classes": "10"})
    assert spec is not None, diags.items
    text = spec_text(spec)
    assert "network resnet18(num_classes=10):" in text and "fc: fc-{num_classes}" in text


# --------------------------------------------------------------------------- a user's module


class Unit(nn.Module):
    """A residual unit with a projection only where the shapes change."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout * 2, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout * 2)
        self.conv3 = nn.Conv2d(cout * 2, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.proj is None else self.proj(x)))


class Mix(nn.Module):
    """Two paths, concatenated on channels."""

    def __init__(self, c: int):
        super().__init__()
        self.left = nn.Conv2d(c, c, 1)
        self.right = nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.left(x), self.right(x)], 1)


class Net(nn.Module):
    """A stem, four units (two stages), a mix, and a head that flattens with view."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.stages = nn.Sequential(Unit(width, width), Unit(width, width),
                                    Unit(width, 2 * width, 2), Unit(2 * width, 2 * width))
        self.mix = Mix(2 * width)
        self.fc = nn.Linear(3 * width, num_classes)

    def forward(self, x):
        x = self.mix(self.stages(torch.relu(self.stem(x))))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(x.view(x.size(0), -1))


def make_net(num_classes: int = 10, width: int = 16) -> Net:
    """The factory `archc import tests.importers.test_torch_import:make_net` calls."""
    torch.manual_seed(0)
    return Net(num_classes, width)


HERE = "tests.importers.test_torch_import"


def test_user_module_becomes_blocks_with_parameters():
    spec, diags = imported(f"{HERE}:make_net", args={"width": 8})
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    assert "block unit(c, stride=1):" in text
    assert "conv2: conv3-{c * 2}(bias=false)" in text
    assert "proj: shortcut" in text
    assert "stages: [unit(8) x2 unit(16, stride=2) unit(16)]" in text
    assert "block mix:\n    concat:\n        left: conv1-16\n        right: [conv3-8 relu]" in text
    assert "stem: conv3-8  relu" in text  # torch.relu in the forward: an unlabelled relu
    assert "network make_net(num_classes=10):" in text  # the factory's default
    other = archc.api.check(spec.path, {"num_classes": 3}, input_shape=SMALL, text=text)
    assert other.network.output_shape == (3,)
    assert_same_outputs(spec, make_net(width=8))


class Gated(nn.Module):
    """Squeeze-and-excitation: the input times a per-channel gate computed from it."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 4, 1), nn.ReLU(),
                                  nn.Conv2d(c // 4, c, 1), nn.Sigmoid())

    def forward(self, x):
        x = self.conv(x)
        return x * self.gate(x)


def test_a_gate_becomes_a_mul_merge():
    spec, diags = imported(f"{HERE}:Gated")
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    gate = "gate: [global-avgpool conv1-2 relu conv1-8 sigmoid]"
    assert f"    mul:\n        identity\n        {gate}" in text, text
    assert_same_outputs(spec, Gated())


class LeNet(nn.Module):
    """Fixed to 3×32×32 by its first fc; its layers in a ModuleList run in a loop."""

    def __init__(self, interleaved: bool = False):
        super().__init__()
        self.interleaved = interleaved
        self.features = nn.ModuleList([nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                                       nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)])
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x):
        for layer in self.features:
            x = layer(x)
            if self.interleaved:  # an op between the list's items: numbering cannot follow
                x = F.relu(x)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def test_input_size_is_found_and_a_module_list_is_a_group():
    diags = Diagnostics()
    spec = load(f"{HERE}:LeNet", diags)  # checked at the input it found
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    assert "input 3x32x32" in text
    assert "features: [conv5-6(pad=0) relu maxpool conv5-16(pad=0) relu maxpool]" in text
    model = archc.build(archc.api.check(spec.path, text=text).network)
    model.load_state_dict(LeNet().state_dict(), strict=True)


def test_a_module_list_with_ops_between_its_items_keeps_dotted_labels():
    spec, diags = imported(f"{HERE}:LeNet", args={"interleaved": True}, check_shape=(3, 32, 32))
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    assert "features.0: conv5-6(pad=0)  relu  features.1: relu" in text
    assert "features: [" not in text
    assert_same_outputs(spec, LeNet(interleaved=True), shape=(3, 32, 32))


class Interleaved(nn.Module):
    """Res2Net's pattern: two lists, `convs` and `bns`, whose items run interleaved."""

    def __init__(self, n: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.convs = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1, bias=False) for _ in range(n))
        self.bns = nn.ModuleList(nn.BatchNorm2d(8) for _ in range(n))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        for conv, bn in zip(self.convs, self.bns):
            x = F.relu(bn(conv(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_lists_that_run_interleaved_import_as_dotted_labels():
    spec, diags = imported(f"{HERE}:Interleaved")
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    for i in range(3):
        assert f"convs.{i}: conv3-8(bias=false)  bns.{i}: bn" in text
    assert_same_outputs(spec, Interleaved())


def test_docs_show_the_importers_output():
    """docs/importing.md's PyTorch example is what the import writes today."""
    doc = (Path(__file__).parents[2] / "docs" / "importing.md").read_text()
    section = doc[doc.index("## PyTorch") : doc.index("## Caffe")]
    shown = section.split(":make_net` writes:\n\n```text\n")[1].split("\n```")[0]
    spec, _ = imported(f"{HERE}:make_net")
    assert spec_text(spec).rstrip("\n") == shown


class Projected(nn.Module):
    """A residual whose projection is a biased 1×1 conv alone, or a conv + bn that keeps
    the shape (so archc's `shortcut` must be told to project anyway)."""

    def __init__(self, same_shape: bool = False):
        super().__init__()
        out = 8 if same_shape else 16
        self.body = nn.Sequential(nn.Conv2d(8, out, 3, padding=1), nn.BatchNorm2d(out))
        self.skip = (nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
                     if same_shape else nn.Conv2d(8, 16, 1))

    def forward(self, x):
        return self.body(x) + self.skip(x)


class TwoProjected(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = Projected(same_shape=True)
        self.b = Projected()

    def forward(self, x):
        return self.b(self.a(self.stem(x)))


def test_projection_shortcuts_keep_their_options():
    spec, diags = imported(f"{HERE}:TwoProjected")
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    # The options differ between the two instances: they became the block's parameters.
    assert "skip: shortcut(bn=bn, bias=bias, always=always)" in text
    assert "a: projected(8)\n    b: projected(16, bn=false, bias=true, always=false)" in text
    torch.manual_seed(0)
    assert_same_outputs(spec, TwoProjected())


class TwoHeads(nn.Module):
    """A hidden fc as wide as the classes: only the last fc is `FC-{num_classes}`."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_only_the_classifier_takes_num_classes():
    spec, diags = imported(f"{HERE}:TwoHeads")
    assert spec is not None, [d.message for d in diags.items]
    assert "classifier: [fc-10 relu fc-{num_classes}]" in spec_text(spec)


def test_the_check_fails_on_a_spec_that_computes_something_else():
    """The importer's own oracle can fail: a relu turned into a sigmoid is caught."""
    spec, _ = imported(f"{HERE}:make_net")
    network = spec.statements[-1]
    wrong = network.model_copy(update={"body": [
        i.model_copy(update={"callee": "sigmoid"}) if getattr(i, "callee", "") == "relu" else i
        for i in network.body
    ]})
    assert wrong != network
    broken = spec.model_copy(update={"statements": [*spec.statements[:-1], wrong]})
    diags = Diagnostics()
    assert not verify_spec(broken, make_net(), SMALL, diags, ir.Span(file="x"))
    assert [d.code for d in diags.items] == ["E203"]
    assert "computes something else" in diags.items[0].message


def test_randomize_norms_changes_every_statistic():
    bn = nn.BatchNorm2d(4)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    randomize_norms(bn)
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert not torch.equal(before[key], bn.state_dict()[key]), key


# --------------------------------------------------------------------------- what has no form


class Clamp(nn.Module):
    """A forward with a Python op archc has no layer for."""

    def forward(self, x):
        return x.clamp(min=0.5)  # the unsupported op


class WithClamp(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), Clamp())

    def forward(self, x):
        return self.body(x)


class WithUpsample(nn.Module):
    """FPN-like: nearest ×2, bilinear ×4 (module and functional), a fixed-size one optional."""

    def __init__(self, fixed: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.up = nn.Upsample(size=(20, 20)) if fixed else nn.Upsample(scale_factor=2)
        self.smooth = nn.Conv2d(4, 4, 3)
        self.up4 = nn.Upsample(scale_factor=4, mode="bilinear")

    def forward(self, x):
        x = self.up4(self.smooth(self.up(self.conv(x))))
        return F.interpolate(x, scale_factor=2, mode="bilinear")


class WithPixelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        return self.shuffle(self.conv(x))


def test_unsupported_op_is_reported_at_its_line_with_the_module_path():
    spec, diags = imported(f"{HERE}:WithClamp")
    assert spec is None
    [diag] = diags.items
    lines, first = inspect.getsourcelines(Clamp.forward)
    line = first + next(i for i, t in enumerate(lines) if "clamp(" in t)
    assert diag.code == "E101"
    assert "`body.1`" in diag.message and "`clamp`" in diag.message
    assert (Path(diag.span.file), diag.span.line) == (Path(__file__), line)
    assert "x.clamp(min=0.5)" in diag.notes[0]


class HalvesAdded(nn.Module):
    """Channel halves added: a chunk that is not a `split:` merge."""

    def forward(self, x):
        a, b = x.chunk(2, 1)
        return a + b


def test_a_chunk_that_is_no_split_imports_as_channel_slices_of_a_graph():
    spec, diags = imported(f"{HERE}:HalvesAdded", input_shape=(4, 8, 8), check_shape=(4, 8, 8))
    assert spec is not None, [d.message for d in diags.items]  # checked: the same outputs
    text = spec_text(spec)
    assert "channel-slice(0, 2)" in text and "channel-slice(2, 4)" in text


def test_upsampling_imports_exactly():
    """nn.Upsample and F.interpolate by a whole factor are `upsample` (nearest or bilinear);
    the outputs match the module's."""
    spec, diags = imported(f"{HERE}:WithUpsample", input_shape=(3, 16, 16),
                           check_shape=(3, 16, 16))
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    assert "    conv: conv3-4(pad=0)  up: upsample\n" in text, text  # nearest ×2: the defaults
    assert 'up4: upsample-4(mode="bilinear")  upsample(mode="bilinear")\n' in text, text
    torch.manual_seed(0)
    model = rebuilt(spec, (3, 16, 16))
    source = WithUpsample()
    model.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), source.eval()(x))


def test_upsampling_to_a_fixed_size_is_reported():
    spec, diags = imported(f"{HERE}:WithUpsample", args={"fixed": True},
                           input_shape=(3, 16, 16), check_shape=(3, 16, 16))
    assert spec is None
    [diag] = diags.items
    assert "`up`" in diag.message and "fixed size" in diag.message, diag.message


def test_unknown_module_type_is_reported_with_its_path():
    spec, diags = imported(f"{HERE}:WithPixelShuffle")
    assert spec is None
    [diag] = diags.items
    assert "`shuffle`" in diag.message and "nn.PixelShuffle" in diag.message, diag.message


@pytest.mark.parametrize("source, message", [
    ("no_such_package.models:net", "cannot import `no_such_package.models`: no module named "
                                   "`no_such_package`"),
    (f"{HERE}:make_nett", f"`{HERE}` has no `make_nett`; did you mean `make_net`?"),
    ("torchvision:resnet5", "torchvision has no model `resnet5`; did you mean"),
    (f"{HERE}:SMALL", f"`{HERE}:SMALL` is a tuple, not a callable"),
])
def test_a_failed_import_is_one_line(source, message):
    spec, diags = imported(source)
    assert spec is None
    [diag] = diags.items
    assert diag.code == "E002" and diag.message.startswith(message), diag.message
    assert "\n" not in diag.message


def test_a_failing_factory_is_one_line():
    spec, diags = imported(f"{HERE}:make_net", args={"widht": 3})
    assert spec is None
    [diag] = diags.items
    assert diag.message.startswith(f"`{HERE}:make_net` failed: TypeError:")


class AnySize(nn.Module):
    """Fully convolutional on one channel: probing finds 1×28×28, any other size works too."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return self.body(x)


def archc_cli(*args: str) -> subprocess.CompletedProcess:
    """`archc ARGS` as a user runs it, from the repository root."""
    return subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True,
                          text=True, cwd=SPECS.parent)


def test_cli_input_sets_the_modules_input(tmp_path):
    """--input CxHxW is the spec's input (probing alone would find 1x28x28); the check runs
    there, and --help says so."""
    probed = spec_text(load(f"{HERE}:AnySize", Diagnostics()))
    assert "input 1x28x28" in probed
    out = tmp_path / "net.arch"
    done = archc_cli("import", f"{HERE}:AnySize", "--input", "1x40x48", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "    input 1x40x48\n" in out.read_text()
    assert "1×40×48 → 4×1×1" in done.stdout
    assert "--input" in archc_cli("import", "--help").stdout


def test_cli_input_is_refused_for_files_and_bad_shapes(tmp_path):
    cfg = tmp_path / "net.cfg"
    cfg.write_text("[net]\nchannels=3\nheight=8\nwidth=8\n\n[convolutional]\nfilters=4\n")
    done = archc_cli("import", str(cfg), "--input", "3x16x16")
    assert done.returncode == 2 and "--input is for PyTorch modules" in done.stderr
    done = archc_cli("import", f"{HERE}:AnySize", "--input", "1x40")
    assert done.returncode == 2 and "--input expects C×H×W" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- (h, w) windows, max


@pytest.mark.filterwarnings("ignore:The default weight initialization of inception_v3")
def test_inception_v3_imports_with_its_rectangular_kernels():
    """No --input: the probe runs the auxiliary head too (training mode), which needs
    299×299; the 1×7 and 7×1 convs are (h, w) kernels; each torch.cat of four is one
    `concat:` of four branches, as specs/inception_v3.arch writes it."""
    spec, diags = imported("torchvision:inception_v3", check_shape=None)
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    assert "input 3x299x299" in text
    assert "branch7x7_2: basic_conv2d(c, k=(1, 7))" in text
    assert "concat:\n        branch1x1: basic_conv2d(64)\n        branch5x5_1:" in text, text
    assert "concat:\n        concat:" not in text
    torch.manual_seed(0)
    source = torchvision.models.inception_v3(weights=None, init_weights=False, aux_logits=True)
    assert_same_outputs(spec, source, (3, 299, 299), batch=1)


class Maxed(nn.Module):
    """Caffe's Eltwise MAX written in PyTorch: two branches joined by torch.maximum, one
    of them a 1×5 conv."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, (1, 5), padding=(0, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.maximum(self.a(x), self.b(x))), 1))


class MaxOverAxis(Maxed):
    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.a(x)), 1)).max(1).values


def test_an_elementwise_maximum_becomes_a_max_merge():
    spec, diags = imported(f"{HERE}:Maxed")
    assert spec is not None, [d.message for d in diags.items]
    assert "    max:\n        a: conv3-8\n        b: conv1x5-8\n" in spec_text(spec)
    assert_same_outputs(spec, Maxed())


def test_a_maximum_over_an_axis_is_reported_at_its_line():
    spec, diags = imported(f"{HERE}:MaxOverAxis")
    assert spec is None
    (error,) = diags.errors
    assert "element-wise maximum of whole branches" in error.message
    line = inspect.getsourcelines(MaxOverAxis.forward)[1] + 1
    assert error.span.line == line, error


class InceptionPool(nn.Module):
    """Inception-v4's pool branch: an average that leaves the padding out; and one at
    padding 0, where count_include_pad changes nothing."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.conv = nn.Conv2d(3, 4, 1)
        self.down = nn.AvgPool2d(2, count_include_pad=False)

    def forward(self, x):
        return self.down(self.conv(self.pool(x)))


def test_avgpool_without_the_padding_imports():
    spec, diags = imported(f"{HERE}:InceptionPool")
    assert spec is not None, [d.message for d in diags.items]
    text = spec_text(spec)
    assert "count_include_pad=false" in text and text.count("count_include_pad") == 1, text
    assert_same_outputs(spec, InceptionPool())
