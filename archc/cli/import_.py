"""`archc import SOURCE -o net.arch`: a Caffe prototxt, a Darknet cfg or a PyTorch module
as a spec a person would have written, checked right away.

The spec text comes from the unparser (`archc/compiler/unparse.py`) over the importer's IR; the
IR is checked with the file's own spans, so a problem points at the imported file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archc.cli.common import fail, parse_sets, parse_shape, print_diagnostics, write_text


def import_(
    source: str = typer.Argument(
        ..., help="deploy.prototxt, net.cfg, torchvision:NAME or module:callable"
    ),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the spec here"),
    args: Optional[list[str]] = typer.Option(
        None, "--arg", help="An argument of the PyTorch callable: --arg num_classes=10"
    ),
    input: Optional[str] = typer.Option(
        None, "--input",
        help="The PyTorch module's input as CxHxW, e.g. 3x32x32 (default: the first of "
        "3x224x224, 3x32x32, 1x28x28, 3x299x299, 3x64x64 it runs on); a .prototxt or .cfg "
        "gives its own",
    ),
    weights: bool = typer.Option(
        False, "--weights",
        help="Convert the weights beside the file (.caffemodel, .weights) to OUTPUT.safetensors",
    ),
) -> None:
    """Import a network as a compact .arch spec (blocks, repeats, paper notation)."""
    from archc.compiler.diagnostics import Diagnostics
    from archc.importers import check_imported, import_source, layout

    if weights and output is None:
        fail("--weights needs -o: the weights go beside the spec")
    from archc.importers.registry import described, file_suffixes, for_file

    is_file = for_file(source) is not None
    if is_file and not Path(source).is_file():
        fail(f"`{source}` not found", f"give the path of a {' or '.join(file_suffixes())} file")
    if not is_file and ":" not in source:
        fail(f"cannot tell what kind of network `{source}` is",
             f"give {described()}".replace("`", ""))
    if is_file and input is not None:
        fail(f"--input is for PyTorch modules; `{source}` declares its own input",
             "drop --input, or change the input in the file")
    diags = Diagnostics()
    spec = import_source(source, diags, args=parse_sets(args), weights=weights,
                         input_shape=parse_shape(input))
    sources = {source: Path(source).read_text(encoding="utf-8")} if is_file else {}
    if spec is None:
        print_diagnostics(diags.sorted(), sources)
        raise typer.Exit(1)
    network = check_imported(spec, sources, diags)
    print_diagnostics(diags.sorted(), sources)
    text = layout.spec_text(spec)
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_text(output, text)
    if network is None:
        typer.echo("the imported spec has errors (above)", err=True)
        raise typer.Exit(1)
    summary = (f"{network.name}: {'×'.join(map(str, network.input_shape))} → "
               f"{'×'.join(map(str, network.output_shape or ()))}, "
               f"{network.n_params:,} parameters")
    if output is not None:
        typer.echo(f"wrote {output} ({text.count(chr(10))} lines; {summary})")
    if weights:
        _convert_weights(source, network, output)


def _convert_weights(source: str, network, output: Path) -> None:
    """Convert the weights file beside `source` to safetensors beside `output`."""
    from archc.importers.weights import WeightsError, convert

    target = output.with_suffix(".safetensors")
    try:
        found, count = convert(source, network, target)
    except WeightsError as exc:
        fail(str(exc), exc.hint)
    typer.echo(f"wrote {target} ({count} tensors from {found})")


def register(app: typer.Typer) -> None:
    """Add `archc import` to the typer app."""
    app.command(name="import")(import_)
