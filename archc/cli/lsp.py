"""`archc lsp`: the language server over stdin/stdout."""

from __future__ import annotations

import typer


def lsp() -> None:
    """The language server, over stdin/stdout: point your editor's LSP client at `archc lsp`
    (docs/editors.md)."""
    from archc.tools.lsp import serve

    serve()


def register(app: typer.Typer) -> None:
    """Add `archc lsp` to the typer app."""
    app.command(name="lsp")(lsp)
