"""`archc schema`: the JSON Schema of YAML specs, generated from the IR and the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archc.cli.common import refuse_clobber, write_output


def schema(
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Write here, e.g. archc.schema.json"),
    force: bool = typer.Option(
        False, "--force", help="Replace OUTPUT even if archc did not write it or a run owns it"),
) -> None:
    """The JSON Schema of YAML specs, generated from the IR and the layer registry."""
    from archc.tools.schema import write

    if output is not None:
        refuse_clobber([output], force)
    text = write(None)
    if output is not None:
        write_output(output, text, force)
    if output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add `archc schema` to the typer app."""
    app.command(name="schema")(schema)
