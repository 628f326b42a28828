"""The console-script entry point, and the typer-free path of a plain `archc check`.

`archc check` is the verb people run in editors and hooks, so it gets a fast path: a plain
check goes straight to `check_report` without importing typer (about 35 ms of a ~0.25 s
cold start). Anything else, `--help` and malformed options included, goes to the full
typer app in archc/cli/app.py, which calls the same `check_report`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from archc.cli.common import (
    INTERNAL_ERROR,
    TORCH_EXTRA,
    apply_limit_options,
    fail,
    report_internal_error,
    version,
)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    # Must precede torch's import: OpenMP's default busy-waiting threads starve each other
    # on small or shared CPUs (a training step measured 20-40x slower on 2 loaded cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        args = apply_limit_options(args)
        from archc.compiler.limits import run_deep

        run_deep(lambda: _dispatch(args, own_command_line=argv is None))
    except BrokenPipeError:  # `archc ... | head` closed the pipe: stop quietly, like cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
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


def _dispatch(args: list[str], own_command_line: bool) -> None:
    """Run the verb of `args`: a plain `archc check` without typer, anything else with it."""
    if args == ["--version"]:
        print(version())
        return
    if args[:1] == ["check"]:
        options = _plain_check(args[1:])
        if options is not None:
            from archc.cli.check import check_report

            code = check_report(**options)
            if own_command_line:  # the process's own command line, not a caller's list
                _exit_without_teardown(code)
            raise SystemExit(code)
    from archc.cli.app import main as full_cli

    full_cli(args)


def _exit_without_teardown(code: int) -> None:
    """End the process now, as mypy does: a plain check has written everything it writes,
    and freeing every IR node, lark table and module one by one at interpreter exit took
    about 20 ms of a 0.25 s cold check. The streams are flushed first (a reader that has
    gone shows up here, as a BrokenPipeError for `main` to handle)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)



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


