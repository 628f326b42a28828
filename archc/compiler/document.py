"""A small document-layout model: the lines, indentation, width and blank lines that
archc's text writers share.

Four writers lay out text: the unparser (.arch from the IR), `archc fmt` (.arch from the
token stream), the Python-source backend, and the importers' layout (which joins the
unparser's lines into units). Each builds a list of lines at a depth and joins them into
a file with the helpers here, so the indentation unit, the width limit, greedy joining
within the width, aligned trailing comments and the blank lines between sections are
decided once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

INDENT = "    "  # one level of indentation, in .arch and in Python alike
WIDTH = 100  # the line length every writer keeps to (ruff's E501 at 100 for Python)


def indent(depth: int) -> str:
    """The indentation of a line `depth` levels deep."""
    return INDENT * depth


def indentation(line: str) -> str:
    """The leading spaces of a line."""
    return line[: len(line) - len(line.lstrip(" "))]


def fits(line: str, width: int = WIDTH) -> bool:
    """True when the line keeps within `width` columns."""
    return len(line) <= width


@dataclass
class Line:
    """A line of code with, maybe, a comment trailing it (aligned by `render`). A line whose
    code is empty is a comment on its own line, or a blank line."""

    code: str
    comment: str | None = None


def render(lines: Sequence[Line], gap: int = 2) -> str:
    """Lines as text: trailing blank lines dropped, one newline at the end, the trailing
    comments of a run of consecutive commented lines aligned `gap` columns after the
    longest code of the run."""
    lines = list(lines)
    while lines and not lines[-1].code and not lines[-1].comment:
        lines.pop()
    out: list[str] = []
    run: list[Line] = []

    def close_run() -> None:
        width = max((len(r.code) for r in run), default=0) + gap
        out.extend(r.code.ljust(width) + (r.comment or "") for r in run)  # all have one
        run.clear()

    for line in lines:
        if line.comment is not None and line.code:
            run.append(line)
            continue
        close_run()
        out.append(line.code if line.comment is None else line.comment)
    close_run()
    return "\n".join(out) + "\n"


def text(lines: Iterable[str]) -> str:
    """Lines as the text of a file: one newline after each."""
    return "".join(line + "\n" for line in lines)


def sections(parts: Iterable[str | Sequence[str]], blank: int = 1) -> str:
    """Sections (each a text or a list of lines) joined with `blank` blank lines between
    them, and one newline at the end."""
    texts = [p if isinstance(p, str) else "\n".join(p) for p in parts]
    return ("\n" * (blank + 1)).join(texts) + "\n"


def join_within(pieces: Iterable[str], first: str, rest: str, sep: str = "  ",
                end: str = "", width: int = WIDTH) -> list[str]:
    """Pieces joined with `sep` into as few lines as keep within `width`: the first line
    starts with `first`, the next ones with `rest`, and every line but the last ends with
    `end` (a continuation such as ` \\`, counted in the width). A piece longer than a line
    stands on a line of its own."""
    lines: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(sep) + len(piece) + len(end) > width:
            lines.append(current + end)
            current = rest + piece
        else:
            current = current + sep + piece if current else first + piece
    if current:
        lines.append(current)
    return lines
