"""The Protocol Buffers text format (Caffe's `.prototxt`), read with a lark grammar.

The result is a schema-free tree of `Message`s whose fields keep their spans, so the
Caffe importer can point its diagnostics at the exact line and column of the file.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from archc.compiler import ir
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
        """The last field called `name` (protobuf's rule for a repeated singular field)."""
        found = self.all(name)
        return found[-1] if found else None

    def get(self, name: str, default: Any = None) -> Any:
        """The value of field `name`, or `default` when it is absent."""
        found = self.first(name)
        return default if found is None else found.value

    def message(self, name: str) -> "Message":
        """Field `name` as a message (empty when absent); `FieldError` for a plain value."""
        found = self.first(name)
        if found is None:
            return Message()
        if not isinstance(found.value, Message):
            raise FieldError(found.value_span, f"`{name}` must be a message `{name} {{ ... }}`, "
                             f"got `{found.value}`")
        return found.value

    def int(self, name: str, default: int | None = None) -> int | None:
        """Field `name` as a whole number; `FieldError` (located) when it is something else."""
        return _number(self.first(name), default, int, "a whole number")

    def float(self, name: str, default: float | None = None) -> float | None:
        """Field `name` as a number; `FieldError` (located) when it is something else."""
        return _number(self.first(name), default, float, "a number")

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

    def __init__(self, span: ir.Span, message: str):
        super().__init__(message)
        self.span, self.message = span, message


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
    """The text as a `Message`; a syntax error goes to `diags` and gives None."""
    text = text.removeprefix("\ufeff")
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        diags.add(_syntax_error(exc, text, path))
        return None
    return Message(
        [_field(child, path) for child in tree.children], ir.Span(file=path)
    )


def _span(meta_or_token, path: str) -> ir.Span:
    m = meta_or_token
    return ir.Span.model_construct(
        file=path, line=m.line, column=m.column, end_line=m.end_line, end_column=m.end_column
    )


def _field(tree: Tree, path: str) -> Field:
    name_token: Token = tree.children[0]
    body = tree.children[1]
    if tree.data == "message_field":
        value: Any = Message([_field(c, path) for c in body.children], _span(body.meta, path))
    else:
        value = _value(body)
    return Field(
        str(name_token),
        value,
        _span(tree.meta, path),
        _span(name_token, path),
        _span(body.meta, path),
    )


def _value(tree: Tree) -> Any:
    if tree.data == "string":
        return "".join(ast.literal_eval(str(t)) for t in tree.children)
    if tree.data == "number":
        text = str(tree.children[0]).rstrip("fF")
        if text.lower().lstrip("+-").startswith("0x"):
            return int(text, 16)
        number = float(text)
        return int(number) if number.is_integer() and not any(c in text for c in ".eE") else number
    if tree.data == "ident":
        return Ident(tree.children[0])
    if tree.data == "neg_ident":  # -inf, -nan
        return -float(str(tree.children[0]))
    return [_value(c) for c in tree.children if c is not None]


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
