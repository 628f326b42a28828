"""The folded network written out: ONNX whose graph has no batch norm, dropout or aux head."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from archc.compiler.graph import Network

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def export_folded_onnx(net: Network, model: nn.Module, path: Path, opset: int = 18) -> list[Path]:
    """Export the folded form of `model` (an instance of `net`) to `path`, then check the file
    with onnxruntime against `model` itself in eval mode: the check covers the folding too."""
    import torch

    from archc.backends.onnx import export_model, verify
    from archc.passes.fold import inference_module

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    folded = inference_module(net, model).cpu()
    generator = torch.Generator().manual_seed(0)
    # batch 2: torch.export specialises a batch of 1
    example = torch.randn(2, *net.input_shape, generator=generator)
    export_model(folded, example, path, opset)
    verify(path, model.cpu(), torch.randn(3, *net.input_shape, generator=generator))
    return [path]


def export_inference_onnx(net: Network, path: Path, init: str | None = None, opset: int = 18,
                          note: Callable[[str], None] = _stderr) -> list[Path]:
    """`archc compile --for inference --emit onnx`: the folded graph, weights from `init`."""
    from archc.backends.module import to_module

    model = to_module(net)
    if init is not None:
        from archc.backends.weights import init_model

        for message in init_model(model, net, init):
            note(message)
    return export_folded_onnx(net, model, path, opset)
