"""archc's own evaluator for the integer and float arithmetic in specs (no eval, no exec)."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics, did_you_mean

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
    # names the checker binds, not the spec: a block's `in_channels`, `in_height`, `in_width`
    implicit: dict[str, Any] = field(default_factory=dict)
    loop: dict[str, Any] = field(default_factory=dict)  # a `for` loop's names shadow the rest

    def lookup(self, name: str) -> Any:
        """The value bound to `name`, or KeyError."""
        if name in self.loop:
            return self.loop[name]
        if name in self.values:
            self.used.add(name)
            return self.values[name]
        if name in self.implicit:
            return self.implicit[name]
        return BUILTINS[name]

    def visible(self) -> list[str]:
        """Every name an expression here could use."""
        return [*self.loop, *self.values, *self.implicit, *BUILTINS]

    def with_loop(self, names: dict[str, Any]) -> "Env":
        """This scope plus a loop's variables; reads of parameters are still recorded here."""
        return Env(self.values, self.spans, self.used, self.implicit, {**self.loop, **names})


_OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}
_COMPARISONS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_RANGE_LIMIT = 100_000  # `range(10**9)` would hang the checker


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
    if isinstance(expr, ir.Not):
        value = evaluate(expr.operand, env, diags)
        return ERROR if value is ERROR else not value
    if isinstance(expr, ir.Cond):
        test = evaluate(expr.test, env, diags)
        if test is ERROR:
            return ERROR
        mark_read(expr.other if test else expr.then, env)
        return evaluate(expr.then if test else expr.other, env, diags)
    if isinstance(expr, ir.Call):
        return _call(expr, env, diags)
    if isinstance(expr, ir.Index):
        return _index(expr, env, diags)
    if isinstance(expr, ir.Comprehension):
        return _comprehension(expr, env, diags)
    if isinstance(expr, ir.TensorRef):
        diags.error(
            "E104", expr.span, f"`@{expr.id}` is a tensor, not a value",
            "pass named tensors to a block's `@` parameters, or merge them: concat(@a, @b)",
        )
        return ERROR
    if isinstance(expr, ir.Neg):
        value = evaluate(expr.operand, env, diags)
        if value is ERROR:
            return ERROR
        if not _is_number(value):
            diags.error("E109", expr.span, f"cannot negate {_type_name(value)} `{value}`")
            return ERROR
        return -value
    return _binop(expr, env, diags)


def mark_read(expr: ir.Node, env: Env, bound: frozenset[str] = frozenset()) -> None:
    """Record the parameters that `expr` (an expression, or an item left out) reads without
    evaluating it: the side that `and`, `or` or `a if t else b` skips, and the body of a
    false `if`, still read them (no false "never used" warning when a call takes the short
    way)."""
    if isinstance(expr, ir.Name):
        if expr.id not in bound and expr.id not in env.loop and expr.id in env.values:
            env.used.add(expr.id)
        return
    if isinstance(expr, ir.Comprehension):
        mark_read(expr.iterable, env, bound)
        names = {n for part in expr.names for n in ([part] if isinstance(part, str) else part)}
        mark_read(expr.element, env, bound | names)
        return
    for field_name in type(expr).model_fields:
        value = getattr(expr, field_name)
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ir.Node) and not isinstance(child, ir.Span):
                mark_read(child, env, bound)


def _binop(expr: ir.BinOp, env: Env, diags: Diagnostics) -> Any:
    if expr.op in ("and", "or"):  # short-circuit, as Python: `a and b` may skip b
        left = evaluate(expr.left, env, diags)
        if left is ERROR or (not left if expr.op == "and" else left):
            mark_read(expr.right, env)
            return left
        return evaluate(expr.right, env, diags)
    left, right = evaluate(expr.left, env, diags), evaluate(expr.right, env, diags)
    if left is ERROR or right is ERROR:
        return ERROR
    if expr.op in ("==", "!="):
        return _COMPARISONS[expr.op](left, right)
    if expr.op in _COMPARISONS:
        if not (_is_number(left) and _is_number(right)) and not (
            isinstance(left, str) and isinstance(right, str)
        ):
            diags.error(
                "E109",
                expr.span,
                f"`{expr.op}` compares two numbers, got {_type_name(left)} and "
                f"{_type_name(right)}",
                "`==` and `!=` compare any two values; `<`, `<=`, `>`, `>=` order numbers",
            )
            return ERROR
        return _COMPARISONS[expr.op](left, right)
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


# --------------------------------------------------------------------------- tuples


def bind_names(names: list, value: Any) -> dict[str, Any] | None:
    """A loop's names bound to one value: `c, n` unpacks a row, `i, (c, n)` a pair whose
    second item is a row. None when the value does not have that shape."""
    if len(names) == 1 and isinstance(names[0], str):
        return {names[0]: value}
    if not isinstance(value, tuple) or len(value) != len(names):
        return None
    bound: dict[str, Any] = {}
    for name, part in zip(names, value):
        inner = {name: part} if isinstance(name, str) else bind_names(name, part)
        if inner is None:
            return None
        bound.update(inner)
    return bound


def names_text(names: list) -> str:
    """`i, (c, n)`: loop names as written."""
    return ", ".join(n if isinstance(n, str) else "(" + ", ".join(n) + ")" for n in names)


def _index(expr: ir.Index, env: Env, diags: Diagnostics) -> Any:
    value = evaluate(expr.value, env, diags)
    bounds = [None if b is None else evaluate(b, env, diags) for b in (expr.index, expr.upper)]
    if value is ERROR or ERROR in bounds:
        return ERROR
    if not isinstance(value, tuple | str):
        diags.error(
            "E109",
            expr.span,
            f"only a tuple can be indexed, got {_type_name(value)}",
            "index a stage table or a tuple parameter: `depths[i]`, `depths[:i]`",
        )
        return ERROR
    if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds):
        diags.error("E109", expr.span, "an index must be a whole number")
        return ERROR
    if expr.is_slice:
        return value[bounds[0] : bounds[1]]
    index = bounds[0]
    assert index is not None  # `t[i]` always has its index; only a slice leaves bounds out
    if not -len(value) <= index < len(value):
        diags.error(
            "E109",
            expr.span,
            f"index {index} is out of range for {len(value)} values",
            f"indices run from 0 to {len(value) - 1} (or from -{len(value)} to -1)",
        )
        return ERROR
    return value[index]


def _comprehension(expr: ir.Comprehension, env: Env, diags: Diagnostics) -> Any:
    values = evaluate(expr.iterable, env, diags)
    if values is ERROR:
        return ERROR
    if not isinstance(values, tuple):
        diags.error(
            "E109",
            expr.iterable.span,
            f"`for` needs a tuple or a range to go through, got {_type_name(values)}",
        )
        return ERROR
    out = []
    for value in values:
        bound = bind_names(expr.names, value)
        if bound is None:
            diags.error(
                "E109",
                expr.iterable.span,
                f"`for {names_text(expr.names)}` does not fit a value of the tuple",
                "give every row one value per name",
            )
            return ERROR
        item = evaluate(expr.element, env.with_loop(bound), diags)
        if item is ERROR:
            return ERROR
        out.append(item)
    return tuple(out)


# --------------------------------------------------------------------------- functions


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's `_make_divisible`: the multiple of `divisor` nearest `v` (at least
    `min_value`), rounded up once more when rounding down lost over 10%."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _range(*args: int) -> tuple:
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise _Refused("`range` takes integers")
    values = range(*args)
    if len(values) > _RANGE_LIMIT:
        raise _Refused(f"`range` of {len(values)} values is too long (at most {_RANGE_LIMIT})")
    return tuple(values)


def _log(x: float, base: float = math.e) -> float:
    if x <= 0 or base <= 0 or base == 1:
        raise _Refused("`log` needs a positive number (and a positive base other than 1)")
    return math.log(x, base)


def _extreme(pick: Callable) -> Callable:
    def apply(*args):
        values = args[0] if len(args) == 1 and isinstance(args[0], tuple) else args
        if not values:
            raise _Refused(f"`{pick.__name__}` of nothing")
        return pick(values)

    return apply


# name -> (function, fewest arguments, most arguments, the usage shown in hints)
FUNCTIONS: dict[str, tuple[Callable, int, int, str]] = {
    "min": (_extreme(min), 1, 64, "min(a, b, ...)"),
    "max": (_extreme(max), 1, 64, "max(a, b, ...)"),
    "round": (round, 1, 2, "round(x) or round(x, digits)"),
    "floor": (math.floor, 1, 1, "floor(x)"),
    "ceil": (math.ceil, 1, 1, "ceil(x)"),
    "int": (int, 1, 1, "int(x): towards zero"),
    "abs": (abs, 1, 1, "abs(x)"),
    "log": (_log, 1, 2, "log(x) or log(x, base)"),
    "make_divisible": (make_divisible, 2, 3, "make_divisible(v, divisor, min_value=divisor)"),
    "range": (_range, 1, 3, "range(stop) or range(start, stop, step)"),
    "len": (len, 1, 1, "len(tuple)"),
    "sum": (lambda t: sum(t), 1, 1, "sum(tuple)"),
    "enumerate": (lambda t, start=0: tuple(enumerate(t, start)), 1, 2, "enumerate(t, start=0)"),
    "zip": (lambda *ts: tuple(zip(*ts)), 1, 8, "zip(a, b, ...)"),
}
_TUPLE_ARGS = {"min", "max", "len", "enumerate", "zip", "sum"}  # functions that take tuples


class _Refused(ValueError):
    """A built-in function refused its arguments; the message says why."""


def _call(expr: ir.Call, env: Env, diags: Diagnostics) -> Any:
    entry = FUNCTIONS.get(expr.func)
    where = expr.span if expr.func_span.file == "<builtin>" else expr.func_span
    if entry is None:
        diags.error(
            "E101",
            where,
            f"unknown function `{expr.func}`",
            did_you_mean(expr.func, list(FUNCTIONS))
            or "functions: " + ", ".join(f"`{f}`" for f in FUNCTIONS),
        )
        return ERROR
    function, fewest, most, usage = entry
    args = [evaluate(a, env, diags) for a in expr.args]
    if ERROR in args:
        return ERROR
    if not fewest <= len(args) <= most:
        diags.error(
            "E109",
            expr.span,
            f"`{expr.func}` takes {fewest}" + (f" to {most}" if most > fewest else "")
            + f" argument{'s' if most > 1 else ''}, got {len(args)}",
            f"usage: {usage}",
        )
        return ERROR
    tuples = expr.func in _TUPLE_ARGS
    truth = expr.func == "int" and isinstance(args[0], bool)  # int(t != 1) counts 0 or 1
    if not truth and not all(_is_number(a) or (tuples and isinstance(a, tuple)) for a in args):
        diags.error(
            "E109",
            expr.span,
            f"`{expr.func}` needs numbers, got "
            + " and ".join(_type_name(a) for a in args if not _is_number(a)),
            f"usage: {usage}",
        )
        return ERROR
    try:
        result = function(*args)
    except _Refused as refused:
        diags.error("E109", expr.span, str(refused), f"usage: {usage}")
        return ERROR
    except (ValueError, TypeError, OverflowError, ZeroDivisionError):
        diags.error("E109", expr.span, f"`{expr.func}` cannot take these values", f"usage: {usage}")
        return ERROR
    if _is_number(result) and abs(result) > _LIMIT:
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
