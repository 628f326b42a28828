"""The typer options that several verbs share, spelled once."""

from __future__ import annotations

import typer

SetOption = typer.Option(None, "--set", "-s", help="Override a spec parameter: --set num_classes=2")
VariantOption = typer.Option(None, "--variant", "-V", help="Configuration of a table, e.g. D")
NetworkOption = typer.Option(
    None, "--network", "-n", help="Network to use when the file has several"
)
InputOption = typer.Option(None, "--input", help="Override the input shape, e.g. 3x64x64")
