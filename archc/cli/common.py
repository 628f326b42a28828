"""What every verb of the command line shares: errors as one line, options parsed into
values, diagnostics printed, the internal-error report, and the version.

Typer-free, so that the fast path of `archc check` can use it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from archc.compiler.diagnostics import Diagnostic
    from archc.compiler.graph import Network
    from archc.compiler.outputs import Staged


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
    "tensorboard": "tensorboard",
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
    from archc.compiler import limits

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
    from archc import __version__

    return f"archc {__version__} (Python {sys.version.split()[0]})"


def parse_sets(values: list[str] | None) -> dict[str, Any]:
    """`--set k=v` options as a dict of typed values."""
    from archc.compiler.expressions import parse_value

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
    from archc.compiler import limits

    if max(dims) > limits.get("input_size"):
        fail(f"--input {text} has a side over the limit of {limits.get('input_size'):,}",
             limits.hint("input_size"))
    return dims


def fail(message: str, hint: str | None = None, code: int = 2) -> NoReturn:
    """Print an error in the diagnostics style and exit."""
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"  = hint: {hint}", file=sys.stderr)
    raise SystemExit(code)


def print_diagnostics(diags: list[Diagnostic], sources: dict[str, str]) -> None:
    """Rendered diagnostics on stderr, coloured when it is a terminal."""
    from archc.compiler.render import render_all

    if diags:
        print(render_all(diags, sources, color=sys.stderr.isatty()), file=sys.stderr)



def checked(
    spec: Path,
    sets: list[str] | None,
    variant: str | None,
    network: str | None,
    input_shape: str | None,
    show_warnings: bool = True,
) -> Network:
    """Check a spec for a verb that needs a valid network; exits 1 with diagnostics if not."""
    from archc.api import check

    require_spec(spec)
    result = check(
        spec,
        parse_sets(sets),
        network=network,
        variant=variant,
        input_shape=parse_shape(input_shape),
    )
    shown = result.diagnostics if show_warnings else [d for d in result.diagnostics if d.is_error]
    print_diagnostics(shown, result.program.sources)
    if not result.ok or result.network is None:
        raise SystemExit(1)
    return result.network


def refuse_clobber(paths, force: bool) -> None:
    """Exit with one line, before any work, when an output would replace a run folder's own
    file or a file archc did not write (unless --force)."""
    from archc.compiler.outputs import OutputRefused, check_outputs

    try:
        check_outputs(paths, force=force)
    except OutputRefused as exc:
        fail(str(exc))


@contextlib.contextmanager
def writing(paths, force: bool) -> Iterator[Staged]:
    """`staged_outputs` for a verb: the outputs appear whole, over nothing they may not
    replace, or not at all; a refusal, or a write that fails (a folder that cannot be made,
    a full disk), is one line and leaves the old files as they were."""
    from archc.compiler.outputs import OutputRefused, staged_outputs

    paths = [Path(p) for p in paths]
    try:
        with staged_outputs(paths, force=force) as staged:
            yield staged
    except OutputRefused as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write `{paths[0]}`: {exc.strerror or exc}")


def write_output(path: Path, data: str | bytes, force: bool) -> None:
    """Write one output file the user named, through `writing`."""
    with writing([path], force) as staged:
        temporary = staged.temporary(path)
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def require_spec(spec: Path) -> None:
    """Fail in one line unless `spec` is a file or a zoo network's name (`resnet50`)."""
    if spec.exists():
        return
    from archc.zoo import list_models, model_entry

    name = str(spec)
    if name in ("", ".") or "/" in name or spec.suffix:  # a path, not a name
        fail(f"spec file `{spec}` not found", "give the path of a .arch or .yaml file")
    if model_entry(name) is None:
        from archc.compiler.diagnostics import did_you_mean

        fail(f"`{spec}` is neither a spec file nor a zoo network",
             did_you_mean(name, list_models()) or "give the path of a .arch or .yaml file, or "
             "a zoo network's name (python -c 'import archc; print(archc.list_models())')")
