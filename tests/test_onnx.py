"""`archc compile --emit onnx`: an ONNX file with a dynamic batch that onnxruntime runs to
torch's logits.

Each export is checked here independently of the exporter's own verification: the test
loads known weights, runs onnxruntime at batch 1 and 3, and compares with torch. Logits of
randomly initialised networks reach tens, so the tolerance, 1e-4, is relative to their scale.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import archc
from archc.backends.module import to_module
from archc.backends.onnx import OnnxExportError, export_onnx, max_error, run_onnx, verify
from archc.backends.weights import save_weights

SPECS = Path(__file__).resolve().parents[1] / "specs"

TINY_SPEC = """\
network tiny(num_classes=3):
    input 3x16x16
    conv3-8 bn relu maxpool
    conv3-8 maxout(2)
    global-avgpool flatten
    fc: FC-{num_classes}
"""


def assert_matches(path: Path, model: torch.nn.Module, shape: tuple[int, ...]) -> None:
    """onnxruntime gives torch's eval logits at batch 1 and 3 (so the batch is dynamic)."""
    model.eval()
    for batch in (1, 3):
        x = torch.randn(batch, *shape)
        with torch.no_grad():
            want = model(x).numpy()
        got = run_onnx(path, x)
        assert got.shape == want.shape
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)


def batch_dim(path: Path) -> str:
    """The symbolic name of the input's first dimension ("" when it is fixed)."""
    return onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type \
        .shape.dim[0].dim_param


def export_with_known_weights(net, tmp_path: Path, **kwargs):
    """Export `net` initialised from a weights file; returns (written paths, a torch model with
    those weights)."""
    model = to_module(net)
    weights = save_weights(model, tmp_path / "weights.safetensors")
    written = export_onnx(net, tmp_path / "model.onnx", init=str(weights), **kwargs)
    return written, model


@pytest.mark.parametrize("spec", ["resnet18", "googlenet"])
def test_export_matches_torch(spec, tmp_path):
    net = archc.load(SPECS / f"{spec}.arch", num_classes=2, input_shape=(3, 64, 64))
    written, model = export_with_known_weights(net, tmp_path)
    assert written == [tmp_path / "model.onnx"]  # one self-contained file
    assert batch_dim(written[0])
    outputs = onnx.load(str(written[0]), load_external_data=False).graph.output
    assert [o.name for o in outputs] == ["logits"]  # eval mode: no auxiliary heads
    assert_matches(written[0], model, net.input_shape)


def test_every_layer_kind_and_merge_exports(tmp_path):
    """The fixture with every registry kind and merge (SE gate, split, layer scale, permute,
    non-square windows) runs in onnxruntime to torch's logits; all but adaptive max pooling,
    which torch cannot export."""
    net = archc.load(Path(__file__).parent / "fixtures" / "every_kind.arch", onnx=True)
    written, model = export_with_known_weights(net, tmp_path)
    assert_matches(written[0], model, net.input_shape)


@pytest.fixture
def tiny(tmp_path):
    spec = tmp_path / "tiny.arch"
    spec.write_text(TINY_SPEC, encoding="utf-8")
    return archc.load(spec)


def test_default_opset_uses_the_dynamo_exporter(tiny, tmp_path):
    written, model = export_with_known_weights(tiny, tmp_path)
    assert onnx.load(str(written[0])).opset_import[0].version == 18
    assert batch_dim(written[0])
    assert_matches(written[0], model, tiny.input_shape)


def test_older_opset_falls_back_to_torchscript(tiny, tmp_path):
    written, model = export_with_known_weights(tiny, tmp_path, opset=17)
    assert {o.domain: o.version for o in onnx.load(str(written[0])).opset_import}[""] == 17
    assert batch_dim(written[0])
    assert_matches(written[0], model, tiny.input_shape)


def test_verify_rejects_a_file_that_computes_something_else(tiny, tmp_path):
    written, model = export_with_known_weights(tiny, tmp_path)
    with torch.no_grad():
        model.fc.bias += 1.0  # the file no longer matches the module
    with pytest.raises(OnnxExportError, match="disagree"):
        verify(written[0], model.eval(), torch.randn(2, *tiny.input_shape))


def test_export_reports_reinitialised_heads(tiny, tmp_path):
    other = archc.load(tiny.spec_path, num_classes=5)
    weights = save_weights(to_module(other), tmp_path / "five.safetensors")
    notes: list[str] = []
    export_onnx(tiny, tmp_path / "model.onnx", init=str(weights), note=notes.append)
    assert notes == ["re-initialised fc (num_classes 5 → 3); new tensors: fc.weight, fc.bias"]


def test_max_error_is_relative_to_the_scale():
    want = np.array([[100.0, -50.0]])
    assert max_error(want + 0.005, want) == pytest.approx(5e-5)
    assert max_error(np.array([[0.5]]), np.array([[0.4]])) == pytest.approx(0.1)


def test_dynamo_failure_falls_back_to_torchscript(tiny, tmp_path, monkeypatch):
    import archc.backends.onnx as backend

    def broken(*args, **kwargs):
        raise RuntimeError("dynamo cannot trace this")

    monkeypatch.setattr(backend, "_export_dynamo", broken)
    written, model = export_with_known_weights(tiny, tmp_path)
    assert batch_dim(written[0])
    assert_matches(written[0], model, tiny.input_shape)


def test_both_exporters_failing_is_one_clear_error(tiny, tmp_path, monkeypatch):
    import archc.backends.onnx as backend

    def broken(name):
        def fail(*args, **kwargs):
            raise RuntimeError(f"{name} gave up")
        return fail

    monkeypatch.setattr(backend, "_export_dynamo", broken("dynamo"))
    monkeypatch.setattr(backend, "_export_torchscript", broken("torchscript"))
    with pytest.raises(OnnxExportError, match="dynamo gave up.*torchscript gave up"):
        export_onnx(tiny, tmp_path / "model.onnx")


def test_dotted_labels_export(tmp_path):
    """Modules registered inside containers (`convs.{i}:`) export and run to torch's logits."""
    spec = tmp_path / "dotted.arch"
    spec.write_text("block unit(c, n=2):\n    for i in range(n):\n"
                    "        convs.{i}: conv3-{c}(bias=false)  bns.{i}: bn  relu\n\n"
                    "network n:\n    input 3x16x16\n    body: unit(8)\n"
                    "    global-avgpool flatten FC-4\n", encoding="utf-8")
    net = archc.load(spec)
    written, model = export_with_known_weights(net, tmp_path)
    assert "body.convs.1.weight" in model.state_dict()
    assert_matches(written[0], model, net.input_shape)


def test_split_by_sizes_exports(tmp_path):
    spec = tmp_path / "parts.arch"
    spec.write_text("network parts:\n    input 8x4x4\n    split(sizes=(2, 3, 3)):\n"
                    "        identity\n        conv1-3\n        relu\n", encoding="utf-8")
    net = archc.load(spec)
    written, model = export_with_known_weights(net, tmp_path, opset=17)
    assert_matches(written[0], model, net.input_shape)
