"""`archc fmt`: rewrite .arch files in the one canonical layout, or check that they are."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from archc.cli.common import fail, print_diagnostics


def fmt(
    specs: list[Path] = typer.Argument(..., help="The .arch files to format (- for stdin)"),
    check: bool = typer.Option(False, "--check", help="Change nothing; exit 1 if any file "
                               "would change, and list them"),
    diff: bool = typer.Option(False, "--diff", help="Print the changes as a diff instead"),
) -> None:
    """Rewrite .arch files in the one canonical layout (comments and the network kept)."""
    raise typer.Exit(format_files(specs, check=check, show_diff=diff))


def format_files(specs: list[Path], check: bool = False, show_diff: bool = False) -> int:
    """Rewrite files in place, or with --check/--diff only report; the exit code.

    0 when every file is formatted (or was rewritten), 1 when --check finds a file to
    change or a spec has errors (its diagnostics are printed and it is left untouched).
    """
    from archc.compiler.outputs import rewrite_in_place
    from archc.compiler.sources import SpecReadError
    from archc.tools.fmt import FormatChangedMeaning, format_file, unified_diff

    if [str(s) for s in specs] == ["-"]:
        return _stdin_to_stdout()
    for spec in specs:
        if not spec.is_file():
            fail(f"spec file `{spec}` not found", "give the path of a .arch file")
        if spec.suffix in (".yaml", ".yml"):
            fail(f"`{spec}` is YAML; archc fmt formats .arch files")
    status, changed, failed = 0, 0, 0
    for spec in specs:
        try:
            result = format_file(spec)
        except (SpecReadError, FormatChangedMeaning) as exc:  # nothing written: one line
            print(f"error: {exc}", file=sys.stderr)
            status, failed = 1, failed + 1
            continue
        if result.refused is not None:
            print_diagnostics(result.refused.diagnostics, {str(spec): result.refused.text})
            print(f"error: {spec} not formatted: it has errors", file=sys.stderr)
            status, failed = 1, failed + 1
            continue
        if not result.changed or result.new is None:
            continue
        changed += 1
        if show_diff:
            sys.stdout.write(unified_diff(result.old, result.new, str(spec)))
        if check:
            print(f"would reformat {spec}", file=sys.stderr)
            status = 1
        elif not show_diff:
            try:  # atomic: an interrupted write leaves the spec as it was
                rewrite_in_place(spec, result.new)
            except OSError as exc:
                print(f"error: cannot write `{spec}`: {exc.strerror or exc}", file=sys.stderr)
                status, failed, changed = 1, failed + 1, changed - 1
                continue
            print(f"reformatted {spec}", file=sys.stderr)
    verb = "would be reformatted" if check or show_diff else "reformatted"
    left = f", {failed} not formatted" if failed else ""
    print(f"{changed} file(s) {verb}, {len(specs) - changed - failed} unchanged{left}",
          file=sys.stderr)
    return status


def _stdin_to_stdout() -> int:
    """`archc fmt -`: an editor's filter, source in on stdin, formatted source out; read as
    files are (bounded by `file_bytes`, UTF-8), and given back unchanged when refused."""
    from archc.compiler import limits
    from archc.compiler.sources import SpecReadError, decode_text
    from archc.tools.fmt import FormatChangedMeaning, FormatRefused, format_text, oversized

    most = limits.get("file_bytes")
    data = sys.stdin.buffer.read(most + 1)
    try:
        if len(data) > most:
            raise FormatRefused(oversized("<stdin>"), "")
        sys.stdout.write(format_text(decode_text(data, "<stdin>"), "<stdin>"))
    except FormatRefused as refused:
        print_diagnostics(refused.diagnostics, {"<stdin>": refused.text})
        _give_back(data)
        return 1
    except (SpecReadError, FormatChangedMeaning) as exc:
        print(f"error: {exc}", file=sys.stderr)
        _give_back(data)
        return 1
    return 0


def _give_back(data: bytes) -> None:
    """Write what was read of stdin, then the rest of it, unchanged: an editor's filter
    must give its text back (streamed: an oversized text is never held whole)."""
    import shutil

    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout.buffer.flush()


def register(app: typer.Typer) -> None:
    """Add `archc fmt` to the typer app."""
    app.command(name="fmt")(fmt)
