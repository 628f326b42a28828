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
from .resolve import SetOptionError


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    # Must precede torch's import: OpenMP's default busy-waiting threads starve each other
    # on small or shared CPUs (a training step measured 20-40x slower on 2 loaded cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        args = apply_limit_options(args)
        if args == ["--version"]:
            print(version())
            return
        if args[:1] == ["check"]:
            options = _plain_check(args[1:])
            if options is not None:
                code = check_report(**options)
                if argv is None:  # the process's own command line, not a caller's list
                    _exit_without_teardown(code)
                raise SystemExit(code)
        from .cli import main as full_cli

        full_cli(args)
    except BrokenPipeError:  # `archc ... | head` closed the pipe: stop quietly, like cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except SetOptionError as exc:  # any verb's --set: a usage error, not the spec's
        fail(str(exc))
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in TORCH_EXTRA.values():
            report_internal_error(args)
            raise SystemExit(INTERNAL_ERROR) from None
        verb = next((a for a in args if not a.startswith("-")), "")
        fail(
            f"`archc {verb}` needs the `torch` extra: module `{exc.name}` is not installed",
            "install it with: pip install 'archc[torch]'  (or: make setup)",
        )
    except Exception:  # anything else is a bug in archc: keep its traceback, say so
        report_internal_error(args)
        raise SystemExit(INTERNAL_ERROR) from None


def _exit_without_teardown(code: int) -> None:
    """End the process now, as mypy does: a plain check has written everything it writes,
    and freeing every IR node, lark table and module one by one at interpreter exit took
    about 20 ms of a 0.25 s cold check. The streams are flushed first (a reader that has
    gone shows up here, as a BrokenPipeError for `main` to handle)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# The `torch` extra of pyproject.toml: distribution name → the module it installs. A verb
# that needs one of these on an install without the extra says which extra to install.
TORCH_EXTRA = {
    "torch": "torch",
    "torchvision": "torchvision",
    "safetensors": "safetensors",
    "numpy": "numpy",
    "pillow": "PIL",
    "matplotlib": "matplotlib",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript",
}


# The exit status of an internal error, as rustc's for an ICE: distinct from 1 (the input
# has errors) and 2 (bad usage), so scripts and the fuzz tests can tell a bug apart.
INTERNAL_ERROR = 101


def report_internal_error(args: list[str]) -> None:
    """Print the exception being handled as a bug in archc: one line that says so and how to
    report it, then the full traceback (like rustc's 'internal compiler error')."""
    import traceback

    print(
        "error: internal error: archc crashed; this is a bug in archc, not in your input",
        file=sys.stderr,
    )
    print(
        "  = note: please report it to the archc maintainers with the command, the spec "
        "files and the traceback below",
        file=sys.stderr,
    )
    print(f"  = note: {version()}; command: archc {' '.join(args)}", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)


def apply_limit_options(args: list[str]) -> list[str]:
    """Take every `--limit NAME=VALUE` (or `--limit=NAME=VALUE`) out of `args`, anywhere on
    the line, and export them in ARCHC_LIMITS, where every stage (and any worker process)
    reads them. A malformed one is a usage error."""
    from . import limits

    rest: list[str] = []
    given: list[str] = []
    items = iter(args)
    for arg in items:
        if arg == "--limit":
            value = next(items, None)
            if value is None:
                fail("--limit expects NAME=VALUE, e.g. --limit layers=1000000")
            given.append(value)
        elif arg.startswith("--limit="):
            given.append(arg.removeprefix("--limit="))
        else:
            rest.append(arg)
    settings = ",".join(filter(None, [os.environ.get(limits.ENV, ""), *given]))
    try:
        limits.parse(settings)
    except limits.LimitSettingError as exc:
        fail(str(exc), "see the Limits section of docs/language.md")
    if given:
        os.environ[limits.ENV] = settings
    return rest


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
    from . import limits

    if max(dims) > limits.get("input_size"):
        fail(f"--input {text} has a side over the limit of {limits.get('input_size'):,}",
             limits.hint("input_size"))
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
    results = []
    for spec in specs:
        try:
            result = run_check(spec, params, network=network, variant=variant, input_shape=shape)
        except SetOptionError as exc:
            fail(str(exc))
        except Exception as exc:  # a bug: report it, and still report the other specs
            report_internal_error(["check", str(spec)])
            result = exc
        results.append((spec, result))
    if as_json:
        data = [_check_json(spec, result) for spec, result in results]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    else:
        several = len(results) > 1
        for spec, result in results:
            if not isinstance(result, Exception):
                _print_report(result, explain, f"{spec}: " if several else "")
    if any(isinstance(result, Exception) for _, result in results):
        return INTERNAL_ERROR
    return 0 if all(result.ok for _, result in results) else 1


def _print_report(result, explain: bool, prefix: str = "") -> None:
    """One spec's report: its diagnostics, then OK with shapes, counts and input sizes. When
    several specs are checked, `prefix` (`path: `) starts the line that says how each went."""
    from .layers import fmt
    from .shapes import input_sizes

    print_diagnostics(result.diagnostics, result.program.sources)
    if not result.ok:
        if prefix:
            errors = sum(d.is_error for d in result.diagnostics)
            print(f"{prefix}FAILED ({errors} error{'s' if errors != 1 else ''})")
        return
    net = result.network
    sizes = input_sizes(net)
    aux = f" (+{len(net.aux_outputs)} auxiliary outputs in training)" if net.aux_outputs else ""
    print(f"{prefix}OK {net.name}: {fmt(net.input_shape)} → {fmt(net.output_shape)}{aux}")
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
    from .shapes import input_sizes

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
