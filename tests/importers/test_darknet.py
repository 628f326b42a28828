"""`archc import` of Darknet cfgs: darknet's shape rules, parameter counts, the weights
file (header and BN order) and the round trip against a reference darknet forward."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from archc.backends.pysource import write_python
from archc.compiler.graph import Parallel
from archc.importers.layout import spec_text
from archc.importers.weights import convert, write_darknet_weights

try:
    from reference import darknet_forward
    from test_caffe import FIXTURES, imported, run_generated
except ImportError:  # pragma: no cover - run from the repository root
    from tests.importers.reference import darknet_forward
    from tests.importers.test_caffe import FIXTURES, imported, run_generated


def darknet_out(size: int, kernel: int, stride: int, padding: int | None = None) -> int:
    """Darknet's maxpool: out = (size + padding − kernel) / stride + 1, padding = kernel − 1."""
    padding = kernel - 1 if padding is None else padding
    return (size + padding - kernel) // stride + 1


def cfg(tmp_path, body: str, size: int = 13, channels: int = 4):
    path = tmp_path / "net.cfg"
    path.write_text(f"[net]\nchannels={channels}\nheight={size}\nwidth={size}\n\n{body}")
    return path


@pytest.mark.parametrize("size, kernel, stride, padding", [
    (13, 2, 2, None), (64, 2, 2, None), (13, 3, 2, None), (13, 5, 1, None), (9, 3, 1, None),
    (13, 2, 1, None), (8, 4, 1, None), (12, 4, 3, None), (10, 3, 2, 1), (11, 3, 1, 3),
])
def test_maxpool_follows_darknets_padding_rule(tmp_path, size, kernel, stride, padding):
    """Every pool darknet pads evenly or unevenly (yolov3-tiny's 2×2/1 pads right and bottom
    only) imports with darknet's output size."""
    extra = "" if padding is None else f"padding={padding}\n"
    _, network, _ = imported(cfg(tmp_path, f"[maxpool]\nsize={kernel}\nstride={stride}\n{extra}",
                                 size))
    out = darknet_out(size, kernel, stride, padding)
    assert network.output_shape == (4, out, out)


@pytest.mark.parametrize("size, kernel, padding, form", [
    (13, 2, None, "maxpool2-1(padding=(0, 1, 0, 1))"),  # yolov3-tiny's: keeps 13×13
    (12, 3, 3, "maxpool3-1(padding=(1, 2, 1, 2))"),
    (12, 2, 2, "maxpool2-1(padding=1)"),  # even: PyTorch's own padding
])
def test_uneven_darknet_padding_is_written_by_side(tmp_path, size, kernel, padding, form):
    extra = "" if padding is None else f"padding={padding}\n"
    spec, network, _ = imported(cfg(tmp_path, f"[maxpool]\nsize={kernel}\nstride=1\n{extra}",
                                    size))
    assert form in spec_text(spec)
    out = darknet_out(size, kernel, 1, padding)
    assert network.output_shape == (4, out, out)


def test_maxpool_padding_past_the_window_is_located(tmp_path):
    from archc.compiler.diagnostics import Diagnostics
    from archc.importers import import_source

    diags = Diagnostics()
    assert import_source(str(cfg(tmp_path, "[maxpool]\nsize=2\nstride=1\npadding=4\n")),
                         diags) is None
    (error,) = diags.errors
    assert (error.span.line, error.span.column) == (9, 9) and "padding only" in error.message


@pytest.mark.parametrize("option, message", [("stride=-2", "downsamples"),
                                             ("scale=0.5", "scale=")])
def test_upsample_that_archc_cannot_write_is_located(tmp_path, option, message):
    from archc.compiler.diagnostics import Diagnostics
    from archc.importers import import_source

    diags = Diagnostics()
    assert import_source(str(cfg(tmp_path, f"[upsample]\n{option}\n")), diags) is None
    (error,) = diags.errors
    assert (error.span.line, error.span.column) == (7, len(option.split("=")[0]) + 2)
    assert message in error.message


def test_fixture_structure_and_shapes():
    spec, network, _ = imported(FIXTURES / "darknet_tiny.cfg")
    text = spec_text(spec)
    assert "add:" in text and "concat:" in text  # [shortcut] and a two-layer [route]
    assert "leakyrelu(0.1)" in text and "mish" in text and "sigmoid" in text
    assert "conv3-24(groups=2)" in text
    # 64 → conv 64 → maxpool 2/2 → 32 → maxpool 3/2 (padding 2) → 16
    shapes = [n.out_shape for n in network.root.children if hasattr(n, "kind")]
    assert (16, 32, 32) in shapes and network.output_shape == (7,)


def test_repeated_units_become_a_block_with_a_repeat(tmp_path):
    unit = ("[convolutional]\nbatch_normalize=1\nfilters=2\nsize=1\nstride=1\npad=1\n"
            "activation=leaky\n\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\n"
            "stride=1\npad=1\nactivation=leaky\n\n[shortcut]\nfrom=-3\nactivation=linear\n\n")
    stem = "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=relu\n\n"
    spec, network, _ = imported(cfg(tmp_path, stem + unit * 3))
    text = spec_text(spec)
    assert "block residual:" in text and "residual x3" in text
    assert len(text.splitlines()) == 9  # the block (4 lines), a blank, the network (4)


def weights_for(path, network, rng) -> list[np.ndarray]:
    """Random arrays in darknet's file order, sized by darknet's arithmetic."""
    from archc.compiler.diagnostics import Diagnostics
    from archc.importers import darknet

    arrays, channels = [], network.input_shape[0]
    shapes = {-1: network.input_shape}
    sections = darknet.layer_sections(darknet.parse_cfg(path.read_text(), str(path), Diagnostics()))
    outs = []
    for s in sections:
        opt = {k: o.value for k, o in s.options.items()}
        if s.type == "convolutional":
            n, k, g = int(opt["filters"]), int(opt.get("size", 1)), int(opt.get("groups", 1))
            if int(opt.get("batch_normalize", 0)):
                arrays += [rng.standard_normal(n), rng.standard_normal(n) * 0.2 + 1,
                           rng.standard_normal(n) * 0.1, rng.uniform(0.5, 2, n)]
            else:
                arrays.append(rng.standard_normal(n) * 0.1)
            arrays.append(rng.standard_normal((n, channels // g, k, k)) * 0.3)
            channels = n
        elif s.type == "connected":
            n = int(opt["output"])
            arrays += [rng.standard_normal(n), rng.standard_normal((n, channels)) * 0.3]
            channels = n  # (the input of a [connected] after an image is 1×1 in these tests)
        elif s.type == "route":
            picks = [int(v) for v in opt["layers"].split(",")]
            channels = sum(outs[s.index + i if i < 0 else i] for i in picks)
        outs.append(channels)
    del shapes
    return [np.asarray(a, dtype=np.float32) for a in arrays]


def test_parameter_count_is_darknets():
    """conv: n·c/g·k² (+ n biases, or 2n BN scale and shift); connected: out·in + out."""
    _, network, _ = imported(FIXTURES / "darknet_tiny.cfg")
    # 16·3·9+32 | 32·16·9+64 | 16·32+32 | 32·16·9+64 | 24·16·9+24 | 10·56+20 | 7·10+7
    assert network.n_params == (432 + 32) + (4608 + 64) + (512 + 32) + (4608 + 64) + \
        (3456 + 24) + (560 + 20) + (70 + 7)


# A YOLO neck at an odd size (13×13): a 2×2/2 pool rounded up, yolov3-tiny's 2×2/1 pool,
# a ×2 and a ×3 [upsample], and [route]s that rewire and concatenate across them.
YOLO_NECK = """
[convolutional]
batch_normalize=1
filters=6
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=1

[convolutional]
batch_normalize=1
filters=4
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[convolutional]
filters=5
size=3
stride=2
pad=1
activation=linear

[route]
layers=-1, 3

[route]
layers=-5

[upsample]
stride=3

[convolutional]
filters=3
size=3
stride=3
pad=1
activation=mish

[route]
layers=-1, -4
"""


def yolo_neck(tmp_path):
    return cfg(tmp_path, YOLO_NECK, size=13, channels=3)


@pytest.mark.parametrize("source", ["darknet_tiny.cfg", "yolov3_tiny_like.cfg", "neck"])
def test_round_trip_with_converted_weights(tmp_path, source):
    """Import, convert the weights, compile to Python: the reference darknet forward's
    output, also through [upsample], [route] and the 2×2 stride-1 maxpool (yolov3-tiny)."""
    if source == "neck":
        path = yolo_neck(tmp_path)
    else:
        path = tmp_path / source
        shutil.copy(FIXTURES / source, path)
    _, network, _ = imported(path)
    arrays = weights_for(path, network, np.random.default_rng(3))
    write_darknet_weights(path.with_suffix(".weights"), arrays, seen=12345)
    found, count = convert(str(path), network, tmp_path / "net.safetensors")
    assert found == path.with_suffix(".weights") and count > 0
    write_python(network, tmp_path / "net.py")
    x = torch.randn(2, *network.input_shape)
    got = run_generated(tmp_path / "net.py", network.name, tmp_path / "net.safetensors", x)
    expected = darknet_forward(str(path), arrays, x)
    # Relative to the outputs' scale: the random weights are not scaled by fan-in, so
    # yolov3-tiny's 1024-wide layers grow the values to ~1e5, where float32 sums of a
    # different order differ in the fourth digit.
    scale = expected.abs().max().clamp(min=1)
    torch.testing.assert_close(got / scale, expected / scale, rtol=1e-4, atol=1e-5)


def test_yolo_neck_shapes_are_darknets(tmp_path):
    """Every section's shape by darknet's rules (the reference forward) is archc's."""
    from archc.compiler.diagnostics import Diagnostics
    from archc.importers import darknet

    path = yolo_neck(tmp_path)
    spec, network, _ = imported(path)
    text = spec_text(spec)
    assert "maxpool2-1(padding=(0, 1, 0, 1))" in text and "maxpool2(ceil=true)" in text
    assert "  upsample  " in text and "upsample-3" in text  # ×2 is upsample's default
    reference: dict[int, tuple[int, ...]] = {}
    arrays = weights_for(path, network, np.random.default_rng(0))
    darknet_forward(str(path), arrays, torch.randn(1, 3, 13, 13), reference)
    importer = darknet._Importer(str(path), Diagnostics())
    importer.spec(darknet.parse_cfg(path.read_text(), str(path), Diagnostics()))
    assert [importer.shapes[node] for node in importer.outputs] == \
        [reference[i] for i in range(len(reference))]
    assert network.output_shape == reference[len(reference) - 1] == (16, 7, 7)


def test_weights_file_of_the_wrong_size_is_one_error(tmp_path):
    from archc.importers.weights import WeightsError

    path = tmp_path / "tiny.cfg"
    shutil.copy(FIXTURES / "darknet_tiny.cfg", path)
    _, network, _ = imported(path)
    arrays = weights_for(path, network, np.random.default_rng(3))
    write_darknet_weights(path.with_suffix(".weights"), arrays[:-1])
    with pytest.raises(WeightsError, match="ends early"):
        convert(str(path), network, tmp_path / "net.safetensors")


def test_yolov3_tiny_like_imports_with_its_heads_as_outputs():
    """yolov3-tiny's layout imports whole: its 2×2 stride-1 pool padded right and bottom,
    [upsample] and the [route] to layer 8; the [yolo] heads are left out with a warning each,
    the first head a tap, the second the output."""
    spec, network, diags = imported(FIXTURES / "yolov3_tiny_like.cfg")
    found = [(d.severity, d.code, d.span.line) for d in diags.sorted()]
    assert found == [("warning", "W401", 112), ("warning", "W401", 150)]
    text = spec_text(spec)
    assert "maxpool2-1(padding=(0, 1, 0, 1))" in text and "upsample" in text
    # 64 / 2^5 = 2 (the first head, kept 2×2 by the stride-1 pool); ×2 for the second
    assert list(network.aux_outputs.values()) == [(18, 2, 2)]
    assert network.output_shape == (18, 4, 4)


def test_yolo_heads_become_outputs_and_taps(tmp_path):
    """Two detection heads: the last is the output, the first a tap, each warned about."""
    head = ("[convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n\n"
            "[yolo]\nclasses=1\n\n")
    body = ("[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n" + head
            + "[route]\nlayers=-3\n\n[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\n"
            "activation=leaky\n\n" + head)
    spec, network, diags = imported(cfg(tmp_path, body))
    assert [d.code for d in diags.items] == ["W401", "W401"]
    assert network.output_shape == (6, 7, 7) and list(network.aux_outputs.values()) == [(6, 7, 7)]
    assert "tap conv1-6" in spec_text(spec)


def test_cli_weights_round_trip(tmp_path):
    """archc import NET.cfg -o net.arch --weights, then archc compile -o and the module."""
    import subprocess
    import sys

    path = tmp_path / "tiny.cfg"
    shutil.copy(FIXTURES / "darknet_tiny.cfg", path)
    _, network, _ = imported(path)
    arrays = weights_for(path, network, np.random.default_rng(4))
    write_darknet_weights(path.with_suffix(".weights"), arrays)
    archc = [sys.executable, "-m", "archc"]
    done = subprocess.run([*archc, "import", str(path), "-o", str(tmp_path / "net.arch"),
                           "--weights"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*archc, "compile", str(tmp_path / "net.arch"), "-o",
                           str(tmp_path / "net.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # archc's own initialiser takes the file as well (every shape exact, scalars included)
    done = subprocess.run([*archc, "compile", str(tmp_path / "net.arch"), "-o",
                           str(tmp_path / "init" / "net.py"), "--init",
                           str(tmp_path / "net.safetensors")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    x = torch.randn(1, 3, 64, 64)
    got = run_generated(tmp_path / "net.py", network.name, tmp_path / "net.safetensors", x)
    torch.testing.assert_close(got, darknet_forward(str(path), arrays, x), rtol=1e-4, atol=1e-5)


def test_every_shape_is_darknets():
    """Each section's output shape (the reference, by darknet's rules) equals the shape
    archc infers for the last layer it became."""
    from archc.compiler.diagnostics import Diagnostics
    from archc.compiler.graph import layers
    from archc.importers import darknet
    from archc.importers.weights import _ir_layers

    path = FIXTURES / "darknet_tiny.cfg"
    _, network, _ = imported(path)
    flat = darknet.load(str(path), Diagnostics(), compact=False)
    items = [i for i in _ir_layers(flat.statements[0].body) if i.callee != "identity"]
    nodes = [n for n in layers(network.root) if n.kind != "identity"]
    assert [i.callee for i in items] == [n.kind for n in nodes]
    archc_shapes = {(i.span.line, i.span.column): n.out_shape for i, n in zip(items, nodes)}
    arrays = weights_for(path, network, np.random.default_rng(0))
    reference: dict[int, tuple[int, ...]] = {}
    darknet_forward(str(path), arrays, torch.randn(1, 3, 64, 64), reference)
    sections = darknet.layer_sections(darknet.parse_cfg(path.read_text(), str(path),
                                                        Diagnostics()))
    checked = 0
    for s in sections:
        key = (s.span.line, s.span.column)
        if key in archc_shapes:  # [route], [shortcut] and [cost] only wire
            assert archc_shapes[key] == reference[s.index], f"[{s.type}] {s.index}"
            checked += 1
    assert checked >= 10


def darknet53_like(widths=(8, 16), units=(2, 3)) -> str:
    """darknet53's pattern, narrow: a strided conv, then residual units (1×1 c, 3×3 2c)."""
    def conv(filters, size, stride=1):
        return (f"[convolutional]\nbatch_normalize=1\nfilters={filters}\nsize={size}\n"
                f"stride={stride}\npad=1\nactivation=leaky\n\n")
    text = "[net]\nchannels=3\nheight=32\nwidth=32\n\n" + conv(widths[0], 3)
    for width, count in zip(widths, units):
        text += conv(width * 2, 3, 2)
        text += (conv(width, 1) + conv(width * 2, 3)
                 + "[shortcut]\nfrom=-3\nactivation=linear\n\n") * count
    return text + "[avgpool]\n\n[connected]\noutput=5\nactivation=linear\n\n[softmax]\n"


def test_darknet53_like_blocks_and_weights(tmp_path):
    path = tmp_path / "darknet53.cfg"
    path.write_text(darknet53_like())
    spec, network, _ = imported(path)
    text = spec_text(spec)
    assert "block residual(c):" in text
    assert "conv3-{c * 2}(bias=false)" in text
    assert "residual(8) x2" in text and "residual(16) x3" in text
    arrays = weights_for(path, network, np.random.default_rng(7))
    write_darknet_weights(path.with_suffix(".weights"), arrays)
    convert(str(path), network, tmp_path / "net.safetensors")
    write_python(network, tmp_path / "net.py")
    x = torch.randn(2, 3, 32, 32)
    got = run_generated(tmp_path / "net.py", network.name, tmp_path / "net.safetensors", x)
    torch.testing.assert_close(got, darknet_forward(str(path), arrays, x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- darknet's classifiers

def plans(scope) -> list:
    """Every plan op of `scope` and of the scopes below it, once per call site."""
    stack, seen = [scope.plan], []
    while stack:
        op = stack.pop()
        seen.append(op)
        stack += [*getattr(op, "ops", ()), *getattr(op, "branches", ())]
    for child in scope.children:
        if hasattr(child, "plan"):
            seen += plans(child)
    return seen


def small_copy(tmp_path, name: str, **replace: str):
    """The fixture cfg `name` with some lines replaced (a smaller input, narrower heads)."""
    text = (FIXTURES / f"{name}.cfg").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.cfg"
    path.write_text(text)
    return path


def round_trip(tmp_path, path, seed: int = 5) -> None:
    """Import, convert random darknet weights, compile to Python: darknet's forward."""
    _, network, _ = imported(path)
    arrays = weights_for(path, network, np.random.default_rng(seed))
    write_darknet_weights(path.with_suffix(".weights"), arrays)
    convert(str(path), network, tmp_path / "net.safetensors")
    write_python(network, tmp_path / "net.py")
    x = torch.rand(2, *network.input_shape)
    got = run_generated(tmp_path / "net.py", network.name, tmp_path / "net.safetensors", x)
    expected = darknet_forward(str(path), arrays, x)
    scale = expected.abs().max().clamp(min=1)
    torch.testing.assert_close(got / scale, expected / scale, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, params, strided", [
    ("resnet18", 11_515_688, 3), ("resnet50", 22_780_456, 4), ("resnext50", 22_252_328, 4)])
def test_darknet_resnets_import_with_darknets_shortcuts(name, params, strided):
    """darknet's resnets add a block's input into its output with no projection: the first
    channels, every second pixel after a stride (archc's `add-into:`). resnet50's first block
    adds 64 channels into 256."""
    spec, network, diags = imported(FIXTURES / f"{name}.cfg")
    assert not diags.errors
    assert "add-into:" in spec_text(spec)
    modes = [op.mode for op in plans(network.root) if isinstance(op, Parallel)]
    assert modes.count("add-into") == strided
    # torchvision's count less its projection shortcuts (conv and BN): 11,689,512 - 173,824
    # for resnet18; 25,557,032 - 2,776,576 for resnet50; 25,028,904 - 2,776,576 for
    # resnext50_32x4d
    assert network.output_shape == (1000, 1, 1) and network.n_params == params


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50"])
def test_darknet_resnets_compute_darknets_forward(tmp_path, name):
    round_trip(tmp_path, small_copy(tmp_path, name, **{"height=256": "height=64",
                                                      "width=256": "width=64"}))


def test_darknet_vgg16_imports_with_its_crop():
    """vgg-16.cfg starts with [crop]: the centre 224×224 of 256×256, scaled 2x − 1."""
    spec, network, diags = imported(FIXTURES / "vgg-16.cfg")
    assert not diags.errors
    text = spec_text(spec)
    assert "crop(height=224, width=224)  constant-scale(2.0, shift=-1.0)" in text
    assert network.output_shape == (1000,) and network.n_params == 138_357_544  # VGG-16's


def test_darknet_vgg16_computes_darknets_forward(tmp_path):
    """A smaller input and narrower fully connected layers, the same layer types."""
    path = small_copy(tmp_path, "vgg-16", **{"height=256": "height=40", "width=256": "width=40",
                                             "crop_height=224": "crop_height=32",
                                             "crop_width=224": "crop_width=32",
                                             "output=4096": "output=24"})
    round_trip(tmp_path, path)


def test_crop_noadjust_and_shortcut_weights(tmp_path):
    """[crop] with noadjust=1 keeps the values; a weighted [shortcut] is located, not
    imported wrongly."""
    from archc.compiler.diagnostics import Diagnostics
    from archc.importers import import_source

    spec, network, _ = imported(cfg(tmp_path, "[crop]\ncrop_height=9\ncrop_width=7\n"
                                    "noadjust=1\n"))
    assert network.output_shape == (4, 9, 7) and "constant-scale" not in spec_text(spec)
    body = ("[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"
            "[shortcut]\nfrom=-2\nalpha=0.5\n")
    diags = Diagnostics()
    assert import_source(str(cfg(tmp_path, "[maxpool]\nsize=1\nstride=1\n\n" + body)),
                         diags) is None
    (error,) = diags.errors
    assert "alpha=" in error.message and error.span.line == 19
