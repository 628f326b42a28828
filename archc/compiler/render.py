"""Rendering diagnostics as text, rustc/Elm style: location, source line, caret, hint."""

from __future__ import annotations

from archc.compiler.diagnostics import Diagnostic

_COLORS = {"error": "\033[1;31m", "warning": "\033[1;33m", "note": "\033[1;36m"}
_BOLD, _BLUE, _RESET = "\033[1m", "\033[1;34m", "\033[0m"


def render(diag: Diagnostic, sources: dict[str, str], color: bool = False,
           lines: dict[str, list[str]] | None = None) -> str:
    """One diagnostic: header, `--> file:line:col`, the source line with carets, hint, notes.
    `lines` caches each file's lines across calls (render_all passes one)."""
    paint = (lambda code, text: f"{code}{text}{_RESET}") if color else (lambda code, text: text)
    span = diag.span
    head = paint(_COLORS[diag.severity], f"{diag.severity}[{diag.code}]")
    out = [f"{head}{paint(_BOLD, ': ' + diag.message)}"]
    gutter = " " * len(str(span.line))
    if span.line < 1:  # a problem with the file as a whole: no line to quote
        out.append(f"{gutter}{paint(_BLUE, '-->')} {span.file}")
    else:
        out.append(f"{gutter}{paint(_BLUE, '-->')} {span.file}:{span.line}:{span.column}")
    raw = _source_line(sources, span.file, span.line, {} if lines is None else lines)
    if raw is not None:
        # columns count characters; a tab shows as the 4 spaces the indenter counts it as
        # (not as a tab stop), so the caret and the indentation read as archc reads them
        line = raw.replace("\t", _TAB)
        start = max(span.column - 1, 0)
        end = span.end_column - 1 if span.end_line == span.line else len(raw)
        end = max(min(end, len(raw) + 1), start + 1)
        offset = _display_width(raw[:start])
        width = max(1, _display_width(raw[:end]) - offset)
        caret = " " * offset + "^" * width
        out.append(f"{gutter} {paint(_BLUE, '|')}")
        out.append(f"{paint(_BLUE, str(span.line))} {paint(_BLUE, '|')} {line}")
        out.append(f"{gutter} {paint(_BLUE, '|')} {paint(_COLORS[diag.severity], caret)}")
    if diag.hint:
        out.append(f"{gutter} {paint(_BLUE, '=')} hint: {diag.hint}")
    for note in diag.notes:
        out.append(f"{gutter} {paint(_BLUE, '=')} note: {note}")
    return "\n".join(out)


def render_all(diags: list[Diagnostic], sources: dict[str, str], color: bool = False) -> str:
    """Every diagnostic, separated by blank lines, followed by a count line."""
    lines: dict[str, list[str]] = {}  # split each file once, not once per diagnostic
    blocks = [render(d, sources, color, lines) for d in diags]
    errors = sum(d.is_error for d in diags)
    warnings = sum(d.severity == "warning" for d in diags)
    if errors or warnings:
        blocks.append(_summary(errors, warnings))
    return "\n\n".join(blocks)


def _summary(errors: int, warnings: int) -> str:
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)


def _source_line(sources: dict[str, str], file: str, line: int,
                 cache: dict[str, list[str]]) -> str | None:
    if file not in cache:
        text = sources.get(file)
        if text is None:
            return None
        cache[file] = text.splitlines()
    lines = cache[file]
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return None


_TAB = " " * 4


def _display_width(prefix: str) -> int:
    return len(prefix.replace("\t", _TAB))


class SpecError(Exception):
    """Raised by the Python API when a spec has errors; `str()` is the rendered report."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = diagnostics
        self.sources = sources or {}
        super().__init__(self.render())

    def render(self) -> str:
        """The diagnostics as text, with source lines and carets."""
        return render_all(self.diagnostics, self.sources, color=False)
