"""Size limits, checked before anything is allocated, so hostile or mistyped specs fail with a
located error (E205) instead of a hang or a `MemoryError`.

Every limit can be raised:

- on the command line, before or after the verb: `archc --limit layers=2000000 check x.arch`
  (repeatable; `archc.cli.main` exports it as `ARCHC_LIMITS` so worker processes see it too);
- in the environment: `ARCHC_LIMITS="layers=2000000,params=1e10"`;
- from Python: `archc.compiler.limits.override(layers=2_000_000)` (a context manager).

docs/language.md ("Limits") lists them; `LIMITS` below is the single source of the defaults.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")

ENV = "ARCHC_LIMITS"


@dataclass(frozen=True)
class Limit:
    """One limit: its default and what it bounds (shown in messages and docs)."""

    name: str
    default: int
    what: str
    most: int = 10**15  # the largest value it may be raised to


LIMITS: dict[str, Limit] = {
    limit.name: limit
    for limit in (
        Limit("layers", 200_000, "layers in the expanded network (repeats and blocks unrolled)"),
        # archc's stages recurse once per level: past the default they run on a thread with
        # a larger stack (`run_deep`), sized for at most 2,000 levels
        Limit("depth", 100, "nesting depth: brackets, indented blocks, block calls, YAML lists",
              most=2_000),
        Limit("file_bytes", 1024 * 1024, "bytes in one spec file"),
        Limit("yaml_nodes", 200_000, "YAML nodes after anchors and aliases are expanded"),
        Limit("input_size", 65_536, "channels, height or width of the input"),
        Limit("params", 2_000_000_000, "parameters of the network (8 GB as float32)"),
        Limit("zip_member_bytes", 256 * 1024 ** 2,
              "bytes one member of a training zip inflates to (checked before inflating)"),
        Limit("zip_total_bytes", 64 * 1024 ** 3, "bytes all images of a training zip inflate to"),
    )
}

_overrides: dict[str, int] = {}


class LimitSettingError(ValueError):
    """A malformed `--limit` / ARCHC_LIMITS entry."""


def parse(text: str) -> dict[str, int]:
    """`layers=1e6,params=5_000_000_000` as {'layers': 1000000, 'params': 5000000000}."""
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in LIMITS:
            raise LimitSettingError(
                f"unknown limit `{item}`: expected NAME=VALUE with NAME one of "
                + ", ".join(LIMITS)
            )
        out[name] = _positive_int(name, value.strip(), LIMITS[name].most)
    return out


def _positive_int(name: str, value: str, most: int) -> int:
    """`value` as a whole number from 1 to `most`: digits with `_` separators, or a decimal
    or scientific number that is whole (`1e6`, `2.5e3`). Infinity, NaN and overflowing
    values (`1e400`, `1e309`, which a float would turn into infinity) are refused. The
    default `most`, 10^15, is far above every sensible setting and small enough that
    arithmetic with it stays exact in a float64 and an int64 (numpy, torch)."""
    from decimal import Decimal, InvalidOperation

    text = value.strip()
    try:
        number = Decimal(text) if text and text.lstrip("+").replace("_", "")[:1].isdigit() \
            else Decimal("NaN")
    except (InvalidOperation, ValueError):
        number = Decimal("NaN")
    if not number.is_finite() or number < 1:
        raise LimitSettingError(f"limit `{name}` needs a positive whole number, got `{value}`")
    if number > most:
        raise LimitSettingError(f"limit `{name}` is at most {most:,}, got `{value}`")
    if number != number.to_integral_value():
        raise LimitSettingError(f"limit `{name}` needs a positive whole number, got `{value}`")
    return int(number)


def get(name: str) -> int:
    """The value of limit `name` now: an `override`, else ARCHC_LIMITS, else the default."""
    if name in _overrides:
        return _overrides[name]
    text = os.environ.get(ENV)
    if text:
        try:
            from_env = parse(text)
        except LimitSettingError:
            from_env = {}  # reported once by the command line; the API keeps the defaults
        if name in from_env:
            return from_env[name]
    return LIMITS[name].default


@contextmanager
def override(**values: int):
    """Raise (or lower) limits for the duration of a `with` block: `override(layers=10**6)`."""
    for name, value in values.items():
        if name not in LIMITS:
            raise LimitSettingError(f"unknown limit `{name}`")
        _positive_int(name, str(value), LIMITS[name].most)
    saved = dict(_overrides)
    _overrides.update(values)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(saved)


def run_deep(function: Callable[[], T]) -> T:
    """`function()`, on a thread whose stack and recursion limit fit the `depth` limit when it
    is raised past its default: the parser's builder, the resolver and the backends recurse
    once per level of nesting, and Python's default (1,000 frames, an 8 MB stack) holds about
    250 levels. At the default depth it simply calls `function` (no thread). Whatever it
    returns or raises (SystemExit included) comes back to the caller."""
    import sys
    import threading

    depth = get("depth")
    if depth <= LIMITS["depth"].default:
        return function()
    outcome: list = [None, None]

    def target() -> None:
        try:
            outcome[0] = function()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            outcome[1] = exc

    saved_limit, saved_stack = sys.getrecursionlimit(), threading.stack_size()
    sys.setrecursionlimit(max(saved_limit, 1_000 + 50 * depth))
    threading.stack_size(deep_stack_bytes())
    try:
        worker = threading.Thread(target=target, name="archc-deep")
        worker.start()
    finally:
        threading.stack_size(saved_stack)
    worker.join()
    sys.setrecursionlimit(saved_limit)
    if outcome[1] is not None:
        raise outcome[1]
    return outcome[0]


def deep_stack_bytes() -> int:
    """The thread stack the `depth` limit in force needs, or 0 at the default depth (any
    thread's stack holds it). Measured: 2,000 levels of brackets fit in 78 MB."""
    depth = get("depth")
    return 0 if depth <= LIMITS["depth"].default else (16 + depth // 32) * 2**20


def hint(name: str) -> str:
    """How to raise limit `name`, for the hint of an E205 diagnostic."""
    return (
        f"the limit `{name}` is {get(name):,}; if this is intended, raise it with "
        f"`--limit {name}=N` or ARCHC_LIMITS={name}=N"
    )


class LimitExceeded(Exception):
    """Raised inside a stage when a limit is crossed; the stage turns it into one E205."""

    def __init__(self, name: str, message: str, span=None):
        super().__init__(message)
        self.name, self.message, self.span = name, message, span
