"""`archc compile -o model.py`: standalone PyTorch source that matches `archc.build` exactly.

For every reference spec the generated file must pass ruff, import nothing but torch (and
collections), and give a module with the same state_dict keys, order and shapes as the torch
backend's; loaded with the same weights, it must compute the same logits (and, in training
mode, the same auxiliary logits).
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import archc
from archc.backends.module import class_name, to_module
from archc.backends.pysource import constructor, flat, meta_module, python_source, write_python
from archc.backends.weights import save_weights
from archc.compiler.graph import Network, layers
from archc.compiler.shapes import input_sizes
from archc.layers import modules as archc_modules
from archc.layers import token_modules
from archc.layers.modules import (
    ChannelLinear,
    ChannelShuffle,
    LayerNorm2d,
    LayerScale,
    Maxout,
    PaddedPool2d,
    Permute,
    StochasticDepth,
)

try:  # tests/ is on sys.path when it is not a package (pytest's default)
    from goldens import GOLDEN, assert_golden
except ImportError:  # pragma: no cover - tests/ became a package
    from tests.goldens import GOLDEN, assert_golden

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
SPEC_FILES = sorted(p.name for p in SPECS.glob("*.arch"))
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")

# Corners the reference specs do not reach: Maxout, unlabelled stateful layers in a branching
# block and at the root (no Python name), a labelled merge group, a block that is a plain
# sequence of unlabelled layers, and a tap whose name is a number.
ODD_SPEC = """\
block plain(c):
    conv3-{c} relu conv3-{c} bn relu

block mix(c):
    add:
        conv3-{c} bn
        [conv1-{c} bn] relu
    maxout(2)

network odd(num_classes=10):
    input 3x16x16
    conv3-16 relu
    stem: plain(16)
    merge: concat:
        a: conv1-8
        b: [maxpool(3, stride=1, pad=1) conv1-8]
    mix(32)
    tap [global-avgpool flatten FC-{num_classes}]
    global-avgpool flatten
    dropout(0.3)
    FC-{num_classes}
"""


def small(spec: str | Path, **params) -> Network:
    """The network at 10 classes and a small square input: 32, or the smallest it accepts."""
    net = archc.load(SPECS / spec if isinstance(spec, str) else spec, num_classes=10, **params)
    sizes = input_sizes(net)
    side = max(32, sizes.smallest or 0)
    if side == net.input_shape[1]:
        return net
    return archc.load(net.spec_path, num_classes=10, input_shape=(net.input_shape[0], side, side),
                      **params)


def import_file(path: Path, name: str):
    """Import a generated file as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_modules(source: str) -> set[str]:
    """The top-level packages a source file imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def ruff_check(path: Path) -> None:
    """Fail with ruff's report unless the file passes E, F, W and I at line length 100."""
    if RUFF is None:  # pragma: no cover - ruff is a dev dependency
        pytest.skip("ruff is not installed")
    result = subprocess.run([RUFF, "check", "--no-cache", "--isolated", "--select", "E,F,W,I",
                             "--line-length", "100", str(path)],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """The state_dict's keys, in order, with their shapes."""
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def as_tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def generate(net: Network, tmp_path: Path, stem: str):
    """Write the source of `net`, check it with ruff, import it; returns (module, source)."""
    path = write_python(net, tmp_path / f"{stem}.py")[0]
    ruff_check(path)
    source = path.read_text(encoding="utf-8")
    assert imported_modules(source) <= {"collections", "torch"}
    return import_file(path, f"generated_{stem}"), source


def assert_same_model(net: Network, generated_cls) -> None:
    """Same keys and shapes as archc.build; with its weights, the same outputs."""
    reference = to_module(net)
    with torch.device("meta"):  # no memory and no init: the weights come from `reference`
        model = generated_cls()
    assert shapes(model) == shapes(reference)
    model.load_state_dict({k: v.clone() for k, v in reference.state_dict().items()},
                          strict=True, assign=True)
    x = torch.randn(2, *net.input_shape)
    reference.eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)
    if net.aux_outputs:  # training mode: (logits, *aux), dropout masks drawn in the same order
        reference.train()
        model.train()
        torch.manual_seed(0)
        want = as_tuple(reference(x))
        torch.manual_seed(0)
        got = as_tuple(model(x))
        assert len(got) == len(want) == 1 + len(net.aux_outputs)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", SPEC_FILES)
def test_every_spec_matches_build(spec, tmp_path):
    net = small(spec)
    module, source = generate(net, tmp_path, Path(spec).stem)
    assert_same_model(net, getattr(module, class_name(net.name)))
    # Every child of the reference specs gets a Python name: no getattr(self, "27").
    assert "getattr(self" not in source and "add_module" not in source


def test_odd_corners_match_build(tmp_path):
    spec = tmp_path / "odd.arch"
    spec.write_text(ODD_SPEC, encoding="utf-8")
    net = archc.load(spec)
    module, source = generate(net, tmp_path, "odd")
    assert_same_model(net, module.Odd)
    assert "class Maxout(nn.Module):" in source  # copied in because `mix` uses it
    assert "class Plain(nn.Sequential):" in source  # unlabelled convs keep their 0, 1, ... keys
    assert "class Merge(nn.Module):" in source  # a labelled merge group gets a class


def test_dotted_labels_register_inside_module_dicts(tmp_path):
    net = archc.load(Path(__file__).parent / "fixtures" / "dotted_labels.arch")
    module, source = generate(net, tmp_path, "dotted")
    assert_same_model(net, module.Dotted)
    keys = list(to_module(net).state_dict())
    assert keys[:5] == ["body.convs.0.weight", "body.convs.1.weight", "body.bns.0.weight",
                        "body.bns.0.bias", "body.bns.0.running_mean"]
    assert "deep.a.b.1.running_var" in keys
    assert 'self.convs["1"] = m_convs_1' in source and 'self.deep["a"]["b"]' in source


def test_training_mode_without_taps_returns_logits(tmp_path):
    net = small("resnet18.arch")
    module, _ = generate(net, tmp_path, "resnet18_train")
    model = module.Resnet18().train()
    out = model(torch.randn(2, *net.input_shape))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_golden(name):
    assert_golden(GOLDEN / "python" / f"{name}.py",
                  python_source(archc.load(SPECS / f"{name}.arch")))


@functools.cache
def golden_module(name: str):
    """A checked-in generated file, imported."""
    return import_file(GOLDEN / "python" / f"{name}.py", f"golden_{name}")


def test_golden_files_pass_ruff():
    for name in ("resnet18", "googlenet"):
        ruff_check(GOLDEN / "python" / f"{name}.py")


def test_golden_resnet18_reads_like_torchvision():
    source = (GOLDEN / "python" / "resnet18.py").read_text(encoding="utf-8")
    classes = [n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef)]
    assert classes == ["Basic", "BasicDownsample", "Resnet18"]  # one class per structure
    assert "self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)" in source
    assert "out = out + self.downsample(x)" in source
    assert "self.fc = nn.Linear(512, num_classes)" in source
    assert "Maxout" not in source and "OrderedDict" not in source


@pytest.mark.parametrize("num_classes", [1000, 7])
def test_num_classes_argument(num_classes):
    """`Resnet18(num_classes=7)` is archc.build(resnet18, num_classes=7), key for key."""
    with torch.device("meta"):
        model = golden_module("resnet18").Resnet18(num_classes=num_classes)
        reference = archc.build(SPECS / "resnet18.arch", num_classes=num_classes)
    assert shapes(model) == shapes(reference)


def test_num_classes_reaches_the_aux_heads():
    with torch.device("meta"):
        model = golden_module("googlenet").Googlenet(num_classes=3)
        reference = archc.build(SPECS / "googlenet.arch", num_classes=3)
    assert shapes(model) == shapes(reference)
    assert model.aux1.fc2.out_features == model.aux2.fc2.out_features == model.fc.out_features == 3


def test_golden_googlenet_runs_on_cpu():
    model = golden_module("googlenet").Googlenet(num_classes=2)
    model.train()
    logits, aux1, aux2 = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux1.shape == aux2.shape == (2, 2)
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 2)


# --------------------------------------------------------------------------- pieces


def all_layers():
    """Every distinct layer configuration of the reference specs."""
    seen = {}
    for spec in SPEC_FILES:
        for layer in layers(archc.load(SPECS / spec).root):
            module = meta_module(layer)
            seen.setdefault(repr(module), module)
    return list(seen.values())


# archc's own modules (LayerNorm2d, PaddedPool2d, ...): an emitted file copies their source, so
# its constructor calls see them by name.
CUSTOM_MODULES = {name: cls for module in (archc_modules, token_modules)
                  for name, cls in vars(module).items()
                  if isinstance(cls, type) and cls.__module__ == module.__name__}
# One of each with settings off the defaults, for those the reference specs may not reach.
CUSTOM_CORNERS = [Maxout(3), LayerNorm2d(8, eps=1e-6), ChannelLinear(4, 8, bias=False),
                  ChannelShuffle(4), LayerScale(8, init=1e-6), StochasticDepth(0.2, "batch"),
                  Permute((0, 2, 3, 1)), PaddedPool2d(2, 1, (0, 1, 0, 1)),
                  PaddedPool2d(3, 2, (1, 1, 0, 1), mode="avg"),
                  token_modules.SelfAttention(8, 2, dropout=0.1), token_modules.Untokens(3),
                  token_modules.MLP(8, 12, 4, dropout=0.1), token_modules.TokenPool("mean")]


def test_constructor_calls_rebuild_the_same_layer():
    """Each emitted constructor call, evaluated, gives a module that prints the same."""
    namespace = {"nn": nn, **CUSTOM_MODULES}
    modules = all_layers() + CUSTOM_CORNERS + [nn.LeakyReLU(0.1), nn.Softmax(dim=1), nn.ELU(0.5)]
    for module in modules:
        code = flat(constructor(module))
        with torch.device("meta"):
            assert repr(eval(code, namespace)) == repr(module), code


def test_constructor_writes_only_what_differs_from_defaults():
    assert flat(constructor(nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False))) == (
        "nn.Conv2d(64, 128, kernel_size=3, stride=2, padding=1, bias=False)")
    assert flat(constructor(nn.MaxPool2d(2, 2))) == "nn.MaxPool2d(kernel_size=2)"
    assert flat(constructor(nn.BatchNorm2d(64, eps=1e-3))) == "nn.BatchNorm2d(64, eps=0.001)"
    assert flat(constructor(nn.Linear(512, 10))) == "nn.Linear(512, 10)"
    assert flat(constructor(nn.Dropout(0.5))) == "nn.Dropout()"
    assert flat(constructor(nn.Identity())) == "nn.Identity()"


def test_write_python_with_init_writes_loadable_weights(tmp_path):
    spec = tmp_path / "odd.arch"
    spec.write_text(ODD_SPEC, encoding="utf-8")
    net = archc.load(spec)
    trained = to_module(net)
    weights = save_weights(trained, tmp_path / "trained.safetensors")
    notes: list[str] = []
    written = write_python(net, tmp_path / "out" / "odd_model.py", init=str(weights),
                           note=notes.append)
    out = tmp_path / "out"
    assert written == [out / "odd_model.py", out / "odd_model.safetensors"]
    assert notes == []
    from safetensors.torch import load_file

    model = import_file(written[0], "generated_odd_init").Odd()
    model.load_state_dict(load_file(written[1]), strict=True)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), trained.eval()(x), atol=1e-5, rtol=1e-5)


def test_bad_init_writes_nothing(tmp_path):
    from archc.backends.weights import InitError

    net = archc.load(SPECS / "resnet18.arch", num_classes=2)
    with pytest.raises(InitError, match="no such file"):
        write_python(net, tmp_path / "model.py", init=str(tmp_path / "missing.pt"))
    assert not (tmp_path / "model.py").exists()


SPLIT_SIZES_SPEC = """\
network parts:
    input 8x4x4
    split(sizes=(2, 3, 3)):
        identity
        conv: conv1-3
        relu
"""


def test_split_by_sizes_is_torch_split_in_the_module_and_the_python(tmp_path):
    spec = tmp_path / "parts.arch"
    spec.write_text(SPLIT_SIZES_SPEC, encoding="utf-8")
    net = archc.load(spec)
    model = to_module(net).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4)
    a, b, c = torch.split(x, [2, 3, 3], 1)
    want = torch.cat([a, model.get_submodule("conv")(b), torch.relu(c)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want)
    module, source = generate(net, tmp_path, "parts")
    assert ".split([2, 3, 3], 1)" in source and "mix_split_sizes" not in source
    assert_same_model(net, module.Parts)
