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

ENV = "ARCHC_LIMITS"


@dataclass(frozen=True)
class Limit:
    """One limit: its default and what it bounds (shown in messages and docs)."""

    name: str
    default: int
    what: str


LIMITS: dict[str, Limit] = {
    limit.name: limit
    for limit in (
        Limit("layers", 200_000, "layers in the expanded network (repeats and blocks unrolled)"),
        Limit("depth", 100, "nesting depth: brackets, indented blocks, block calls, YAML lists"),
        Limit("file_bytes", 1024 * 1024, "bytes in one spec file"),
        Limit("yaml_nodes", 200_000, "YAML nodes after anchors and aliases are expanded"),
        Limit("input_size", 65_536, "channels, height or width of the input"),
        Limit("params", 2_000_000_000, "parameters of the network (8 GB as float32)"),
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
        out[name] = _positive_int(name, value.strip())
    return out


def _positive_int(name: str, value: str) -> int:
    try:
        number = float(value.replace("_", "")) if "e" in value.lower() else int(value.replace(
            "_", ""))
    except ValueError:
        number = -1
    if number != number or number < 1 or number != int(number):
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
    for name in values:
        if name not in LIMITS:
            raise LimitSettingError(f"unknown limit `{name}`")
    saved = dict(_overrides)
    _overrides.update(values)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(saved)


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
