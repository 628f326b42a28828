"""`archc compile`: the layer table; with -o, standalone PyTorch source or ONNX."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from archc.cli.common import checked, fail, refuse_clobber
from archc.cli.options import InputOption, NetworkOption, SetOption, VariantOption
from archc.compiler.outputs import mark


def compile_(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    sets: Optional[list[str]] = SetOption,
    variant: Optional[str] = VariantOption,
    network: Optional[str] = NetworkOption,
    input: Optional[str] = InputOption,
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Write the standalone module here"
    ),
    emit: str = typer.Option("python", "--emit", help="python or onnx (with -o)"),
    init: Optional[str] = typer.Option(
        None, "--init", help="torchvision, or a .safetensors/.pt file"
    ),
    purpose: str = typer.Option(
        "training", "--for",
        help="training, or inference: batch norms folded, dropout and aux heads dropped",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace OUTPUT even if archc did not write it or a run owns it"),
) -> None:
    """Print the layer table; with -o also write standalone PyTorch source (or ONNX)."""
    from archc.backends.summary import format_table, summarize

    net = checked(spec, sets, variant, network, input)
    typer.echo(format_table(summarize(net), net))
    if output is None:
        if init:
            fail("--init needs -o: it initialises the exported weights")
        return
    if emit not in ("python", "onnx"):
        fail(f"--emit must be python or onnx, got `{emit}`")
    if purpose not in ("training", "inference"):
        fail(f"--for must be training or inference, got `{purpose}`")
    refuse_clobber(_targets(output, emit, init), force)
    from archc.backends.onnx import OnnxExportError
    from archc.backends.weights import InitError

    try:
        if emit == "python" and purpose == "inference":
            from archc.passes.export import write_inference_python

            written = write_inference_python(net, output, init=init, note=note)
        elif emit == "python":
            from archc.backends.pysource import write_python

            written = write_python(net, output, init=init, note=note)
        elif purpose == "inference":
            from archc.passes.export import export_inference_onnx

            written = export_inference_onnx(net, output, init=init, note=note)
        else:
            from archc.backends.onnx import export_onnx

            written = export_onnx(net, output, init=init, note=note)
    except (InitError, OnnxExportError, OSError) as exc:
        fail(str(exc))
    for path in written:
        mark(path)
        typer.echo(f"wrote {path}")


def _targets(output: Path, emit: str, init: str | None) -> list[Path]:
    """Every file `compile -o OUTPUT` may write: the weights beside a python module with
    --init, the external data of a large ONNX model."""
    if emit == "onnx":
        return [output, Path(f"{output}.data")]
    return [output, output.with_suffix(".safetensors")] if init else [output]


def note(message: str) -> None:
    """A backend's note (a re-initialised head) for the user, on stderr."""
    print(message, file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add `archc compile` to the typer app."""
    app.command(name="compile")(compile_)
