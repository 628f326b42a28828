"""`archc summary`: per layer, the output shape, parameters, MACs, memory and receptive field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from archc.cli.common import checked
from archc.cli.options import InputOption, NetworkOption, SetOption, VariantOption


def summary(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    sets: Optional[list[str]] = SetOption,
    variant: Optional[str] = VariantOption,
    network: Optional[str] = NetworkOption,
    input: Optional[str] = InputOption,
    as_json: bool = typer.Option(False, "--json", help="The same data as JSON"),
) -> None:
    """Per layer: output shape, parameters, MACs, activation memory, receptive field, stride."""
    from archc.backends.summary import format_table, summarize, to_json

    net = checked(spec, sets, variant, network, input, show_warnings=not as_json)
    rows = summarize(net)
    if as_json:
        typer.echo(json.dumps(to_json(rows, net), indent=2))
    else:
        typer.echo(format_table(rows, net))


def register(app: typer.Typer) -> None:
    """Add `archc summary` to the typer app."""
    app.command(name="summary")(summary)
