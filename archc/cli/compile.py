"""`archc compile`: the layer table; with -o, standalone PyTorch source or ONNX."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from archc.cli.common import checked, fail, refuse_clobber, writing
from archc.cli.options import InputOption, NetworkOption, SetOption, VariantOption

if TYPE_CHECKING:
    from archc.backends.onnx import OnnxCheck


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
    """Print the layer table (the folded one with --for inference); with -o also write
    standalone PyTorch source, or ONNX checked against onnxruntime."""
    from archc.backends.summary import format_table, summarize

    if emit not in ("python", "onnx"):
        fail(f"--emit must be python or onnx, got `{emit}`")
    if purpose not in ("training", "inference"):
        fail(f"--for must be training or inference, got `{purpose}`")
    net = checked(spec, sets, variant, network, input)
    shown, what_changed = net, None
    if purpose == "inference":
        from archc.passes import fold_for_inference

        plan = fold_for_inference(net)
        shown, what_changed = plan.network, plan.describe()
    typer.echo(format_table(summarize(shown), shown))
    if what_changed:
        typer.echo(f"for inference: {what_changed}")
    if output is None:
        if init:
            fail("--init needs -o: it initialises the exported weights")
        return
    from archc.backends.onnx import OnnxExportError
    from archc.backends.weights import InitError

    targets = _targets(output, emit, init)
    refuse_clobber(targets, force)
    checks: list[OnnxCheck] = []
    with writing(targets, force) as staged:
        temporary = staged.temporary(output)
        try:
            _write_compiled(net, temporary, emit, init, purpose == "inference", checks.append)
        except (InitError, OnnxExportError) as exc:  # named by the user's path, not the staged one
            fail(str(exc).replace(str(temporary), str(output)))
    for path in staged.written:
        typer.echo(f"wrote {path}")
    for result in checks:
        typer.echo(result.describe())


def _write_compiled(net, output: Path, emit: str, init: str | None, inference: bool,
                    checked) -> None:
    """`compile -o`: write the Python source or the ONNX file (to `output`, the staged twin
    of the user's path), passing `checked` how closely onnxruntime's run of an ONNX file
    matched torch's. Raises InitError or OnnxExportError."""
    if emit == "python" and inference:
        from archc.passes.export import write_inference_python

        write_inference_python(net, output, init=init, note=note)
    elif emit == "python":
        from archc.backends.pysource import write_python

        write_python(net, output, init=init, note=note)
    elif inference:
        from archc.passes.export import export_inference_onnx

        export_inference_onnx(net, output, init=init, note=note, checked=checked)
    else:
        from archc.backends.onnx import export_onnx

        export_onnx(net, output, init=init, note=note, checked=checked)


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
