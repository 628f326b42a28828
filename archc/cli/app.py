"""The typer app of `archc`: the root options, the compiler's verbs (one module each in this
package) and the runtime's verbs, which arrive through the `archc.commands` entry point so
that `archc` never imports `runtime` by name.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Optional

import typer

import archc.cli
from archc.cli.common import fail, version

# The modules of this package that are not verbs; every other module is one verb, named by
# its module (`import_` is `archc import`).
NOT_VERBS = frozenset({"app", "common", "main", "options"})

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="archc: compile CNN architecture specs (.arch or YAML) into checked, "
    "drawn and trainable PyTorch networks.",
)


def verb_modules() -> dict[str, str]:
    """The compiler's verbs: verb name → module name, read off this package's files."""
    names = (m.name for m in pkgutil.iter_modules(archc.cli.__path__))
    return {name.rstrip("_"): name for name in sorted(names) if name not in NOT_VERBS}


def _print_version(value: bool) -> None:
    if value:
        print(version())
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", help="Print archc's version and exit", is_eager=True,
        callback=_print_version,
    ),
    limit: Optional[list[str]] = typer.Option(
        None, "--limit", metavar="NAME=VALUE",
        help="Raise a size limit for any verb, e.g. --limit layers=1000000 (also "
        "ARCHC_LIMITS; see the Limits section of docs/language.md)",
    ),
) -> None:
    """archc: compile CNN architecture specs (.arch or YAML) into checked, drawn and trainable
    PyTorch networks."""
    # archc.cli.main takes every --limit off the command line before typer parses it (so it
    # works after the verb too); this option is here to be listed in --help


def _register_verbs() -> None:
    for module in verb_modules().values():
        importlib.import_module(f"archc.cli.{module}").register(app)


def _load_plugins(argv: list[str]) -> None:
    """Add the runtime's verbs (train, data, ...) unless the verb is a compiler one."""
    verb = next((a for a in argv if not a.startswith("-")), None)
    if verb in verb_modules():
        return
    from importlib.metadata import entry_points

    unavailable: list[tuple[str, ImportError]] = []
    for ep in entry_points(group="archc.commands"):
        try:
            register = ep.load()
        except ImportError as exc:  # e.g. torch missing: the compiler verbs still work
            unavailable.append((ep.name, exc))
            continue
        register(app)
    if unavailable and verb is not None and verb not in _command_names():
        plugin, exc = unavailable[0]
        fail(
            f"`archc {verb}` is not available: the {plugin} plugin that provides the training "
            f"verbs needs the `torch` extra (module `{exc.name or exc}` is missing)",
            "install it with: pip install 'archc[torch]'  (or: make setup)",
        )
    for plugin, exc in unavailable:
        typer.echo(f"warning: archc plugin {plugin} unavailable: {exc}", err=True)


def _command_names() -> set[str]:
    """The verbs registered on the app so far (commands and command groups)."""
    names = {c.name or c.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
             for c in app.registered_commands}
    return names | {g.name for g in app.registered_groups if g.name}


_register_verbs()


def main(argv: list[str] | None = None) -> None:
    """The full command line (archc.cli.main sends everything but a plain check here)."""
    args = sys.argv[1:] if argv is None else argv
    _load_plugins(args)
    app(args=args, prog_name="archc")
