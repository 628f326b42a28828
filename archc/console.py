"""The typer-free part of the command line, and the console-script entry point.

`archc check` is the verb people run in editors and hooks, so it gets a fast path: a plain
check goes straight to `check_report` without importing typer (about 35 ms of a ~0.25 s
cold start). Anything else, `--help` and malformed options included, goes to the full
typer app in archc/cli.py, which calls the same `check_report`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .diagnostics import Diagnostic


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    # Must precede torch's import: OpenMP's default busy-waiting threads starve each other
    # on small or shared CPUs (a training step measured 20-40x slower on 2 loaded cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if args == ["--version"]:
            print(version())
            return
        if args[:1] == ["check"]:
            options = _plain_check(args[1:])
            if options is not None:
                raise SystemExit(check_report(**options))
        from .cli import main as full_cli

        full_cli(args)
    except BrokenPipeError:  # `archc ... | head` closed the pipe: stop quietly, like cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None


def version() -> str:
    """`archc 0.1.0 (Python 3.11.7)`: what `archc --version` prints."""
    from . import __version__

    return f"archc {__version__} (Python {sys.version.split()[0]})"


def _plain_check(args: list[str]) -> dict[str, Any] | None:
    """The options of a well-formed `archc check` line, or None to let typer handle it."""
    if any(a in ("-h", "--help") for a in args):
        return None
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("specs", type=Path, nargs="+")
    parser.add_argument("--set", "-s", dest="sets", action="append")
    parser.add_argument("--variant", "-V")
    parser.add_argument("--network", "-n")
    parser.add_argument("--input")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--json", dest="as_json", action="store_true")
    try:
        opts, unknown = parser.parse_known_args(args)
    except (argparse.ArgumentError, SystemExit):
        return None
    return None if unknown else vars(opts)


def parse_sets(values: list[str] | None) -> dict[str, Any]:
    """`--set k=v` options as a dict of typed values."""
    from .expressions import parse_value

    out: dict[str, Any] = {}
    for item in values or []:
        if "=" not in item:
            fail(f"--set expects NAME=VALUE, got `{item}`")
        key, _, value = item.partition("=")
        out[key.strip()] = parse_value(value)
    return out


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """`3x64x64` as (3, 64, 64)."""
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.lower().replace("×", "x").split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        fail(f"--input expects C×H×W such as 3x224x224, got `{text}`")
    return dims


def fail(message: str, hint: str | None = None, code: int = 2) -> None:
    """Print an error in the diagnostics style and exit."""
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"  = hint: {hint}", file=sys.stderr)
    raise SystemExit(code)


def print_diagnostics(diags: list[Diagnostic], sources: dict[str, str]) -> None:
    """Rendered diagnostics on stderr, coloured when it is a terminal."""
    from .render import render_all

    if diags:
        print(render_all(diags, sources, color=sys.stderr.isatty()), file=sys.stderr)


def _count(n: int) -> str:
    return f"{n:,}"


def _macs(n: int) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}MACs"
    return f"{n} MACs"


def check_report(
    specs: list[Path],
    sets: list[str] | None,
    variant: str | None,
    network: str | None,
    input: str | None,
    explain: bool,
    as_json: bool,
) -> int:
    """Run `archc check` on each spec and print the reports; returns the exit status (1 if
    any spec has errors). The options apply to every spec; with --json, several specs give a
    list of the objects one spec gives."""
    from .api import check as run_check

    for spec in specs:
        if not spec.exists():
            fail(f"spec file `{spec}` not found", "give the path of a .arch or .yaml file")
    params, shape = parse_sets(sets), parse_shape(input)
    results = [
        (spec, run_check(spec, params, network=network, variant=variant, input_shape=shape))
        for spec in specs
    ]
    if as_json:
        data = [_check_json(spec, result) for spec, result in results]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    else:
        for _, result in results:
            _print_report(result, explain)
    return 0 if all(result.ok for _, result in results) else 1


def _print_report(result, explain: bool) -> None:
    """One spec's report: its diagnostics, then OK with shapes, counts and input sizes."""
    from .layers import fmt
    from .shapes import input_sizes

    print_diagnostics(result.diagnostics, result.program.sources)
    if not result.ok:
        return
    net = result.network
    sizes = input_sizes(net)
    aux = f" (+{len(net.aux_outputs)} auxiliary outputs in training)" if net.aux_outputs else ""
    print(f"OK {net.name}: {fmt(net.input_shape)} → {fmt(net.output_shape)}{aux}")
    print(f"   parameters: {_count(net.n_params)}   compute: {_macs(net.macs)}")
    print(f"   valid input sizes: {sizes.describe()}")
    if explain:
        print("   inferred:")
        for span, text in net.explain:
            print(f"     {span.file}:{span.line}:{span.column}: {text}")


def _check_json(spec: Path, result) -> dict:
    from .shapes import input_sizes

    data: dict[str, Any] = {
        "spec": str(spec),
        "ok": result.ok,
        "diagnostics": [
            {
                "code": d.code,
                "severity": d.severity,
                "message": d.message,
                "hint": d.hint,
                "notes": list(d.notes),
                "file": d.span.file,
                "line": d.span.line,
                "column": d.span.column,
            }
            for d in result.diagnostics
        ],
    }
    if result.ok:
        net = result.network
        sizes = input_sizes(net)
        data.update(
            network=net.name,
            input=list(net.input_shape),
            output=list(net.output_shape),
            parameters=net.n_params,
            macs=net.macs,
            input_sizes={"smallest": sizes.smallest, "step": sizes.step, "largest": sizes.largest},
        )
    return data
