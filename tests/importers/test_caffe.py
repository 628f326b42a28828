"""`archc import` of Caffe prototxts: coverage, Caffe's rounding rule, parameter counts,
and the round trip (import → compile → the emitted Python with the converted weights
gives the outputs of a reference forward written from Caffe's own rules)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from archc.backends.module import class_name
from archc.backends.pysource import write_python
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.graph import layers
from archc.importers import check_imported, import_source
from archc.importers.layout import spec_text
from archc.importers.weights import convert, read_caffemodel, write_caffemodel

try:
    import caffe_zoo
    from reference import caffe_forward, caffe_pooled
except ImportError:  # pragma: no cover - run from the repository root
    from tests.importers import caffe_zoo
    from tests.importers.reference import caffe_forward, caffe_pooled

FIXTURES = Path(__file__).parent / "fixtures"
ARCHC = [sys.executable, "-m", "archc"]


def imported(path: Path):
    """(spec, network, diagnostics) of an imported file."""
    diags = Diagnostics()
    spec = import_source(str(path), diags)
    assert spec is not None, diags.items
    network = check_imported(spec, {}, diags)
    assert network is not None, diags.items
    return spec, network, diags


def run_generated(py: Path, name: str, weights: Path, x: torch.Tensor) -> torch.Tensor:
    """Import the emitted source, load the converted weights strictly, run it in eval mode."""
    spec = importlib.util.spec_from_file_location(py.stem, py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, class_name(name))()
    model.load_state_dict(load_file(str(weights)), strict=True)
    with torch.no_grad():
        return model.eval()(x)


def assert_round_trip(proto: Path, network, x: torch.Tensor, seed: int, v1: bool = False) -> None:
    """Blobs by Caffe's shapes → caffemodel → safetensors → emitted Python: equal outputs."""
    expected, blobs = caffe_forward(str(proto), x, np.random.default_rng(seed))
    write_caffemodel(proto.with_suffix(".caffemodel"), blobs, v1=v1)
    target = proto.parent / "net.safetensors"
    convert(str(proto), network, target)
    write_python(network, proto.parent / "net.py")
    got = run_generated(proto.parent / "net.py", network.name, target, x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- the rounding rule


@pytest.mark.parametrize("size, kernel, stride, pad", [
    (112, 3, 2, 0),   # GoogLeNet's pool1: 55.5 rounds up to 56
    (13, 3, 2, 0),    # exact: ceil and floor agree
    (8, 3, 2, 1),     # padded, rounds up: 5 (PyTorch's floor gives 4)
    (4, 2, 3, 1),     # the last window would start in the padding: clipped to 2
    (7, 2, 2, 1),     # padded, clip applies: 4
    (14, 14, 1, 0),   # a global-size window
])
def test_pooled_size_follows_caffe_rounding(tmp_path, size, kernel, stride, pad):
    """pooled = ceil((H + 2p − k)/s) + 1, less one when p > 0 and (pooled−1)·s ≥ H + p."""
    proto = tmp_path / "pool.prototxt"
    proto.write_text(
        f'input: "data"\ninput_shape {{ dim: 1 dim: 2 dim: {size} dim: {size} }}\n'
        f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool"\n'
        f'  pooling_param {{ pool: MAX kernel_size: {kernel} stride: {stride} pad: {pad} }} }}\n')
    _, network, _ = imported(proto)
    expected = caffe_pooled(size, kernel, stride, pad)
    assert network.output_shape == (2, expected, expected)
    x = torch.randn(1, 2, size, size)
    with torch.no_grad():
        from archc.backends.module import to_module

        assert to_module(network)(x).shape[-1] == expected


def test_caffe_rounding_differs_from_floor_where_it_should():
    assert caffe_pooled(112, 3, 2, 0) == 56 and (112 - 3) // 2 + 1 == 55
    assert caffe_pooled(4, 2, 3, 1) == 2  # not ceil(4/3) + 1 = 3: the clip


# --------------------------------------------------------------------------- structure


def test_googlenet_excerpt_becomes_blocks():
    spec, network, diags = imported(FIXTURES / "googlenet_excerpt.prototxt")
    text = spec_text(spec)
    assert "block inception(c_1x1, c_3x3_reduce, c_3x3, c_5x5_reduce, c_5x5, c_pool_proj):" in text
    assert "inception_3a: inception(64, 96, 128, 16, 32, 32)" in text
    assert "maxpool3-2(ceil=true)" in text  # 112 → 56 needs Caffe's rounding up
    assert network.output_shape == (1000,)
    assert not diags.has_errors


def test_v1_syntax_and_input_dim():
    spec, network, _ = imported(FIXTURES / "alexnet_v1.prototxt")
    text = spec_text(spec)
    assert "conv2: conv5-32(groups=2)" in text and "lrn" in text
    assert network.input_shape == (3, 67, 67) and network.output_shape == (10,)


def test_bn_scale_split_inplace_and_eltwise():
    spec, network, _ = imported(FIXTURES / "resnet_like.prototxt")
    text = spec_text(spec)
    assert "bn1: bn" in text and "affine" not in text  # BatchNorm + Scale → one affine bn
    assert "add:" in text and "identity" in text  # Split + Eltwise SUM
    assert "mul:\n        identity\n        gate: conv1-8  sigmoid" in text  # Eltwise PROD
    assert "leakyrelu(0.2)" in text and "tanh" in text and "sigmoid" in text
    assert "avgpool3-2(padding=1, ceil=true)" in text and "globalavgpool" in text


def test_eltwise_max_imports_as_a_max_merge(tmp_path):
    """Eltwise MAX of three branches is `max:`, with Caffe's shapes and Caffe's outputs."""
    proto = tmp_path / "eltmax.prototxt"
    proto.write_text(
        'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 10 dim: 10 }\n'
        'layer { name: "a" type: "Convolution" bottom: "data" top: "a"\n'
        '  convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }\n'
        'layer { name: "b" type: "Convolution" bottom: "data" top: "b"\n'
        '  convolution_param { num_output: 6 kernel_size: 1 } }\n'
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
        '  convolution_param { num_output: 6 kernel_size: 5 pad: 2 } }\n'
        'layer { name: "m" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "m"\n'
        '  eltwise_param { operation: MAX } }\n'
        'layer { name: "r" type: "ReLU" bottom: "m" top: "m" }\n')
    spec, network, diags = imported(proto)
    assert not diags.errors and "max:" in spec_text(spec)
    assert network.output_shape == (6, 10, 10) and network.n_params == 6 * (27 + 3 + 75 + 3)
    assert_round_trip(proto, network, torch.randn(2, *network.input_shape), seed=3)


def test_repeated_layers_become_repeats():
    """VGG's stages: the conv-relu pairs of a stage are one `[...] xN`, as VGG's paper
    table writes them; the two fc-relu-dropout units likewise."""
    spec, network, _ = imported(FIXTURES / "vgg_narrow.prototxt")
    assert spec_text(spec).splitlines()[2:] == [
        "    [conv3-8 relu] x2  maxpool",
        "    [conv3-16 relu] x2  maxpool",
        "    [conv3-32 relu] x3  maxpool  flatten",
        "    [fc-32 relu dropout] x2",
        "    fc8: fc-10  softmax",
    ]


def test_side_outputs_become_taps(tmp_path):
    """A head whose output no later layer reads (GoogLeNet's auxiliary classifiers in a
    train_val.prototxt) becomes a tap; the last layer is the network's output."""
    proto = tmp_path / "aux.prototxt"
    proto.write_text(
        'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 16 dim: 16 }\n'
        'layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"\n'
        '  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n'
        'layer { name: "aux_fc" type: "InnerProduct" bottom: "c1" top: "aux_fc"\n'
        '  inner_product_param { num_output: 3 } }\n'
        'layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2"\n'
        '  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "c2" top: "fc"\n'
        '  inner_product_param { num_output: 5 } }\n')
    spec, network, _ = imported(proto)
    text = spec_text(spec)
    assert "tap [flatten  aux_fc: fc-3]" in text or "tap [flatten aux_fc: fc-3]" in text
    assert network.output_shape == (5,) and list(network.aux_outputs.values()) == [(3,)]


def test_emitted_text_reparses_to_the_same_network(tmp_path):
    """The text archc writes checks by itself and gives the network the import checked."""
    import archc

    for name in ("googlenet_excerpt", "alexnet_v1", "resnet_like", "vgg_narrow"):
        spec, network, _ = imported(FIXTURES / f"{name}.prototxt")
        path = tmp_path / f"{name}.arch"
        path.write_text(spec_text(spec))
        again = archc.load(path)
        assert [(n.path, n.kind, n.out_shape) for n in layers(again.root)] == \
               [(n.path, n.kind, n.out_shape) for n in layers(network.root)]


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", ["alexnet_v1", "resnet_like", "googlenet_excerpt", "vgg_narrow",
                                  "activations", "factorized"])
def test_parameter_count_is_caffes(tmp_path, name):
    """Learnable parameters: the sizes of every conv, InnerProduct and Scale blob."""
    proto = FIXTURES / f"{name}.prototxt"
    _, network, _ = imported(proto)
    x = torch.randn(1, *network.input_shape)
    _, blobs = caffe_forward(str(proto), x, np.random.default_rng(0))
    learnable = sum(a.size for layer, arrays in blobs.items() for a in arrays
                    if not layer.startswith("bn"))
    assert network.n_params == learnable


def test_caffemodel_writer_and_reader_agree(tmp_path):
    blobs = {"conv1": [np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
                       np.ones(2, np.float32)]}
    write_caffemodel(tmp_path / "m.caffemodel", blobs)
    read = read_caffemodel(tmp_path / "m.caffemodel")
    assert list(read) == ["conv1"]
    np.testing.assert_array_equal(read["conv1"][0], blobs["conv1"][0])


@pytest.mark.parametrize("name", ["alexnet_v1", "resnet_like", "vgg_narrow", "activations",
                                  "factorized"])
def test_round_trip_with_converted_weights(tmp_path, name):
    proto = tmp_path / f"{name}.prototxt"
    shutil.copy(FIXTURES / f"{name}.prototxt", proto)
    _, network, _ = imported(proto)
    # the V1 prototxt's weights in the V1 message, as Caffe stored models of its time
    assert_round_trip(proto, network, torch.randn(2, *network.input_shape), seed=1,
                      v1=name == "alexnet_v1")


def test_cli_round_trip_googlenet(tmp_path):
    """The real commands: archc import --weights, archc compile -o, then the emitted module."""
    proto = tmp_path / "deploy.prototxt"
    shutil.copy(FIXTURES / "googlenet_excerpt.prototxt", proto)
    x = torch.randn(1, 3, 224, 224)
    expected, blobs = caffe_forward(str(proto), x, np.random.default_rng(2))
    write_caffemodel(proto.with_suffix(".caffemodel"), blobs)
    arch = tmp_path / "googlenet.arch"
    done = subprocess.run([*ARCHC, "import", str(proto), "-o", str(arch), "--weights"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "googlenet.safetensors" in done.stdout
    done = subprocess.run([*ARCHC, "compile", str(arch), "-o", str(tmp_path / "net.py")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = run_generated(tmp_path / "net.py", "GoogleNet", tmp_path / "googlenet.safetensors", x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["alexnet_v1", "resnet_like", "googlenet_excerpt", "vgg_narrow",
                                  "activations", "factorized"])
def test_every_shape_is_caffes(name):
    """Each Caffe layer's output shape (Caffe's rules, run by the reference) equals the shape
    archc's checker infers for the layer it became."""
    from archc.importers import caffe
    from archc.importers.weights import _ir_layers

    proto = FIXTURES / f"{name}.prototxt"
    _, network, _ = imported(proto)
    flat = caffe.load(str(proto), Diagnostics(), compact=False)
    items = list(_ir_layers(flat.statements[0].body))
    nodes = list(layers(network.root))
    assert [i.callee for i in items] == [n.kind for n in nodes]
    archc_shapes = {(i.span.line, i.span.column): n.out_shape for i, n in zip(items, nodes)}
    caffe_shapes: dict[str, tuple[int, ...]] = {}
    caffe_forward(str(proto), torch.randn(1, *network.input_shape), np.random.default_rng(0),
                  caffe_shapes)
    checked = 0
    for layer in caffe.layers_of(_root(proto)):
        if layer.type in ("Input", "Split", "Scale", "Concat", "Eltwise"):
            continue  # wiring, or folded into the layer before
        assert archc_shapes[(layer.span.line, layer.span.column)] == caffe_shapes[layer.name], \
            layer.name
        checked += 1
    assert checked >= 7


def _root(proto: Path):
    from archc.importers import prototxt

    return prototxt.parse(proto.read_text(), str(proto), Diagnostics())


def test_non_square_windows(tmp_path):
    """kernel_h/kernel_w/pad_h/pad_w: an (h, w) window."""
    from archc.layers import REGISTRY

    proto = tmp_path / "ns.prototxt"
    proto.write_text(
        'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 12 dim: 12 }\n'
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
        '  convolution_param { num_output: 4 kernel_h: 1 kernel_w: 3 pad_h: 0 pad_w: 1 } }\n')
    diags = Diagnostics()
    spec = import_source(str(proto), diags)
    assert REGISTRY["conv"].param("kernel").type == "int2"
    network = check_imported(spec, {}, diags)
    assert network is not None and network.output_shape == (4, 12, 12)


# --------------------------------------------------------------------------- the model zoo


@pytest.mark.parametrize("name, params, lines", [
    ("googlenet", 6_998_552, 22),    # BVLC GoogLeNet: 957 prototxt lines
    ("vgg16", 138_357_544, 8),       # VGG_ILSVRC_16_layers: 260 lines
    ("resnet50", 25_557_096, 24),    # ResNet-50 (torchvision's 25,557,032 + conv1's bias)
    ("squeezenet", 1_235_496, 13),   # SqueezeNet v1.1: 438 lines; torchvision's count
])
def test_zoo_deploy_files_import_compactly(tmp_path, name, params, lines):
    proto = tmp_path / f"{name}.prototxt"
    proto.write_text(getattr(caffe_zoo, name)())
    spec, network, _ = imported(proto)
    assert network.n_params == params and network.output_shape[0] == 1000
    assert len(spec_text(spec).splitlines()) == lines


def test_resnet50_layout_with_weights_round_trip(tmp_path):
    """Blocks with parameters and multiples (c, c * 4), repeats and the relu folded in; the
    converted weights follow the layers through all of it."""
    proto = tmp_path / "resnet.prototxt"
    proto.write_text(caffe_zoo.resnet50(base=4, size=64))
    spec, network, _ = imported(proto)
    text = spec_text(spec)
    assert "block residual(c):" in text and "block residual_proj(c, stride):" in text
    assert "branch2c: conv1-{c * 4}(bias=false)" in text
    assert "res4a: residual_proj(16, 2)  residual(16) x5" in text
    assert_round_trip(proto, network, torch.randn(1, 3, 64, 64), seed=5)


def test_squeezenet_fire_blocks_round_trip(tmp_path):
    """Blocks that begin before their merge (the squeeze conv) keep the weights in order."""
    proto = tmp_path / "squeezenet.prototxt"
    proto.write_text(caffe_zoo.squeezenet())
    spec, network, _ = imported(proto)
    assert "block fire(c):\n    squeeze1x1: conv1-{c}  relu\n    concat:" in spec_text(spec)
    assert_round_trip(proto, network, torch.randn(1, 3, 227, 227), seed=6)


def test_train_val_losses_are_left_out_and_aux_heads_become_taps(tmp_path):
    """A train_val.prototxt with its input declared: losses and accuracy are left out
    (warnings W401), so an auxiliary classifier is a side output: a tap."""
    proto = tmp_path / "train_val.prototxt"
    proto.write_text(
        'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 16 dim: 16 }\n'
        'layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"\n'
        '  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n'
        'layer { name: "aux" type: "InnerProduct" bottom: "c1" top: "aux"\n'
        '  inner_product_param { num_output: 3 } }\n'
        'layer { name: "aux_loss" type: "SoftmaxWithLoss" bottom: "aux" bottom: "label"\n'
        '  top: "aux_loss" loss_weight: 0.3 }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "c1" top: "fc"\n'
        '  inner_product_param { num_output: 5 } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }\n'
        'layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" }\n')
    spec, network, diags = imported(proto)
    assert [(d.code, d.span.line) for d in diags.items] == [("W401", 7), ("W401", 11),
                                                            ("W401", 12)]
    assert network.output_shape == (5,) and list(network.aux_outputs.values()) == [(3,)]


def test_a_data_layer_without_a_declared_input_is_one_error(tmp_path):
    proto = tmp_path / "train_val.prototxt"
    proto.write_text('layer { name: "d" type: "Data" top: "data" top: "label" }\n')
    diags = Diagnostics()
    assert import_source(str(proto), diags) is None
    (error,) = diags.errors
    assert error.span.column == 25 and "deploy.prototxt" in error.hint
