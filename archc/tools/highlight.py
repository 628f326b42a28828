"""Syntax highlighting for .arch: a Pygments lexer and a TextMate grammar from one rule table.

The keywords come from the grammar (its literal words: `block`, `network`, `for`, ...), the
token patterns (words, labels, repeats, shapes) from archc/compiler/notation.py,
the layer kinds from the registry (every name and alias, matched as the parser matches
them: case-, dash- and underscore-insensitive, followed by paper notation such as
`conv3-64`). `RULES` pairs each pattern with a Pygments token and a TextMate scope, so
the Pygments lexer (registered as the `arch` entry point: `pygmentize -l arch`) and
editors/arch.tmLanguage.json (`python -m archc.tools.highlight > editors/arch.tmLanguage.json`)
always agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

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
