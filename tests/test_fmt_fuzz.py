"""`archc fmt` never changes what a spec means (issue 24, class 2).

Real specs are mutated with the characters that matter to layout and meaning (comment
marks, carriage returns, line breaks, backslashes, brackets, indentation, operators), and
every mutant goes through `format_text`. The only acceptable outcomes are a refusal
(`FormatRefused`: the spec has errors; `FormatChangedMeaning`: fmt caught itself) or a text
whose IR, as `archc check` reads it, is the original's as `archc check` reads it. Any other
exception is a bug, and so is a formatted text that check reads differently.

A few hundred mutants run in the normal suite; `pytest -m large tests/test_fmt_fuzz.py`
runs 10,000.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.parse import parse_text
from archc.tools.fmt import FormatChangedMeaning, FormatRefused, format_text

ROOT = Path(__file__).resolve().parent.parent
# small and middling specs: each mutant is parsed three times
SOURCES = {p.name: p.read_text() for p in sorted((ROOT / "specs").rglob("*.arch"))
           if p.stat().st_size < 6000}
# what mutations insert: layout, comments, line ends, continuation, brackets, operators
PIECES = ["#", "# ", "\r", "\r\n", "\n", "\\\n", " \\\n", "\t", " ", "    ", "(", ")", "[", "]",
          ",", ":", "=", "-", "+", "*", "x", "{", "}", "conv3-8", "relu", "# conv3-8\r", "\u2028",
          "\f", "\v", "\x85", '"', "1", "0"]


def _mutant(text: str, rng: random.Random) -> str:
    """`text` with one to three random edits: insert, delete or replace a piece, or move,
    duplicate or drop a line."""
    for _ in range(rng.randint(1, 3)):
        edit = rng.random()
        at = rng.randrange(len(text) + 1)
        if edit < 0.45:
            text = text[:at] + rng.choice(PIECES) + text[at:]
        elif edit < 0.65:
            text = text[:at] + text[at + rng.randint(1, 4):]
        elif edit < 0.8:
            text = text[:at] + rng.choice(PIECES) + text[at + 1:]
        else:
            lines = text.split("\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if edit < 0.9:
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


def _as_check_reads(text: str, name: str):
    """The IR structure `archc check` gets from `text`, or None if it reports an error."""
    diags = Diagnostics()
    spec = parse_text(text, name, diags)
    return None if spec is None or diags.has_errors else ir.structure(spec)


def _fmt_keeps_meaning(name: str, text: str) -> str:
    """'refused', 'unchanged' or 'formatted'; fails the test if fmt changed the meaning."""
    try:
        out = format_text(text, name)
    except (FormatRefused, FormatChangedMeaning):
        return "refused"
    before = _as_check_reads(text, name)
    assert before is not None, f"fmt formatted a spec that check refuses:\n{text!r}"
    assert _as_check_reads(out, name) == before, (
        f"fmt changed the meaning of\n{text!r}\ninto\n{out!r}")
    return "unchanged" if out == text else "formatted"


def _run(count: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    names = sorted(SOURCES)
    outcomes = {"refused": 0, "unchanged": 0, "formatted": 0}
    for _ in range(count):
        name = rng.choice(names)
        outcomes[_fmt_keeps_meaning(name, _mutant(SOURCES[name], rng))] += 1
    return outcomes


def test_a_lone_cr_in_a_trailing_comment_is_refused_not_turned_into_code():
    text = "network n:\n    input 3x32x32\n    conv3-8  # off:\r conv3-512 conv3-512\n    " \
           "flatten FC-2\n"
    with pytest.raises(FormatRefused) as refused:
        format_text(text, "cr.arch")
    [diagnostic] = refused.value.diagnostics
    assert diagnostic.code == "E001" and diagnostic.span.line == 3
    assert "carriage return" in diagnostic.message


@pytest.mark.parametrize("text", ["network n:\n    input 3x8x8\n    relu\r",
                                  "\r\n# a comment\nnetwork n:\n    input 3x8x8\n    relu\n\r"])
def test_a_lone_cr_at_the_end_is_refused_as_check_refuses_it(text):
    """Found by the 10,000-mutant run: fmt added the final new line before looking for a lone
    CR, so `\\r` at the very end became `\\r\\n`, which check never sees."""
    diags = Diagnostics()
    assert parse_text(text, "end.arch", diags) is None and diags.has_errors
    with pytest.raises(FormatRefused):
        format_text(text, "end.arch")


def test_a_changed_meaning_is_a_typed_refusal(monkeypatch):
    """Should the printer ever drop a token, fmt raises `FormatChangedMeaning` (the CLI
    prints one line and writes nothing), not an AssertionError."""
    from archc.tools import fmt

    real = fmt._Printer.print
    monkeypatch.setattr(fmt._Printer, "print",
                        lambda self: real(self).replace("FC-2", "FC-3"))
    with pytest.raises(FormatChangedMeaning, match="would change the meaning of x.arch"):
        format_text("network n:\n    input 3x8x8\n    flatten FC-2\n", "x.arch")


def test_fmt_never_changes_meaning_on_300_mutated_specs():
    outcomes = _run(300, seed=24)
    assert outcomes["formatted"] + outcomes["unchanged"] > 30  # the fuzz reaches the printer
    assert outcomes["refused"] > 30  # and the refusals


@pytest.mark.large
def test_fmt_never_changes_meaning_on_10000_mutated_specs():
    outcomes = _run(10_000, seed=2024)
    assert outcomes["formatted"] + outcomes["unchanged"] > 1000
