"""`archc graph`: the network drawn by graphviz, or a table spec's configuration table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archc.cli.common import (
    checked,
    fail,
    parse_sets,
    print_diagnostics,
    refuse_clobber,
    writing,
)
from archc.cli.options import InputOption, NetworkOption, SetOption, VariantOption


def graph(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="out.svg, .png, .pdf or .dot"
    ),
    depth: Optional[int] = typer.Option(
        None,
        "--depth",
        help="Expand blocks down to this depth (default: 2, or 1 if that is "
        "too many boxes to read); a run of equal blocks there is drawn once, × N",
    ),
    table: bool = typer.Option(
        False, "--table", help="Draw a multi-variant spec's configuration table"
    ),
    sets: Optional[list[str]] = SetOption,
    variant: Optional[str] = VariantOption,
    network: Optional[str] = NetworkOption,
    input: Optional[str] = InputOption,
    force: bool = typer.Option(
        False, "--force", help="Replace OUTPUT even if archc did not write it or a run owns it"),
) -> None:
    """Draw the network with graphviz: shapes on edges, blocks as clusters, a legend."""
    from archc.backends.dot import check_drawing_path, table_dot, to_dot

    if depth is not None and depth < 0:
        fail(f"--depth must be 0 or more, got {depth}", "0 draws each top-level block as one box")
    output = output or Path(spec.stem + ("_table" if table else "") + ".svg")
    try:
        check_drawing_path(output)
    except ValueError as exc:  # an output suffix graphviz cannot write
        fail(str(exc), "use -o NAME.svg, .png, .pdf or .dot")
    refuse_clobber([output], force)
    if table:
        from archc.api import check as run_check

        result = run_check(spec, parse_sets(sets), network=network)
        if result.program.root_file is None:
            print_diagnostics(result.diagnostics, result.program.sources)
            raise typer.Exit(1)
        try:
            source = table_dot(result.program)
        except ValueError as exc:
            fail(str(exc), "the --table view needs a spec with a `table` definition")
    else:
        net = checked(spec, sets, variant, network, input)
        source = to_dot(net, depth=depth)
    with writing([output], force) as staged:
        _render(source, staged.temporary(output), output)
    typer.echo(f"wrote {output}")


def _render(source: str, temporary: Path, output: Path) -> None:
    """Draw `source` into `temporary` (the staged twin of `output`); what cannot be drawn
    is one line, and then nothing replaces `output`."""
    from archc.backends.dot import DotFailed, DotNotFound, DrawingTooLarge, render

    try:
        render(source, temporary)
    except DotNotFound as exc:
        fail(str(exc), "install graphviz (apt-get install graphviz), or write -o NAME.dot")
    except DotFailed as exc:
        fail(str(exc), "check graphviz's install (`dot -V`), or write the source with -o NAME.dot")
    except DrawingTooLarge as exc:
        fail(str(exc), "draw fewer levels with --depth, or write the source with -o NAME.dot")
    except OSError as exc:  # -o in a folder that cannot be written
        fail(f"cannot write `{output}`: {exc.strerror or exc}")


def register(app: typer.Typer) -> None:
    """Add `archc graph` to the typer app."""
    app.command(name="graph")(graph)
