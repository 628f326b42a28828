"""`archc verify`: a spec against torchvision's or timm's own model, or a whole index."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NoReturn, Optional

import typer

from archc.cli.common import fail, parse_sets, parse_shape


def verify(
    spec: Optional[Path] = typer.Argument(None, help="A .arch or .yaml spec"),
    against: Optional[str] = typer.Option(
        None,
        "--against",
        help="LIBRARY:NAME, e.g. torchvision:densenet121 or timm:repvgg_a0; "
        "with --zoo, the library whose index to run (default torchvision)",
    ),
    sets: Optional[list[str]] = typer.Option(
        None, "--set", "-s", help="Override a spec parameter: --set growth=48"
    ),
    variant: Optional[str] = typer.Option(None, "--variant", "-V", help="A table configuration"),
    network: Optional[str] = typer.Option(None, "--network", "-n", help="Which network"),
    input_shape: Optional[str] = typer.Option(None, "--input", help="e.g. 3x64x64"),
    zoo: bool = typer.Option(
        False, "--zoo", help="Verify every entry of the zoo (zoo.yaml, or timm/index.yaml)"
    ),
    only: Optional[str] = typer.Option(
        None, "--only", help="With --zoo: comma-separated builder names (or name prefixes)"
    ),
) -> None:
    """Compare a spec with torchvision's or timm's model: parameters, strict weight loading,
    outputs."""
    from archc.tools.verify import ORACLES, Entry, describe
    from archc.tools.verify import verify as run_verify

    library, _, name = (against or "").partition(":")
    if zoo:
        if library and library not in ORACLES:
            _unknown_library(library)
        raise typer.Exit(_run_zoo(only, library or "torchvision"))
    if spec is None or not name:
        fail(
            "verify needs a spec and --against torchvision:NAME (or timm:NAME), or --zoo",
            "for example: archc verify specs/densenet.arch --against torchvision:densenet121",
        )
    if library not in ORACLES:
        _unknown_library(library)
    if not spec.exists():
        fail(f"spec file `{spec}` not found", "give the path of a .arch or .yaml file")
    entry = Entry(
        name=name,
        oracle=library,
        spec=spec.resolve(),
        network=network,
        variant=variant,
        sets=parse_sets(sets),
        input=parse_shape(input_shape),
    )
    report = run_verify(entry)
    typer.echo(describe(report))
    raise typer.Exit(0 if report.exact else 1)


def _unknown_library(library: str) -> NoReturn:
    """Exit with the one-line error for a library that is no oracle."""
    from archc.tools.verify import ORACLES

    fail(
        f"`{library}` is not a library verify knows",
        f"--against takes LIBRARY:NAME with LIBRARY one of: {', '.join(ORACLES)}",
    )


def _run_zoo(only: str | None, library: str) -> int:
    """Verify every entry of the library's index (or those `--only` names), printing the
    Markdown table."""
    from archc.tools.verify import describe, oracle_for, table_head, table_row
    from archc.tools.verify import verify as run_verify
    from archc.zoo import load_zoo

    entries = list(load_zoo(oracle_for(library).index, library).values())
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        entries = [e for e in entries if any(e.name.startswith(w) for w in wanted)]
    typer.echo(table_head(library))
    exact = 0
    total = time.perf_counter()
    for entry in entries:
        report = run_verify(entry)
        exact += report.exact
        typer.echo(table_row(report))
        if not report.exact:
            typer.echo("\n".join("    " + ln for ln in describe(report).splitlines()), err=True)
    typer.echo(f"\n{exact}/{len(entries)} exact in {time.perf_counter() - total:.0f} s")
    return 0 if exact == len(entries) else 1


def register(app: typer.Typer) -> None:
    """Add `archc verify` to the typer app."""
    app.command(name="verify")(verify)
