"""`archc import SOURCE -o net.arch`: a Caffe prototxt, a Darknet cfg or a PyTorch module
as a spec a person would have written, checked right away.

The spec text comes from the unparser (`archc/compiler/unparse.py`) over the importer's IR; the
IR is checked with the file's own spans, so a problem points at the imported file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archc.cli.common import (
    fail,
    parse_sets,
    parse_shape,
    print_diagnostics,
    refuse_clobber,
    writing,
)


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
    force: bool = typer.Option(
        False, "--force", help="Replace OUTPUT even if archc did not write it"),
) -> None:
    """Import a network as a compact .arch spec (blocks, repeats, paper notation)."""
    from archc.compiler.checker import collector_paused
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
    if output is not None:
        refuse_clobber([output, output.with_suffix(".safetensors")] if weights else [output],
                       force)
    diags = Diagnostics()
    with collector_paused():  # as in `check`: its full passes made 20,000 layers superlinear
        spec = import_source(source, diags, args=parse_sets(args), weights=weights,
                             input_shape=parse_shape(input))
        sources = _source_texts(source) if is_file else {}
        network = None if spec is None else check_imported(spec, sources, diags)
    print_diagnostics(diags.sorted(), sources)
    if network is None:  # nothing is written: a refused import leaves the user's files as they were
        if spec is not None:
            typer.echo("the imported spec has errors (above); nothing was written", err=True)
        raise typer.Exit(1)
    assert spec is not None  # the network was checked from it
    text = layout.spec_text(spec)
    if output is None:
        typer.echo(text, nl=False)
        return
    summary = (f"{network.name}: {'×'.join(map(str, network.input_shape))} → "
               f"{'×'.join(map(str, network.output_shape or ()))}, "
               f"{network.n_params:,} parameters")
    converted = _write_all(source, network, output, text, weights, force)
    typer.echo(f"wrote {output} ({text.count(chr(10))} lines; {summary})")
    if converted:
        typer.echo(converted)


def _source_texts(source: str) -> dict[str, str]:
    """The imported file's text for rendering diagnostics ({} when it is not text to show:
    that is already a diagnostic)."""
    from archc.compiler.diagnostics import Diagnostics
    from archc.importers.common import read_text

    text = read_text(source, Diagnostics())
    return {} if text is None else {source: text}


def _write_all(source: str, network, output: Path, text: str, weights: bool,
               force: bool) -> str | None:
    """Write the spec (and with --weights the converted weights) only once everything has
    succeeded (`writing`: both go to temporary files and are renamed into place at the end),
    so a failed conversion leaves an existing OUTPUT untouched. Returns the line that
    reports the weights (None without --weights)."""
    target = output.with_suffix(".safetensors")
    with writing([output, target] if weights else [output], force) as staged:
        staged.temporary(output).write_text(text, encoding="utf-8")
        if weights:
            found, count = _convert_weights(source, network, staged.temporary(target))
    return f"wrote {target} ({count} tensors from {found})" if weights else None


def _convert_weights(source: str, network, target: Path) -> tuple[Path, int]:
    """Convert the weights file beside `source` into `target` (safetensors); a damaged or
    mismatched weights file is one line, and `target`'s final name is not touched."""
    from archc.importers.weights import WeightsError, convert

    try:
        return convert(source, network, target)
    except WeightsError as exc:
        fail(str(exc), exc.hint)


def register(app: typer.Typer) -> None:
    """Add `archc import` to the typer app."""
    app.command(name="import")(import_)
