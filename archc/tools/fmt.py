"""`archc fmt`: one canonical layout for .arch files, as gofmt and black give for theirs.

The formatter works on the token stream the parser itself sees (lark's contextual lexer
and the indentation post-lexer: archc/compiler/tokens.py), not on the IR: it keeps every
line break the author chose, every comment and every token's text, and only rewrites the
whitespace between tokens. So constructs added to the grammar later are formatted without code here.

The layout:

- indentation is 4 spaces per level; a line continued inside `( )` or `[ ]` lines up
  after its bracket, or, when the bracket ends its line, is indented 4 more than that
  line (the closing bracket then goes back to it); a line continued with `\\` is indented
  4 more than the line it continues;
- one space between tokens, none inside brackets, before `,` `)` `]` `:` or around `=`
  in arguments; spaces around binary operators and around `=` outside brackets;
- between the items of a sequence, one space, or two where the author left two or more
  (the conv–bn–relu grouping convention of docs/language.md);
- a table's variant rows line up after their labels;
- a comment on its own line takes the indentation of the body it stands in; trailing
  comments stand two spaces after the code, aligned in runs of consecutive lines;
- no trailing whitespace, at most one blank line in a row, none at the start or end of
  the file, one newline at the end.

Formatting never changes the network: the IR of the output is compared with the IR of
the input as `archc check` reads it (`ir.structure`), and a difference raises
`FormatChangedMeaning` (a bug in fmt, but never a changed file: nothing is written). A spec
whose parse reports errors, or that is over check's `file_bytes` limit, is refused
(`FormatRefused`) and left as it is. Files are read as `check` reads them
(`sources.read_spec`: UTF-8, `\\r\\n` as a new line, a NUL or a lone carriage return
refused with its line and column).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from archc.compiler import document, ir, tokens
from archc.compiler.diagnostics import Diagnostic, Diagnostics
from archc.compiler.document import Line, render
from archc.compiler.tokens import CLOSE, LAYOUT, OPEN, OPERATORS, Token

INDENT = len(document.INDENT)  # columns
# an operator after these is unary: `(-x`, `, -x`, `= -x`, `not -x`, `if -x`
UNARY_BEFORE = OPEN | OPERATORS | {"COMMA", "EQUAL", "COLON", "NOT", "AND", "OR", "IF", "ELSE",
                                   "IN"}
CALLEES = {"NAME", "WORD"}  # `conv(`, `max(`, `network n(`: no space before the bracket
# `-> name` and `@name` are items too: `conv3-64 -> a  relu`
ITEM_END = {"WORD", "RPAR", "RSQB", "REPEAT", "TABLE_REF", "NAME", "REF"}
ITEM_START = {"WORD", "LABEL", "LABEL_END", "LSQB", "TABLE_REF", "TAP", "ARROW", "REF"}


class FormatRefused(tokens.SpecRefused):
    """The spec has errors: it is not formatted, and these diagnostics say why."""


class FormatChangedMeaning(Exception):
    """The formatted text would not give the same network (or would not parse): a bug in
    archc fmt, reported instead of writing the text. `str()` is one line."""


FormatterBug = FormatChangedMeaning  # its name before issue 24


def format_text(text: str, path: str = "<spec>") -> str:
    """The canonical layout of .arch source; raises `FormatRefused` if it does not parse or
    is over the `file_bytes` limit, `FormatChangedMeaning` if the layout would change what
    the spec means."""
    _refuse_oversized(text, path)
    stream = _read(text, path)
    out = _Printer(stream.text, stream.tokens).print()
    after = _reparsed(out, path)
    if ir.structure(stream.spec) != ir.structure(after):
        raise FormatChangedMeaning(
            f"archc fmt would change the meaning of {path}, so it left it as it is; this is "
            "a bug in archc fmt, please report it with the file")
    return out


def _refuse_oversized(text: str, path: str) -> None:
    """`FormatRefused` (E205) for a text over `check`'s `file_bytes` limit, before any
    work: fmt must not take minutes over what check refuses at once."""
    from archc.compiler.sources import buffer_fits

    diags = Diagnostics()
    if not buffer_fits(text, path, diags):
        raise FormatRefused(diags.sorted(), "")


def unified_diff(old: str, new: str, path: str) -> str:
    """A `diff -u` of a file before and after formatting."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 f"{path} (original)", f"{path} (formatted)")
    return "".join(lines)


def _reparsed(out: str, path: str) -> ir.SpecFile:
    """The IR of the formatted text; `FormatChangedMeaning` if it does not parse."""
    from archc.compiler.parse import parse_text

    diags = Diagnostics()
    spec = parse_text(out, path, diags)
    if spec is None or diags.has_errors:
        raise FormatChangedMeaning(
            f"archc fmt would write text that does not parse ({path}), so it left it as it "
            "is; this is a bug in archc fmt, please report it with the file")
    return spec


def _read(text: str, path: str) -> tokens.TokenStream:
    """The spec's token stream (archc/compiler/tokens.py); a spec with errors raises
    `FormatRefused` with the parser's diagnostics."""
    try:
        return tokens.read_tokens(text, path)
    except tokens.SpecRefused as refused:
        raise FormatRefused(refused.diagnostics, refused.text) from None


# --------------------------------------------------------------------------- the printer


@dataclass
class _Bracket:
    column: int  # where the bracket stands in the output
    line_indent: int  # the indentation of the output line it stands on
    source_column: int  # where it stood in the input
    # its contents continue on the next lines indented by 4 (the bracket ends its line, or
    # the author did not line the contents up after it), rather than lined up after it
    parenthesis: bool = False  # `(`, not `[`
    subscript: bool = False  # `depths[i]`, `depths[:i - 1]` in an expression
    hanging: bool = False
    decided: bool = False  # hanging or lined up: the first continued line decides


@dataclass
class _Printer:
    """Re-emits the tokens of one valid file with canonical whitespace between them."""

    text: str
    tokens: list[Token]
    lines: list[Line] = field(default_factory=list)
    current: str = ""
    depth: int = 0
    line_indent: int = 0  # the indentation of the current logical line
    line_depth: int = 0  # the depth of the current logical line
    brackets: list[_Bracket] = field(default_factory=list)
    original_columns: dict[int, int] = field(default_factory=dict)  # depth → source column
    after_name_of_tensor: bool = False  # the previous token is the name in `-> name`

    def print(self) -> str:
        """The formatted text."""
        row_labels = _table_row_labels(self.tokens)
        prev: Token | None = None
        before_prev: Token | None = None  # the token before `prev` (layout skipped)
        prev_unary = False
        saw_newline = False
        for index, tok in enumerate(self.tokens):
            if tok.type in LAYOUT:
                self.depth += {"_INDENT": 1, "_DEDENT": -1}.get(tok.type, 0)
                saw_newline = saw_newline or tok.type == "_NL"
                continue
            gap = self.text[prev.end_pos if prev else 0:tok.start_pos]
            # `-> x` then `[...]`: x names a tensor, so the bracket opens a group, not `x[i]`
            self.after_name_of_tensor = before_prev is not None and before_prev.type == "ARROW"
            if prev is None or "\n" in gap:
                self._break(prev, tok, gap, saw_newline or prev is None)
            else:
                self.current += _space(prev, tok, gap, prev_unary, self.brackets,
                                       row_labels.get(id(prev)))
            prev_unary = tok.type in OPERATORS and (prev is None or prev.type in UNARY_BEFORE)
            self._emit(tok, prev)
            before_prev, prev, saw_newline = prev, tok, False
        self._end(prev)
        return render(self.lines)

    def _emit(self, tok: Token, prev: Token | None) -> None:
        if tok.type in OPEN:
            assert tok.column is not None  # the lexer gives every token its position
            indent = len(self.current) - len(self.current.lstrip(" "))
            self.brackets.append(_Bracket(
                len(self.current), indent, tok.column - 1, parenthesis=tok.type == "LPAR",
                subscript=not self.after_name_of_tensor
                and _is_subscript(prev, tok, self.brackets)))
        elif tok.type in CLOSE and self.brackets:
            self.brackets.pop()
        # a shape may be written `3 x 32 x 32`; every other token is kept as written
        self.current += "".join(tok.value.split()) if tok.type == "SHAPE" else tok.value

    def _break(self, prev: Token | None, tok: Token, gap: str, new_logical_line: bool) -> None:
        """Line break(s) between two tokens: comments, blank lines and the new indentation."""
        first, *middle, last = gap.split("\n") if prev is not None else ["", *gap.split("\n")]
        if not new_logical_line and self.brackets and not self.brackets[-1].decided:
            top = self.brackets[-1]
            # an open bracket is a token before this one; the lexer gives tokens positions
            assert prev is not None and tok.column is not None
            top.decided = True
            top.hanging = prev.type in OPEN or tok.column - 1 != top.source_column + 1
        continued = not new_logical_line and not self.brackets  # a `\` continuation
        if new_logical_line:
            self.original_columns[self.depth] = _column(last)
        indent = self._indent(tok, new_logical_line)
        comment = first.strip() if first.strip().startswith("#") else None
        self._flush(comment, backslash=continued)
        comment_indent = self._comment_indent(tok, new_logical_line)
        for line in middle:
            stripped = line.strip()
            if stripped.startswith("#"):
                self.lines.append(Line(" " * comment_indent(_column(line)) + stripped))
            else:
                self._blank()
        if new_logical_line and self.depth == 0 and self.line_depth > 0:
            self._separate_statement()
        self.current = " " * indent
        if new_logical_line:
            self.line_indent, self.line_depth = indent, self.depth

    def _indent(self, tok: Token, new_logical_line: bool) -> int:
        if new_logical_line:
            return self.depth * INDENT
        if not self.brackets:
            return self.line_indent + INDENT
        top = self.brackets[-1]
        if top.hanging:
            return top.line_indent + (0 if tok.type in CLOSE else INDENT)
        return top.column + (0 if tok.type in CLOSE else 1)

    def _comment_indent(self, tok: Token, new_logical_line: bool):
        """How a comment line is indented: as the body it stands in."""
        if not new_logical_line:  # inside brackets: as the contents
            inner = self._indent(tok, False)
            if self.brackets and tok.type in CLOSE:
                top = self.brackets[-1]
                inner = top.line_indent + INDENT if top.hanging else top.column + 1
            return lambda _column: inner

        return lambda column: self._open_body_at(column, max(self.line_depth, self.depth))

    def _open_body_at(self, column: int, deepest: int) -> int:
        """The indentation of the deepest open body whose lines start at or before `column`."""
        levels = [d for d in range(deepest + 1) if self.original_columns.get(d, 0) <= column]
        return (max(levels) if levels else self.depth) * INDENT

    def _flush(self, comment: str | None, backslash: bool = False) -> None:
        code = self.current.rstrip()
        if backslash:
            code += " \\"
        if code or comment:
            self.lines.append(Line(code, comment))
        self.current = ""

    def _separate_statement(self) -> None:
        """A blank line after a definition's body, above the comments that open the next."""
        at = len(self.lines)
        while at > 0 and self.lines[at - 1].code.startswith("#"):
            at -= 1
        if at > 0 and self.lines[at - 1].code != "":
            self.lines.insert(at, Line(""))

    def _blank(self) -> None:
        if self.lines and self.lines[-1].code != "":
            self.lines.append(Line(""))

    def _end(self, prev: Token | None) -> None:
        """The text after the last token: its trailing comment and the comments below it."""
        gap = self.text[prev.end_pos if prev else 0:]
        first, *rest = gap.split("\n")
        self._flush(first.strip() or None)
        for line in rest:
            stripped = line.strip()
            if stripped.startswith("#"):
                indent = self._open_body_at(_column(line), self.line_depth)
                self.lines.append(Line(" " * indent + stripped))
            else:
                self._blank()


def _is_subscript(prev: Token | None, tok: Token, brackets: list[_Bracket]) -> bool:
    """`[` right after a name, or after `)`/`]` inside an expression's parentheses: an index,
    not a group of items."""
    if tok.type != "LSQB" or prev is None:
        return False
    if prev.type == "NAME":
        return True
    return prev.type in ("RPAR", "RSQB") and bool(brackets) and brackets[-1].parenthesis


def _space(prev: Token, tok: Token, gap: str, prev_unary: bool, brackets: list[_Bracket],
           row_label_width: int | None) -> str:
    """The whitespace between two tokens on one line."""
    in_brackets = bool(brackets)
    if row_label_width is not None:  # a table row: the items line up after the labels
        return " " * (row_label_width - len(prev.value) + 1)
    if prev.type in OPEN or tok.type in CLOSE or tok.type in ("COMMA", "COLON"):
        return ""
    if prev.type == "COLON" and brackets and brackets[-1].subscript:  # a slice: `[:i]`
        return ""
    if _is_subscript(prev, tok, brackets):
        return ""
    if prev.type == "COMMA":
        return " "
    if "EQUAL" in (prev.type, tok.type):
        return "" if in_brackets else " "
    if prev_unary:
        return "" if prev.type in OPERATORS else " "  # `-x`, but `not x`
    if tok.type in OPERATORS or prev.type in OPERATORS:
        return " "
    if tok.type == "LPAR":
        return "" if prev.type in CALLEES else " "
    if prev.type in ITEM_END and tok.type in ITEM_START and len(gap.expandtabs(INDENT)) >= 2:
        return "  "
    return " "


def _table_row_labels(tokens: list[Token]) -> dict[int, int]:
    """The label tokens that start the rows of a table, each with its table's widest label."""
    rows: dict[int, int] = {}
    table: list[Token] = []
    depth, at_line_start, in_table = 0, True, False
    for tok in tokens:
        if tok.type in LAYOUT:
            depth += {"_INDENT": 1, "_DEDENT": -1}.get(tok.type, 0)
            at_line_start = True
            if depth == 0 and table:
                rows.update((id(t), max(len(t.value) for t in table)) for t in table)
                table = []
            continue
        if at_line_start and depth == 0:
            in_table = tok.type == "TABLE"
        elif at_line_start and depth == 1 and in_table and tok.type == "LABEL":
            table.append(tok)
        at_line_start = False
    rows.update((id(t), max(len(t.value) for t in table)) for t in table)
    return rows


def _column(line: str) -> int:
    return len(line.expandtabs(INDENT)) - len(line.expandtabs(INDENT).lstrip())


# --------------------------------------------------------------------------- files


@dataclass
class FileResult:
    """What formatting one file gave: the new text, or the diagnostics that refused it."""

    path: Path
    old: str
    new: str | None = None
    refused: FormatRefused | None = None

    @property
    def changed(self) -> bool:
        """True when the formatted text differs from the file."""
        return self.new is not None and self.new != self.old


def format_file(path: Path) -> FileResult:
    """Format one file's text (nothing is written). The file is read as `check` reads it:
    `sources.SpecReadError` when it cannot be (too large, not UTF-8, a NUL byte...)."""
    from archc.compiler.sources import read_spec

    old = read_spec(path)
    try:
        return FileResult(path, old, format_text(old, str(path)))
    except FormatRefused as refused:
        return FileResult(path, old, refused=refused)


def oversized(path: str) -> list[Diagnostic]:
    """The E205 of a text over the `file_bytes` limit."""
    from archc.compiler import limits

    diags = Diagnostics()
    diags.error("E205", ir.Span(file=path),
                f"spec `{path}` is over the limit of {limits.get('file_bytes'):,} bytes for "
                "one spec file", limits.hint("file_bytes"))
    return diags.sorted()
