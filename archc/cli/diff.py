"""`archc diff A B`: the structural difference of two networks, with shape, parameter and
MAC deltas; A and B are spec files, PATH:VARIANT or zoo names."""

from __future__ import annotations

import json
import sys
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
from archc.cli.options import InputOption, SetOption


def diff(
    a: str = typer.Argument(..., help="A spec, PATH:VARIANT (specs/vgg.arch:A) or a zoo name"),
    b: str = typer.Argument(..., help="The network to compare it with, written the same way"),
    sets: Optional[list[str]] = SetOption,
    input: Optional[str] = InputOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable rows and totals"),
    graph: Optional[Path] = typer.Option(
        None, "--graph", help="Draw both networks, differences coloured, to out.svg, .png, "
        ".pdf or .dot"
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace GRAPH even if archc did not write it or a run owns it"),
) -> None:
    """Structural diff of two networks: added, removed and changed layers with their shape,
    parameter and MAC deltas."""
    raise typer.Exit(compare(a, b, sets, input, as_json, graph, force))


def compare(a: str, b: str, sets: list[str] | None, input_shape: str | None, as_json: bool,
            graph: Path | None, force: bool = False) -> int:
    """Print the comparison; the exit status is diff's and `git diff --exit-code`'s: 0 when
    the networks are the same, 1 when they differ, 2 when either side cannot be compared (a
    bad path, option or spec)."""
    from archc.tools.diff import (
        GRAPH_SUFFIXES,
        DiffInputError,
        Side,
        draw,
        format_text,
        load_side,
        to_json,
    )
    from archc.tools.diff import diff as run_diff

    params, shape = parse_sets(sets), parse_shape(input_shape)
    if graph is not None and graph.suffix.lower() not in GRAPH_SUFFIXES:
        fail(f"--graph writes .svg, .png, .pdf or .dot, not `{graph.suffix or graph.name}`",
             "use --graph NAME.svg (or .png, .pdf, .dot)")
    if graph is not None:
        refuse_clobber([graph], force)
    sides = []
    for text in (a, b):
        try:
            result, label = load_side(text, params, shape)
        except DiffInputError as exc:
            fail(str(exc), "give a .arch or .yaml path, PATH:VARIANT, or a zoo network's name")
        print_diagnostics([x for x in result.diagnostics if x.is_error], result.program.sources)
        if not result.ok:
            return 2
        sides.append(Side(label, result.network))
    d = run_diff(*sides)
    if as_json:
        print(json.dumps(to_json(d), indent=2))
    else:
        print(format_text(d))
    if graph is not None:
        from archc.backends.dot import DotFailed, DotNotFound

        try:
            with writing([graph], force) as staged:
                draw(d, staged.temporary(graph))
        except DotNotFound as exc:
            fail(str(exc), "install graphviz (apt-get install graphviz), or write --graph "
                 "NAME.dot")
        except DotFailed as exc:
            fail(str(exc), "check graphviz's install (`dot -V`), or write --graph NAME.dot")
        except OSError as exc:
            fail(f"cannot write `{graph}`: {exc.strerror or exc}")
        print(f"wrote {graph}", file=sys.stderr if as_json else sys.stdout)
    return 0 if d.same else 1


def register(app: typer.Typer) -> None:
    """Add `archc diff` to the typer app."""
    app.command(name="diff")(diff)
