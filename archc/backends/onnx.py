"""The ONNX backend: a checked `Network` → an .onnx file, verified with onnxruntime.

The model is exported in eval mode, so its one output is the main logits (auxiliary heads
run in training only), and its batch dimension is dynamic. Export uses torch's dynamo
exporter, falling back to the TorchScript exporter when that fails or when the opset asked
for predates the dynamo exporter's (18). Every export is then run with onnxruntime on a
random batch and compared with torch: a file that computes something else is an error,
not a surprise for later.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from archc.backends import ONNX_INPUT, ONNX_OUTPUT
from archc.compiler.graph import Network

DYNAMO_MIN_OPSET = 18  # the dynamo exporter's lowest opset; it cannot convert down reliably
TOLERANCE = 1e-4  # relative to the logits' scale (at least 1): float32 sums differ in order
_EXTERNAL_BYTES = 1 << 30  # weights above this go to `<file>.data`: protobuf stops at 2 GiB
# The most memory the example and check batches (2 and 3 images) may take in one layer's
# input and output together, float32: the export traces and runs the model at the spec's
# fixed input size, so a 3×65536×65536 input would need 100+ GB. Refused before allocation.
EXAMPLE_BYTES = 4 << 30
EXAMPLE_BATCH, CHECK_BATCH = 2, 3  # batch 2: torch.export specialises a batch of 1
INPUT, OUTPUT = ONNX_INPUT, ONNX_OUTPUT


class OnnxExportError(Exception):
    """Export failed, or the exported file does not compute what the torch module does."""


def _quiet(message: str) -> None:
    """The default `note`: library code says nothing; the CLI passes a printer."""


def export_onnx(net: Network, path: Path, init: str | None = None, opset: int = 18,
                note: Callable[[str], None] = _quiet) -> list[Path]:
    """Export `net` (weights from `init` if given) to `path`; returns the files written.

    The file is checked with onnxruntime before this returns; `note` receives the
    initialiser's messages (re-initialised heads).
    """
    from archc.backends.module import to_module

    check_example_fits(net)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = to_module(net)
    if init is not None:
        from archc.backends.weights import init_model

        for message in init_model(model, net, init):
            note(message)
    model.eval()
    external = _weight_bytes(model) > _EXTERNAL_BYTES
    example = torch.randn(EXAMPLE_BATCH, *net.input_shape)
    export_model(model, example, path, opset, external)
    verify(path, model, torch.randn(CHECK_BATCH, *net.input_shape))
    data = Path(f"{path}.data")
    return [path, data] if external and data.exists() else [path]


def check_example_fits(net: Network) -> None:
    """`OnnxExportError` unless the batches the export traces and checks fit EXAMPLE_BYTES
    in every layer (input and output together, float32): said before anything is
    allocated."""
    from archc.compiler.graph import layers

    def numel(shape) -> int:
        return int(np.prod(shape, dtype=object)) if shape else 0

    widest = max([numel(net.input_shape)] + [numel(layer.in_shape) + numel(layer.out_shape)
                                             for layer in layers(net.root)])
    needed = CHECK_BATCH * 4 * widest
    if needed > EXAMPLE_BYTES:
        shape = "×".join(map(str, net.input_shape))
        raise OnnxExportError(
            f"ONNX export at input {shape} would need {needed / 2**30:,.0f} GiB for one layer of "
            f"its {CHECK_BATCH}-image check batch (at most {EXAMPLE_BYTES >> 30} GiB); ONNX "
            "models have a fixed image size: export at a smaller --input")


def _weight_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def export_model(model: nn.Module, example: torch.Tensor, path: Path, opset: int,
                 external: bool = False) -> None:
    """torch.onnx.export with a dynamic batch: dynamo first, TorchScript as the fallback."""
    failure: Exception | None = None
    if opset >= DYNAMO_MIN_OPSET:
        try:
            _export_dynamo(model, example, path, opset, external)
            return
        except Exception as exc:  # noqa: BLE001 - any dynamo failure: try the other exporter
            failure = exc
    try:
        _export_torchscript(model, example, path, opset)
    except Exception as exc:  # report both exporters' reasons together
        first = f"dynamo exporter: {failure}; " if failure else ""
        raise OnnxExportError(f"ONNX export to {path} failed ({first}TorchScript exporter: "
                              f"{exc})") from exc


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, opset: int,
                   external: bool) -> None:
    batch = torch.export.Dim("batch")
    torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=opset,
                      input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=({0: batch},),
                      external_data=external, report=False, verbose=False)


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # we fall back to it on purpose
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    """The logits onnxruntime computes for `x` from the file at `path`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: x.numpy()})[0]


def max_error(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference, relative to the logits' scale (at least 1)."""
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    return float(np.abs(got - want).max(initial=0.0)) / scale


def verify(path: Path, model: nn.Module, x: torch.Tensor) -> None:
    """Raise `OnnxExportError` unless onnxruntime and torch agree on `x` within TOLERANCE."""
    with torch.no_grad():
        want = model(x).numpy()
    got = run_onnx(path, x)
    if got.shape != want.shape:
        raise OnnxExportError(f"{path}: onnxruntime gives logits of shape {got.shape}, torch "
                              f"{want.shape}")
    error = max_error(got, want)
    if not error <= TOLERANCE:
        raise OnnxExportError(f"{path}: onnxruntime and torch disagree by {error:.2e} (relative "
                              f"to the logits' scale; tolerance {TOLERANCE:.0e}); the file "
                              "does not compute the network")
