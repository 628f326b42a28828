"""Importers: front ends that turn existing networks into archc's IR.

Each importer reads one foreign format (a Caffe prototxt, a Darknet cfg, a PyTorch
module) and produces the same `ir.SpecFile` that `archc/compiler/parse.py` produces for a .arch
file. None of them writes text: `archc/compiler/unparse.py` turns the IR into the spec a person
would have written. Problems in the imported file are `Diagnostic`s located in it.

The Caffe and Darknet importers never import torch; only the PyTorch importer does.
"""

from __future__ import annotations

from pathlib import Path

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics
from archc.importers.registry import IMPORTERS, described, for_file

__all__ = ["IMPORTERS", "check_imported", "import_source"]


def import_source(
    source: str,
    diags: Diagnostics,
    *,
    args: dict | None = None,
    weights: bool = False,
    input_shape: tuple[int, int, int] | None = None,
) -> ir.SpecFile | None:
    """The IR of `source`, chosen by its form; None (with diagnostics) when it cannot be read.

    `source` is a file that an importer of `IMPORTERS` reads (by suffix) or a Python callable
    (`torchvision:resnet50`, `pkg.module:factory`) that returns an `nn.Module`; `args`
    are that callable's keyword arguments and `input_shape` (C, H, W) its input (found by
    probing without it). `weights` asks the file importers to keep what the weights
    conversion needs (see `archc.importers.weights`).
    """
    importer = for_file(source)
    if importer is not None:
        return importer.load()(source, diags)
    if ":" in source and not Path(source).exists():
        return _torch_module(source, diags, args, input_shape)
    diags.error(
        "E001",
        ir.Span(file=source),
        f"cannot tell what kind of network `{source}` is",
        f"give {described()}",
    )
    return None


def _torch_module(
    source: str, diags: Diagnostics, args: dict | None, input_shape: tuple | None
) -> ir.SpecFile | None:
    """Import a PyTorch module through `archc.importers.torch_module` (it imports torch)."""
    try:
        from archc.importers.torch_module import load
    except ImportError as error:
        if error.name != f"{__name__}.torch_module":
            raise  # a bug or a missing dependency inside the importer: keep its traceback
        diags.error(
            "E204",
            ir.Span(file=source),
            "importing PyTorch modules is not available in this build of archc",
            "import a Caffe `.prototxt` or a Darknet `.cfg` instead",
        )
        return None
    return load(source, diags, args=args, input_shape=input_shape)


def check_imported(spec: ir.SpecFile, sources: dict[str, str], diags: Diagnostics):
    """Resolve and shape-check imported IR under the limits `archc check` enforces (layers,
    depth, input size, parameters); its diagnostics point into the imported file.

    The network (None on errors) is what the weights conversion walks: every layer keeps
    the span of the foreign layer it came from.
    """
    from archc.compiler.checker import within_param_limit
    from archc.compiler.resolve import Resolver
    from archc.compiler.sources import Program, define_statement

    program = Program(root=spec.path, files={spec.path: spec}, sources=dict(sources))
    for stmt in spec.statements:
        define_statement(program, stmt, diags)
    network = Resolver(program, diags).network(None, {}, None)
    if network is not None:
        network = within_param_limit(network, diags)
    return None if diags.has_errors else network
