"""The Protocol Buffers text format (Caffe's `.prototxt`), read with a lark grammar.

The result is a schema-free tree of `Message`s whose fields keep their spans, so the
Caffe importer can point its diagnostics at the exact line and column of the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from archc.compiler import ir, limits
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.parse import unclosed

GRAMMAR = Path(__file__).with_name("prototxt.lark")


class Ident(str):
    """An unquoted identifier value: an enum constant (`MAX`) or `true` / `false`."""


@dataclass
class Field:
    """One `name: value` or `name { ... }` entry, with where it is written."""

    name: str
    value: Any  # str, Ident, int, float, list or Message
    span: ir.Span  # the whole field
    name_span: ir.Span
    value_span: ir.Span


@dataclass
class Message:
    """A `{ ... }` body (or the whole file): its fields in source order."""

    fields: list[Field] = field(default_factory=list)
    span: ir.Span = ir.NOWHERE

    def all(self, name: str) -> list[Field]:
        """Every field called `name` (repeated fields), in order."""
        return [f for f in self.fields if f.name == name]

    def first(self, name: str) -> Field | None:
        """The first field called `name` (of a repeated field), or None."""
        return next((f for f in self.fields if f.name == name), None)

    def single(self, name: str) -> Field | None:
        """The one field called `name`, or None; `FieldError` at a second one: Caffe's text
        parser refuses a singular field given twice, so no value is silently dropped."""
        found = self.all(name)
        if len(found) > 1:
            raise FieldError(found[1].name_span, f"`{name}` is given twice; Caffe refuses a "
                             "second value for a single field", "keep one of them")
        return found[0] if found else None

    def get(self, name: str, default: Any = None) -> Any:
        """The value of the single field `name`, or `default` when it is absent."""
        found = self.single(name)
        return default if found is None else found.value

    def message(self, name: str) -> "Message":
        """Field `name` as a message (empty when absent); `FieldError` for a plain value."""
        found = self.single(name)
        if found is None:
            return Message()
        if not isinstance(found.value, Message):
            raise FieldError(found.value_span, f"`{name}` must be a message `{name} {{ ... }}`, "
                             f"got `{found.value}`")
        return found.value

    def int(self, name: str, default: int | None = None) -> int | None:
        """Field `name` as a whole number; `FieldError` (located) when it is something else."""
        return _number(self.single(name), default, int, "a whole number")

    def float(self, name: str, default: float | None = None) -> float | None:
        """Field `name` as a number; `FieldError` (located) when it is something else."""
        return _number(self.single(name), default, float, "a number")

    def ints(self, name: str) -> list[int]:
        """A repeated whole-number field (`dim: 1 dim: 3`, or `dim: [1, 3]`)."""
        return [_number(f, None, int, "a whole number", item)
                for f in self.all(name)
                for item in (f.value if isinstance(f.value, list) else [f.value])]

    def values(self, name: str) -> list[Any]:
        """The values of a repeated field, lists (`dim: [1, 3]`) flattened."""
        out: list[Any] = []
        for f in self.all(name):
            out.extend(f.value if isinstance(f.value, list) else [f.value])
        return out


class FieldError(Exception):
    """A field whose value is not of the type its name needs; located at the value."""

    def __init__(self, span: ir.Span, message: str, hint: str | None = None):
        super().__init__(message)
        self.span, self.message, self.hint = span, message, hint


def _number(found: Field | None, default, cast, what: str, value: Any = None):
    if found is None:
        return default
    value = found.value if value is None else value
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and (cast is float or float(value).is_integer()):
        return cast(value)
    raise FieldError(found.value_span, f"`{found.name}` must be {what}, got `{value}`")


@lru_cache(maxsize=None)
def _parser() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", propagate_positions=True)


def parse(text: str, path: str, diags: Diagnostics) -> Message | None:
    """The text as a `Message`; a syntax error, a bad string escape or nesting deeper than
    the `depth` limit goes to `diags` (located) and gives None."""
    text = text.removeprefix("\ufeff")
    too_deep = _too_deep(text, path)
    if too_deep is not None:
        diags.add(too_deep)
        return None
    try:
        tree = _parser().parse(text)
        return _convert(tree, path)
    except UnexpectedInput as exc:
        diags.add(_syntax_error(exc, text, path))
    except FieldError as exc:
        diags.error("E001", exc.span, f"syntax error: {exc.message}", exc.hint)
    return None


# What counts for nesting: openers and closers outside strings and comments.
_NESTING = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|#[^\n]*|[{<\[\]>}]')


def _too_deep(text: str, path: str):
    """An E205 at the first opener nested deeper than the `depth` limit, else None: checked
    before parsing, so 2,000 nested braces cost one scan, not a parse and a recursion."""
    from archc.compiler.diagnostics import Diagnostic

    most, depth = limits.get("depth"), 0
    for match in _NESTING.finditer(text):
        token = match.group()
        if token in "{<[":
            depth += 1
            if depth > most:
                line = text.count("\n", 0, match.start()) + 1
                column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
                span = ir.Span.model_construct(file=path, line=line, column=column,
                                               end_line=line, end_column=column + 1)
                return Diagnostic("E205", "error", span, f"messages nested deeper than the "
                                  f"limit of {most}", limits.hint("depth"))
        elif token in "}>]":
            depth = max(depth - 1, 0)
    return None


def _span(meta_or_token, path: str) -> ir.Span:
    m = meta_or_token
    if getattr(m, "empty", False):  # `{}` holds no token of its own
        return ir.Span(file=path)
    return ir.Span.model_construct(
        file=path, line=m.line, column=m.column, end_line=m.end_line, end_column=m.end_column
    )


def _convert(tree: Tree, path: str) -> Message:
    """The parse tree as Messages and Fields, built bottom-up with an explicit stack: the
    nesting is the file's to choose, so no Python recursion follows it."""
    done: dict[int, Any] = {}
    stack: list[tuple[Tree, bool]] = [(tree, False)]
    while stack:
        node, children_done = stack.pop()
        subtrees = [c for c in node.children if isinstance(c, Tree)]
        if not children_done:
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(subtrees))
            continue
        built = [done.pop(id(c)) for c in subtrees]
        done[id(node)] = _build(node, built, path)
    return done[id(tree)]


def _build(node: Tree, built: list, path: str) -> Any:
    """One node of the tree from its already-built subtrees."""
    if node.data == "start":
        return Message(built, ir.Span(file=path))
    if node.data == "message":
        return Message(built, _span(node.meta, path))
    if node.data in ("scalar_field", "message_field"):
        name_token: Token = node.children[0]
        body = node.children[1]
        return Field(str(name_token), built[0], _span(node.meta, path),
                     _span(name_token, path), _span(body.meta, path))
    if node.data == "list":
        return built
    return _value(node, path)


def _value(tree: Tree, path: str) -> Any:
    if tree.data == "string":
        return "".join(unescape(str(t), _span(t, path)) for t in tree.children)
    if tree.data == "number":
        text = str(tree.children[0]).rstrip("fF")
        if text.lower().lstrip("+-").startswith("0x"):
            return int(text, 16)
        number = float(text)
        return int(number) if number.is_integer() and not any(c in text for c in ".eE") else number
    if tree.data == "ident":
        return Ident(tree.children[0])
    word = str(tree.children[0])  # neg_ident: `-inf` and `-nan` are numbers, nothing else is
    if word.lower() not in ("inf", "infinity", "nan"):
        raise FieldError(_span(tree.children[0], path), f"`-{word}` is not a number",
                         "a negative value is a number: `-1`, `-0.5`, `-inf`")
    return -float(word)


_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39,
            '"': 34, "?": 63}
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.S)


def unescape(token: str, span: ir.Span) -> str:
    """A quoted string token's value, with the text format's escapes (C's: `\\n`, `\\"`,
    octal `\\101`, hex `\\x41`); an unknown escape or bytes that are not UTF-8 is a
    located `FieldError`, never Python's own string syntax."""
    body, out, last = token[1:-1], bytearray(), 0
    for match in _ESCAPE.finditer(body):
        out += body[last:match.start()].encode("utf-8")
        octal, hexa, char = match.groups()
        if octal is not None:
            out.append(int(octal, 8) & 0xFF)
        elif hexa is not None:
            out.append(int(hexa, 16))
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        else:
            raise FieldError(span, f"unknown escape `\\{char}` in a string",
                             'escapes are \\n, \\t, \\\\, \\", \\\', octal \\101 or hex \\x41')
        last = match.end()
    out += body[last:].encode("utf-8")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldError(span, "a string's escaped bytes are not UTF-8 text",
                         "write the text itself, or escape whole UTF-8 characters") from None


def _syntax_error(exc: UnexpectedInput, text: str, path: str):
    from archc.compiler.diagnostics import Diagnostic

    line, col, width = max(exc.line or 1, 1), max(exc.column or 1, 1), 1
    hint = "a prototxt field is `name: value` or `name { ... }`"
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        message = f"unexpected `{exc.token.value}`"
        width = max(len(str(exc.token.value)), 1)
        if exc.token.type == "RBRACE" or str(exc.token.value) == "}":
            hint = "this `}` closes no `{`; remove it"
    elif isinstance(exc, UnexpectedCharacters):
        message = f"unexpected character `{text[exc.pos_in_stream]}`"
    else:
        opener = unclosed(text)  # the .arch parser's scan: `#` comments and quotes alike
        message, hint = "unexpected end of file", "a field is missing its value"
        if opener is not None and opener[2] == "{":
            line, col, _ = opener
            message, hint = "`{` is never closed", "close the message with `}`"
    span = ir.Span.model_construct(
        file=path, line=line, column=col, end_line=line, end_column=col + width
    )
    return Diagnostic("E001", "error", span, f"syntax error: {message}", hint)
