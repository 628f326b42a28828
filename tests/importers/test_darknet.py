"""`archc import` of Darknet cfgs: darknet's shape rules, parameter counts, the weights
file (header and BN order) and the round trip against a reference darknet forward."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from archc.backends.pysource import write_python
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


def cfg(tmp_path, body: str, size: int = 13):
    path = tmp_path / "net.cfg"
    path.write_text(f"[net]\nchannels=4\nheight={size}\nwidth={size}\n\n{body}")
    return path


@pytest.mark.parametrize("size, kernel, stride", [(13, 2, 2), (64, 2, 2), (13, 3, 2), (13, 5, 1),
                                                  (9, 3, 1)])
def test_maxpool_follows_darknets_padding_rule(tmp_path, size, kernel, stride):
    _, network, _ = imported(cfg(tmp_path, f"[maxpool]\nsize={kernel}\nstride={stride}\n", size))
    out = darknet_out(size, kernel, stride)
    assert network.output_shape == (4, out, out)


def test_maxpool_stride_one_even_size_is_reported(tmp_path):
    """yolov3-tiny's 2×2/1 pool pads one column on the right only: no archc form yet."""
    from archc.diagnostics import Diagnostics
    from archc.importers import import_source

    path = cfg(tmp_path, "[maxpool]\nsize=2\nstride=1\n")
    diags = Diagnostics()
    assert import_source(str(path), diags) is None
    (error,) = diags.errors
    assert error.span.line == 6 and "asymmetric" in error.hint


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
    from archc.diagnostics import Diagnostics
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


def test_round_trip_with_converted_weights(tmp_path):
    path = tmp_path / "tiny.cfg"
    shutil.copy(FIXTURES / "darknet_tiny.cfg", path)
    _, network, _ = imported(path)
    arrays = weights_for(path, network, np.random.default_rng(3))
    write_darknet_weights(path.with_suffix(".weights"), arrays, seen=12345)
    found, count = convert(str(path), network, tmp_path / "net.safetensors")
    assert found == path.with_suffix(".weights") and count > 0
    write_python(network, tmp_path / "net.py")
    x = torch.randn(2, 3, 64, 64)
    got = run_generated(tmp_path / "net.py", network.name, tmp_path / "net.safetensors", x)
    expected = darknet_forward(str(path), arrays, x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_weights_file_of_the_wrong_size_is_one_error(tmp_path):
    from archc.importers.weights import WeightsError

    path = tmp_path / "tiny.cfg"
    shutil.copy(FIXTURES / "darknet_tiny.cfg", path)
    _, network, _ = imported(path)
    arrays = weights_for(path, network, np.random.default_rng(3))
    write_darknet_weights(path.with_suffix(".weights"), arrays[:-1])
    with pytest.raises(WeightsError, match="ends early"):
        convert(str(path), network, tmp_path / "net.safetensors")


def test_yolov3_tiny_like_reports_what_archc_cannot_write_yet():
    """yolov3-tiny's layout: every layer imports but its 2×2 stride-1 pool (padded on the
    right only) and [upsample], each one located error; the [yolo] heads are left out with
    a warning. Shapes carry on past the failures, so nothing else is reported."""
    from archc.diagnostics import Diagnostics
    from archc.importers import import_source

    diags = Diagnostics()
    assert import_source(str(FIXTURES / "yolov3_tiny_like.cfg"), diags) is None
    found = [(d.severity, d.code, d.span.line) for d in diags.sorted()]
    assert found == [("error", "E204", 77), ("warning", "W401", 112), ("error", "E204", 129),
                     ("warning", "W401", 150)]


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
    from archc.diagnostics import Diagnostics
    from archc.graph import layers
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
