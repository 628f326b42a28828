"""`archc check`: parse and shape-check specs; OK with shapes and counts, or every error.

Typer-free but for `register`: a plain check reaches `check_report` from `archc.cli.main`
without importing typer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from archc.cli.common import (
    INTERNAL_ERROR,
    parse_sets,
    parse_shape,
    print_diagnostics,
    report_internal_error,
    require_spec,
)


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
    from archc.api import check as run_check

    for spec in specs:
        require_spec(spec)
    params, shape = parse_sets(sets), parse_shape(input)
    results = []
    for spec in specs:
        try:
            result = run_check(spec, params, network=network, variant=variant, input_shape=shape)
        except Exception as exc:  # a bug: report it, and still report the other specs
            report_internal_error(["check", str(spec)])
            result = exc
        results.append((spec, result))
    if as_json:
        data = [_check_json(spec, result) for spec, result in results]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    else:
        for _, result in results:
            if not isinstance(result, Exception):
                _print_report(result, explain)
    if any(isinstance(result, Exception) for _, result in results):
        return INTERNAL_ERROR
    return 0 if all(result.ok for _, result in results) else 1


def _print_report(result, explain: bool) -> None:
    """One spec's report: its diagnostics, then OK with shapes, counts and input sizes."""
    from archc.compiler.shapes import input_sizes
    from archc.layers import fmt

    print_diagnostics(result.diagnostics, result.program.sources)
    if not result.ok:
        return
    net = result.network
    sizes = input_sizes(net)
    aux = f" (+{len(net.aux_outputs)} auxiliary outputs in training)" if net.aux_outputs else ""
    print(f"OK {net.name}: {fmt(net.input_shape)} → {fmt(net.output_shape)}{aux}")
    compute = _macs(net.inference_macs)
    if net.macs != net.inference_macs:  # GoogLeNet's aux heads add 0.56% in training
        compute += f" at inference, {_macs(net.macs)} in training (with the auxiliary heads)"
    print(f"   parameters: {_count(net.n_params)}   compute: {compute}")
    print(f"   valid input sizes: {sizes.describe()}")
    if explain:
        print("   inferred:")
        for span, text in net.explain:
            print(f"     {span.file}:{span.line}:{span.column}: {text}")


def _check_json(spec: Path, result) -> dict:
    from archc.compiler.shapes import input_sizes

    if isinstance(result, Exception):
        return {"spec": str(spec), "ok": False, "internal_error": repr(result)}
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
            macs=net.inference_macs,
            macs_training=net.macs,
            input_sizes={"smallest": sizes.smallest, "step": sizes.step, "largest": sizes.largest},
        )
    return data


def register(app) -> None:
    """Add `archc check` to the typer app."""
    import typer

    from archc.cli.options import InputOption, NetworkOption, SetOption, VariantOption

    @app.command(name="check")
    def check(
        specs: list[Path] = typer.Argument(..., help="One or more .arch or .yaml specs"),
        sets: Optional[list[str]] = SetOption,
        variant: Optional[str] = VariantOption,
        network: Optional[str] = NetworkOption,
        input: Optional[str] = InputOption,
        explain: bool = typer.Option(False, "--explain", help="Say what was inferred"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable result"),
    ) -> None:
        """Parse and shape-check specs; print OK with shapes, or located errors (exit 1)."""
        raise typer.Exit(check_report(specs, sets, variant, network, input, explain, as_json))
