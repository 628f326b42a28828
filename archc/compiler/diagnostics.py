"""Diagnostics as data: every problem archc finds is a `Diagnostic`, rendered later.

The checker collects them all rather than stopping at the first (mypy/rustc style);
`render.py` turns them into text with the source line and a caret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from archc.compiler.ir import Span

Severity = Literal["error", "warning", "note"]

# One code per kind of problem, so tests and users can refer to them.
CODES: dict[str, str] = {
    "E001": "syntax error",
    "E002": "file not readable",
    "E003": "import cycle",
    "E004": "invalid YAML spec",
    "E101": "unknown name",
    "E102": "unknown parameter",
    "E103": "wrong number of arguments",
    "E104": "wrong argument type",
    "E105": "missing argument",
    "E106": "duplicate definition",
    "E107": "block recursion",
    "E108": "no network in spec",
    "E109": "invalid expression",
    "E110": "unknown table variant",
    "E111": "duplicate name",
    "E120": "unknown tensor",
    "E121": "unused tensor",
    "E122": "tensor cycle",
    "E201": "channel mismatch",
    "E202": "spatial size below 1",
    "E203": "shape mismatch",
    "E204": "invalid layer arguments",
    "E205": "over a limit",
    "W301": "rows or columns dropped",
    "W302": "unused block",
    "W303": "unused parameter",
    "W304": "no input declared",
}


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a spec, located by `span`."""

    code: str
    severity: Severity
    span: Span
    message: str
    hint: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        """True for errors, which make `archc check` exit 1."""
        return self.severity == "error"


@dataclass
class Diagnostics:
    """A collector that stages append to; duplicates (same code and span) are kept once."""

    items: list[Diagnostic] = field(default_factory=list)
    # (code, where) -> the diagnostics recorded there: `add` looks up instead of scanning
    # `items`, which made a spec with n problems cost n² (2,000 unknown names took 10 s)
    _at: dict[tuple, list[Diagnostic]] = field(default_factory=dict, repr=False)
    _indexed: int = field(default=0, repr=False)  # how many of `items` `_at` covers

    def error(
        self,
        code: str,
        span: Span,
        message: str,
        hint: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        """Record an error."""
        self.add(Diagnostic(code, "error", span, message, hint, tuple(notes)))

    def warning(
        self,
        code: str,
        span: Span,
        message: str,
        hint: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        """Record a warning."""
        self.add(Diagnostic(code, "warning", span, message, hint, tuple(notes)))

    def add(self, diag: Diagnostic) -> None:
        """Record a diagnostic unless the same one is already there."""
        # A block used many times reports each problem at its definition once; warnings
        # about the same spot differ only in sizes, so one of them is enough.
        if self._indexed != len(self.items):  # a stage changed `items` directly
            self._reindex()
        same_place = self._at.setdefault(_place(diag), [])
        if not any(d.message == diag.message or diag.severity == "warning" for d in same_place):
            self.items.append(diag)
            same_place.append(diag)
            self._indexed += 1

    def _reindex(self) -> None:
        self._at.clear()
        for d in self.items:
            self._at.setdefault(_place(d), []).append(d)
        self._indexed = len(self.items)

    @property
    def errors(self) -> list[Diagnostic]:
        """The errors, in the order they were found."""
        return [d for d in self.items if d.is_error]

    @property
    def has_errors(self) -> bool:
        """True when at least one error was recorded."""
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        """Diagnostics ordered by file and position, errors before warnings at a tie."""
        return sorted(
            self.items,
            key=lambda d: (d.span.file, d.span.line, d.span.column, d.severity != "error"),
        )


def _place(diag: Diagnostic) -> tuple:
    """A diagnostic's code and exact span, as a hashable key."""
    s = diag.span
    return (diag.code, s.file, s.line, s.column, s.end_line, s.end_column)


def did_you_mean(name: str, candidates: list[str] | set[str]) -> str | None:
    """A 'did you mean ...?' hint for a misspelt name, or None when nothing is close."""
    import difflib

    pool = sorted(set(candidates))
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    if not close:
        return None
    names = [f"`{lowered[c]}`" for c in close]
    return "did you mean " + " or ".join(names) + "?"
