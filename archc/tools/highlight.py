"""Syntax highlighting for .arch: a Pygments lexer and a TextMate grammar from one rule table.

The keywords come from the grammar (its literal words: `block`, `network`, `for`, ...), the
token patterns (words, labels, repeats, shapes) from archc/compiler/notation.py,
the layer kinds from the registry (every name and alias, matched as the parser matches
them: case-, dash- and underscore-insensitive, followed by paper notation such as
`conv3-64`). `RULES` pairs each pattern with a Pygments token and a TextMate scope, so
the Pygments lexer (registered as the `arch` entry point: `pygmentize -l arch`) and
editors/arch.tmLanguage.json (`python -m archc.tools.highlight > editors/arch.tmLanguage.json`)
always agree.

When the text parses, the Pygments lexer reads the parser's token stream
(`tokens.read_tokens`) instead of the regexes: `stream_rule` picks, for each of the parser's
terminals, the rule of the same table whose token types it, so both paths type a word alike,
but the stream cuts where the parser does (`depths[:i]` is a name and a slice, not a table
reference; the `stages:` of `for c in stages:` a name and a colon, not a label). What the
parser keeps no token for (whitespace, comments, line continuations), and the whole of a
text that does not parse (a spec being edited), the regex rules type. TextMate has only
regexes, so the editors' grammar is the rules alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lark.exceptions import LarkError
from pygments.lexer import RegexLexer, bygroups
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
    _TokenType,
)

from archc.compiler import tokens
from archc.compiler.notation import (
    BRACED,
    FLOAT,
    LABEL,
    NAME,
    REF,
    REPEAT,
    STRING,
    TABLE_REF,
    WORD,
    kind_pattern,
    shape,
)
from archc.compiler.tokens import TokenStream

CONSTANTS = ("true", "false", "same", "valid")
DECLARATIONS = ("block", "network", "table")


@dataclass(frozen=True)
class Rule:
    """One pattern: a Pygments token and a TextMate scope per group (or for the whole)."""

    name: str
    pattern: str
    tokens: tuple[_TokenType, ...]
    scopes: tuple[str, ...]


def keywords() -> tuple[str, ...]:
    """The grammar's keywords but the declarations (those have a rule of their own)."""
    return tuple(w for w in tokens.keywords() if w not in DECLARATIONS)


def _words(words) -> str:
    return r"\b(?:" + "|".join(words) + r")\b"


@lru_cache(maxsize=None)
def rules() -> tuple[Rule, ...]:
    """The highlighting rules, in the order they are tried."""
    return (
        Rule("comment", r"#.*$", (Comment.Single,), ("comment.line.number-sign.arch",)),
        Rule("string", STRING, (String,), ("string.quoted.arch",)),
        Rule("declaration", rf"({_words(DECLARATIONS)})(\s+)({NAME})",
             (Keyword.Declaration, Whitespace, Name.Function),
             ("storage.type.arch", "", "entity.name.function.arch")),
        Rule("label", rf"{LABEL}(?!=)", (Name.Label,),
             ("entity.name.tag.label.arch",)),
        Rule("repeat", rf"(?<![\w}}]){REPEAT}", (Operator.Word,),
             ("keyword.operator.repeat.arch",)),
        Rule("shape", shape(r"[ \t]*"), (Number,),
             ("constant.numeric.shape.arch",)),
        Rule("keyword", _words(keywords()), (Keyword,), ("keyword.control.arch",)),
        Rule("constant", _words(CONSTANTS), (Keyword.Constant,), ("constant.language.arch",)),
        Rule("table-ref", TABLE_REF, (Name.Variable,),
             ("variable.other.table.arch",)),
        Rule("argument-name", rf"({NAME})([ \t]*)(=)(?!=)",
             (Name.Attribute, Whitespace, Operator), ("variable.parameter.arch", "",
                                                      "keyword.operator.assignment.arch")),
        Rule("tensor", REF, (Name.Variable,), ("variable.other.tensor.arch",)),
        Rule("arrow", r"->", (Operator,), ("keyword.operator.arrow.arch",)),
        Rule("layer-kind", kind_pattern(), (Name.Builtin,), ("support.function.layer.arch",)),
        Rule("word", WORD, (Name,), ("entity.name.function.call.arch",)),
        Rule("number", rf"{FLOAT}|\d+", (Number,),
             ("constant.numeric.arch",)),
        Rule("braced", BRACED, (String.Interpol,), ("meta.embedded.expression.arch",)),
        Rule("operator", r"\*\*|//|==|!=|<=|>=|[-+*/%<>=]", (Operator,),
             ("keyword.operator.arch",)),
        Rule("punctuation", r"[()\[\],:]", (Punctuation,), ("punctuation.arch",)),
        Rule("continuation", r"\\$", (Text,), ("punctuation.separator.continuation.arch",)),
        Rule("whitespace", r"\s+", (Whitespace,), ("",)),
    )


# the rule (by name) and its group that types each of the parser's terminals wherever it
# stands; NAME, WORD and the keywords depend on what they are (`stream_rule`)
TERMINAL_RULES: dict[str, tuple[str, int]] = {
    "LABEL": ("label", 0), "LABEL_END": ("label", 0), "REPEAT": ("repeat", 0),
    "SHAPE": ("shape", 0), "TABLE_REF": ("table-ref", 0), "REF": ("tensor", 0),
    "ARROW": ("arrow", 0), "INT": ("number", 0), "FLOAT": ("number", 0),
    "STRING": ("string", 0), "EQUAL": ("operator", 0),
    **{t: ("operator", 0) for t in tokens.OPERATORS},
    **{t: ("punctuation", 0) for t in ("LPAR", "RPAR", "LSQB", "RSQB", "COLON", "COMMA")},
}


@lru_cache(maxsize=None)
def rule_named(name: str) -> Rule:
    """The rule called `name`."""
    return next(rule for rule in rules() if rule.name == name)


@lru_cache(maxsize=None)
def _kind_word() -> re.Pattern[str]:
    return re.compile(kind_pattern())


def stream_rule(code: list[tokens.Token], i: int) -> tuple[Rule, int] | None:
    """The rule, and which of its groups, that types `code[i]` (a token of the stream, among
    the stream's code tokens); None for a terminal no rule is for."""
    tok = code[i]
    if tok.type in TERMINAL_RULES:
        name, group = TERMINAL_RULES[tok.type]
    elif tok.value in tokens.keywords() and tok.type == tok.value.upper():
        name, group = ("declaration", 0) if tok.value in DECLARATIONS else ("keyword", 0)
    elif tok.type == "WORD":  # a layer, in paper notation, or a block call
        name, group = ("layer-kind" if _kind_word().fullmatch(tok.value) else "word"), 0
    elif tok.type == "NAME":
        name, group = _name_rule(code, i)
    else:
        return None
    return rule_named(name), group


def _name_rule(code: list[tokens.Token], i: int) -> tuple[str, int]:
    """A NAME: declared (`block basic`), an argument's or setting's name (`stride=`), a
    constant (`same`), or a name read in an expression."""
    before = code[i - 1].type if i > 0 else None
    after = code[i + 1].type if i + 1 < len(code) else None
    if before is not None and before.lower() in DECLARATIONS:
        return "declaration", 2
    if after == "EQUAL":
        return "argument-name", 0
    if code[i].value in CONSTANTS:
        return "constant", 0
    return "word", 0


def _pygments_rules():
    out = []
    for rule in rules():
        token = rule.tokens[0] if len(rule.tokens) == 1 else bygroups(*rule.tokens)
        out.append((rule.pattern, token))
    return out


class ArchLexer(RegexLexer):
    """Pygments lexer for archc's .arch architecture specs."""

    name = "archc"
    aliases = ["arch", "archc"]
    filenames = ["*.arch"]
    mimetypes = ["text/x-arch"]
    url = "https://github.com/archc/archc"
    tokens = {"root": _pygments_rules()}

    def get_tokens_unprocessed(self, text, stack=("root",)):
        """(offset, token type, text) covering `text`: from the parser's token stream when
        the text parses, else (text being edited) from the regex rules alone."""
        try:
            stream = tokens.read_tokens(text)
        except (tokens.SpecRefused, LarkError):
            stream = None
        if stream is None or not stream.text.startswith(text):  # offsets would not fit
            yield from self.regex_tokens(text)
            return
        yield from self.stream_tokens(text, stream)

    def regex_tokens(self, text: str, offset: int = 0):
        """`text` cut and typed by the regex rules alone, offsets shifted by `offset`."""
        for start, token, value in RegexLexer.get_tokens_unprocessed(self, text):
            yield start + offset, token, value

    def stream_tokens(self, text: str, stream: TokenStream):
        """The stream's tokens typed by `stream_rule`; what lies between them (whitespace,
        comments, line continuations: the parser keeps no token for those) by the regex
        rules."""
        code = stream.code()
        end = 0
        for i, tok in enumerate(code):
            start = tok.start_pos or 0  # lark types them optional; the lexer sets them
            if start >= len(text):  # the final new line the parser adds
                break
            if start > end:
                yield from self.regex_tokens(text[end:start], end)
            found = stream_rule(code, i)
            if found is None:  # a terminal the table does not know: the regex rules say
                yield from self.regex_tokens(tok.value, start)
            else:
                rule, group = found
                yield start, rule.tokens[group], tok.value
            end = start + len(tok.value)
        if end < len(text):
            yield from self.regex_tokens(text[end:], end)


def textmate_grammar() -> dict:
    """editors/arch.tmLanguage.json: the same rules as TextMate patterns."""
    patterns: list[dict[str, Any]] = []
    for rule in rules():
        if rule.scopes == ("",):
            continue
        if len(rule.scopes) == 1:
            patterns.append({"name": rule.scopes[0], "match": rule.pattern})
        else:
            captures = {str(i): {"name": s} for i, s in enumerate(rule.scopes, 1) if s}
            patterns.append({"match": rule.pattern, "captures": captures})
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/"
                   "tmlanguage.json",
        "name": "archc",
        "scopeName": "source.arch",
        "fileTypes": ["arch"],
        "comment": "Generated by `python -m archc.tools.highlight` from archc's grammar and layer "
                   "registry; do not edit.",
        "patterns": patterns,
    }


def textmate_json() -> str:
    """The TextMate grammar as the committed file holds it."""
    return json.dumps(textmate_grammar(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(textmate_json(), end="")
