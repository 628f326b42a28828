""".arch source as the parser's tokens: the one token stream the tools read.

`read_tokens` gives every token lark's contextual lexer and the indentation post-lexer
produce for a spec (layout tokens `_NL`, `_INDENT` and `_DEDENT` included), with the IR of
the same parse. `archc fmt` re-emits the stream with canonical whitespace, `archc convert`
reads comments and the spelling of each layer from it, and the highlighter's Pygments lexer
types the stream's tokens (its regex rules, which take their keywords from the same grammar
with `keywords`, are the fallback for text that does not parse).

The names below are the grammar's token types (grammar.lark), grouped as the tools use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from lark import Token

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostic, Diagnostics

__all__ = ["CLOSE", "LAYOUT", "OPEN", "OPERATORS", "SpecRefused", "Token", "TokenStream",
           "keywords", "normalised", "read_tokens"]

LAYOUT = frozenset({"_NL", "_INDENT", "_DEDENT"})  # line ends and indentation changes
OPEN = frozenset({"LPAR", "LSQB"})
CLOSE = frozenset({"RPAR", "RSQB"})
# the arithmetic and comparison operators (lark names `//` and `**` itself: __ANON_0, 1)
OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "DOUBLESLASH", "PERCENT",
                       "DOUBLESTAR", "COMPARE", "__ANON_0", "__ANON_1"})


class SpecRefused(Exception):
    """The spec has errors, so it has no token stream: these diagnostics say why."""

    def __init__(self, diagnostics: list[Diagnostic], text: str):
        super().__init__(f"{len(diagnostics)} error(s)")
        self.diagnostics = diagnostics
        self.text = text


@dataclass(frozen=True)
class TokenStream:
    """A spec's text as the parser read it, its tokens in order, and its IR."""

    text: str
    tokens: list[Token]
    spec: ir.SpecFile

    def code(self) -> list[Token]:
        """The tokens that are text of the spec: all but the layout tokens."""
        return [t for t in self.tokens if t.type not in LAYOUT]


def normalised(text: str, path: str = "<spec>") -> str:
    """The text as the parser reads it (parse.parse_text): no byte-order mark, `\\r\\n` as
    `\\n`, a final new line. A NUL or a lone `\\r` is refused (`SpecRefused`, the parser's
    located E001) before the final new line is added, as the parser does: read as a line
    break here, a lone `\\r` once turned commented-out layers into code."""
    from archc.compiler.text import text_problem

    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if text_problem(text) is not None:
        _refuse(text, path)
    return text if text.endswith("\n") else text + "\n"


def read_tokens(text: str, path: str = "<spec>") -> TokenStream:
    """The normalised text (`normalised`), every token the parser reads in it and its IR,
    from one parse; a spec with errors raises `SpecRefused` with parse_text's diagnostics."""
    from lark.exceptions import UnexpectedInput
    from lark.indenter import DedentError

    from archc.compiler.parse import SpecBuilder, lark_parser, report_too_deep

    source = normalised(text, path)
    interactive = lark_parser().parse_interactive(source, start="start")
    try:
        tokens = list(interactive.iter_parse())
        tree = interactive.feed_eof(tokens[-1] if tokens else None)
    except (UnexpectedInput, DedentError):
        _refuse(source, path)
        raise
    diags = Diagnostics()
    # as parse_text: the builder recurses once per level, so E205 before it, not a RecursionError
    if report_too_deep(tree, path, diags):
        raise SpecRefused(diags.sorted(), source)
    spec = SpecBuilder(path, diags).spec_file(tree)
    if spec is None or diags.has_errors:
        raise SpecRefused([d for d in diags.sorted() if d.is_error], source)
    return TokenStream(source, tokens, spec)


def _refuse(text: str, path: str) -> None:
    """Raise `SpecRefused` with what parse_text reports about `text` (when it reports no
    error, return: the caller's own exception then stands)."""
    from archc.compiler.parse import parse_text

    diags = Diagnostics()
    spec = parse_text(text, path, diags)
    if spec is None or diags.has_errors:
        raise SpecRefused([d for d in diags.sorted() if d.is_error], text)


@lru_cache(maxsize=None)
def keywords() -> tuple[str, ...]:
    """The grammar's keywords: its literal terminals that are words (`block`, `for`, ...)."""
    from archc.compiler.parse import lark_parser

    words = {t.pattern.value for t in lark_parser().terminals
             if t.pattern.type == "str" and t.pattern.value.isalpha()}
    return tuple(sorted(words))
