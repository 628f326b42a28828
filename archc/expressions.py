"""archc's own evaluator for the integer and float arithmetic in specs (no eval, no exec)."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from . import ir
from .diagnostics import Diagnostics, did_you_mean

BUILTINS: dict[str, Any] = {
    "true": True,
    "false": False,
    "none": None,
    "same": "same",
    "valid": "valid",
}
_LIMIT = 2**62  # keeps `2 ** 10 ** 10` from hanging the checker


class _Error:
    """The value of an expression that already produced a diagnostic."""

    def __repr__(self) -> str:
        return "<error>"


ERROR = _Error()


@dataclass
class Env:
    """Names visible while expanding a body: block or network parameters, then builtins.

    `used` records which parameters were read, for the unused-parameter warning.
    """

    values: dict[str, Any]
    spans: dict[str, ir.Span] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def lookup(self, name: str) -> Any:
        """The value bound to `name`, or KeyError."""
        if name in self.values:
            self.used.add(name)
            return self.values[name]
        return BUILTINS[name]

    def visible(self) -> list[str]:
        """Every name an expression here could use."""
        return [*self.values, *BUILTINS]


_OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}


def evaluate(expr: ir.Expr, env: Env, diags: Diagnostics) -> Any:
    """The value of `expr` in `env`; ERROR (with a diagnostic recorded) when it has none."""
    if isinstance(expr, ir.Num | ir.Str):
        return expr.value
    if isinstance(expr, ir.Name):
        try:
            return env.lookup(expr.id)
        except KeyError:
            hint = did_you_mean(expr.id, env.visible()) or (
                "parameters of the enclosing block or network are visible here: "
                + (", ".join(f"`{n}`" for n in env.values) or "none")
            )
            diags.error("E101", expr.span, f"undefined name `{expr.id}`", hint)
            return ERROR
    if isinstance(expr, ir.Tuple):
        items = tuple(evaluate(item, env, diags) for item in expr.items)
        return ERROR if ERROR in items else items
    if isinstance(expr, ir.Neg):
        value = evaluate(expr.operand, env, diags)
        if value is ERROR:
            return ERROR
        if not _is_number(value):
            diags.error("E109", expr.span, f"cannot negate {_type_name(value)} `{value}`")
            return ERROR
        return -value
    return _binop(expr, env, diags)


def _binop(expr: ir.BinOp, env: Env, diags: Diagnostics) -> Any:
    left, right = evaluate(expr.left, env, diags), evaluate(expr.right, env, diags)
    if left is ERROR or right is ERROR:
        return ERROR
    if expr.op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if not (_is_number(left) and _is_number(right)):
        diags.error(
            "E109",
            expr.span,
            f"`{expr.op}` needs numbers, got {_type_name(left)} and {_type_name(right)}",
        )
        return ERROR
    if expr.op in ("/", "//", "%") and right == 0:
        diags.error("E109", expr.right.span, "division by zero")
        return ERROR
    if expr.op == "**" and (abs(right) > 64 or abs(left) > _LIMIT):
        diags.error("E109", expr.span, "exponent too large")
        return ERROR
    result = _OPS[expr.op](left, right)
    if isinstance(result, complex) or (_is_number(result) and abs(result) > _LIMIT):
        diags.error("E109", expr.span, "value out of range")
        return ERROR
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "a tuple"
    return "a number"


def parse_value(text: str) -> Any:
    """A `--set` value from the command line: int, float, true/false, or a plain string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip().strip("\"'")
