"""The folded network written out: ONNX whose graph has no batch norm, dropout or aux head."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from archc.compiler.graph import Network

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def _quiet(message: str) -> None:
    """The default `note`: library code says nothing; the CLI passes a printer."""


def export_folded_onnx(net: Network, model: nn.Module, path: Path, opset: int = 18) -> list[Path]:
    """Export the folded form of `model` (an instance of `net`) to `path`, then check the file
    with onnxruntime against `model` itself in eval mode: the check covers the folding too."""
    import torch

    from archc.backends.onnx import (
        CHECK_BATCH,
        EXAMPLE_BATCH,
        check_example_fits,
        export_model,
        verify,
    )
    from archc.passes.fold import inference_module

    check_example_fits(net)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    folded = inference_module(net, model).cpu()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(EXAMPLE_BATCH, *net.input_shape, generator=generator)
    export_model(folded, example, path, opset)
    verify(path, model.cpu(), torch.randn(CHECK_BATCH, *net.input_shape, generator=generator))
    return [path]


def export_inference_onnx(net: Network, path: Path, init: str | None = None, opset: int = 18,
                          note: Callable[[str], None] = _quiet) -> list[Path]:
    """`archc compile --for inference --emit onnx`: the folded graph, weights from `init`."""
    from archc.backends.module import to_module
    from archc.backends.onnx import check_example_fits

    check_example_fits(net)  # before the model's weights are allocated
    model = to_module(net)
    if init is not None:
        from archc.backends.weights import init_model

        for message in init_model(model, net, init):
            note(message)
    return export_folded_onnx(net, model, path, opset)


def inference_python_source(net: Network) -> str:
    """Standalone PyTorch source of the folded eval-mode network."""
    from archc.backends.pysource import python_source
    from archc.passes.fold import fold_for_inference

    return python_source(fold_for_inference(net).network, inference=True)


def write_inference_python(net: Network, path: Path, init: str | None = None,
                           note: Callable[[str], None] = _quiet) -> list[Path]:
    """`archc compile --for inference -o m.py`: the folded network's source, and with `init`
    its folded weights as `<stem>.safetensors`."""
    from archc.backends.pysource import write_python
    from archc.passes.fold import fold_for_inference, inference_module

    model = None
    if init is not None:  # before writing anything: bad weights leave no half-written output
        from archc.backends.module import to_module
        from archc.backends.weights import init_model

        model = to_module(net)
        for message in init_model(model, net, init):
            note(message)
        model = inference_module(net, model.eval())
    return write_python(fold_for_inference(net).network, path, model=model, inference=True)
