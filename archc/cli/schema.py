"""`archc schema`: the JSON Schema of YAML specs, generated from the IR and the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archc.cli.common import fail


def schema(
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Write here, e.g. archc.schema.json"),
) -> None:
    """The JSON Schema of YAML specs, generated from the IR and the layer registry."""
    from archc.tools.schema import write

    try:
        text = write(output)
    except OSError as exc:
        fail(f"cannot write `{output}`: {exc.strerror}")
    if output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add `archc schema` to the typer app."""
    app.command(name="schema")(schema)
