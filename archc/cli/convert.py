"""`archc convert`: translate a spec between the .arch language and YAML (one IR)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archc.cli.common import fail, print_diagnostics, refuse_clobber, write_output


def convert(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    to: str = typer.Option(..., "--to", help="yaml or arch"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here"),
    force: bool = typer.Option(
        False, "--force", help="Replace OUTPUT even if archc did not write it or a run owns it"),
) -> None:
    """Translate a spec between the .arch language and YAML (same IR both ways; comments
    and the spelling of layer names kept)."""
    from archc.compiler.diagnostics import Diagnostics
    from archc.compiler.sources import SpecReadError, parse_source, read_spec

    if to not in ("yaml", "arch"):
        fail(f"--to must be yaml or arch, got `{to}`")
    if output:
        refuse_clobber([output], force)
    try:
        text = read_spec(spec)
    except SpecReadError as exc:
        fail(str(exc), exc.hint)
    diags = Diagnostics()
    tree = parse_source(text, str(spec), diags)
    print_diagnostics(diags.sorted(), {str(spec): text})
    if tree is None or diags.has_errors:
        raise typer.Exit(1)
    from archc.tools.convert import read_with_notes

    tree, notes = read_with_notes(text, str(spec))
    if to == "yaml":
        from archc.compiler.yamlspec import dump_yaml

        out = dump_yaml(tree, notes)
    else:
        from archc.compiler.unparse import UnparseError, unparse

        try:
            out = unparse(tree, notes)
        except UnparseError as exc:
            fail(
                f"this spec has no .arch form: {exc}",
                "keep it in YAML, or name the group "
                "that holds the merge so it can be written as an indented block",
                code=1,
            )
    if output:
        write_output(output, out, force)
    else:
        typer.echo(out, nl=False)


def register(app: typer.Typer) -> None:
    """Add `archc convert` to the typer app."""
    app.command(name="convert")(convert)
