"""The imported spec's text: the unparser's output, with units joined on one line.

The unparser writes one item per line. A person writes a unit per line:
`conv1: conv11-96(stride=4, padding=0)  relu  LRN  maxpool3-2`, a labelled layer followed
by the unlabelled layers that go with it. Joining and wrapping lines only change the
layout: the result is parsed again and must give the same IR (a difference is a bug).
"""

from __future__ import annotations

from archc.compiler import document, ir
from archc.compiler.document import INDENT, WIDTH, indentation, join_within
from archc.compiler.unparse import unparse
from archc.layers import MERGES

MERGE_HEADS = tuple(f"{name}:" for name in MERGES)  # `concat:`, `add-into:`, ...
UNIT_HEADS = {"conv", "fc"}  # a layer with weights starts a new line


def spec_text(spec: ir.SpecFile) -> str:
    """The spec as .arch text, one unit per line where that keeps the same IR."""
    text = unparse(spec)
    joined = wrap_long_lines(join_units(text))
    if not _same_ir(joined, text):  # pragma: no cover - layout must never change the network
        raise AssertionError("bug: joining the imported spec's lines changed its IR")
    return joined


def join_units(text: str) -> str:
    """Join each unlabelled one-item line to the line before it, inside sequence bodies.

    Lines that are branches of a merge (the body of `concat:` / `add:`) stay apart: there
    each line is a branch.
    """
    out: list[str] = []
    branch_indents: list[int] = []  # indents whose lines are merge branches
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(indentation(line))
        branch_indents = [i for i in branch_indents if i <= indent]
        if (
            out
            and (_joinable(stripped, out[-1]) or _is_call(stripped) and _only_calls(out[-1]))
            and indent not in branch_indents
            and _joinable_target(out[-1], indent)
            and document.fits(out[-1] + "  " + stripped)
        ):
            out[-1] += "  " + stripped
            continue
        if stripped.endswith(MERGE_HEADS):
            branch_indents.append(indent + len(INDENT))
        out.append(line)
    return document.text(out)


def wrap_long_lines(text: str) -> str:
    """Break lines longer than the width limit between units (a weighted or labelled layer
    and what follows it), continuing them with `\\`."""
    out: list[str] = []
    for line in text.splitlines():
        if document.fits(line):
            out.append(line)
            continue
        pad = indentation(line)
        out += join_within(_units(line.strip().split("  ")), pad, pad + INDENT, end=" \\",
                           width=WIDTH)
    return document.text(out)


def _units(pieces: list[str]) -> list[str]:
    """Items joined into units: each starts at a label or a layer with weights."""
    units: list[str] = []
    for piece in pieces:
        words = piece.split("(")[0].split() or [piece]
        word = words[1] if words[0].endswith(":") and len(words) > 1 else words[0]
        starts = _kind(word) in UNIT_HEADS or _kind(word) is None  # weights, or a block call
        if units and not starts:
            units[-1] += "  " + piece
        else:
            units.append(piece)
    return units


def _joinable(stripped: str, previous: str) -> bool:
    """A single layer without weights or a body: `relu`, `maxpool3-2`, `LRN(...)`; or one
    with a label after a line of layers, as a person writes `conv0: conv7-64(stride=2)
    norm0: bn  relu0: relu` (a labelled layer after a group or a block call keeps its line).
    """
    if not stripped or stripped.endswith(":") or stripped.startswith(("input ", "#")):
        return False
    head = stripped.split("(")[0].split()
    labelled = len(head) == 2 and head[0].endswith(":")  # `norm0: bn`
    first = head[-1] if labelled else head[0]
    return (
        not first.endswith(":")
        and (len(head) == 1 or labelled)
        and _kind(first) not in UNIT_HEADS
        and _kind(first) is not None  # a block call is a unit of its own
        and (not labelled or _starts_with_layer(previous))
    )


def _starts_with_layer(line: str) -> bool:
    """The line's first item is a layer, maybe labelled: not a group or a block call."""
    words = line.strip().split("(")[0].split()
    first = words[1] if len(words) > 1 and words[0].endswith(":") else words[0]
    return _kind(first) is not None


def _is_call(stripped: str) -> bool:
    """An unlabelled block call, maybe repeated: `residual(64) x2`."""
    words = stripped.split("(")[0].split()
    return len(words) == 1 and not words[0].endswith(":") and _kind(words[0]) is None \
        and not stripped.startswith(("[", "input ", "#"))


def _only_calls(line: str) -> bool:
    """A line of block calls only (the first may be labelled): a stage of a ResNet."""
    units = line.strip().split("  ")
    first = units[0].split(": ", 1)[-1]
    return all(_is_call(u) for u in [first, *units[1:]])


def _kind(word: str) -> str | None:
    from archc.compiler.parse import notation_kind

    return notation_kind(word)


def _joinable_target(previous: str, indent: int) -> bool:
    """The previous line is an item line of the same body."""
    prev_indent = len(previous) - len(previous.lstrip())
    stripped = previous.strip()
    return (
        prev_indent == indent
        and not stripped.endswith(":")
        and not stripped.startswith(("input ", "network ", "block ", "#"))
    )


def _same_ir(new: str, old: str) -> bool:
    from archc.compiler.diagnostics import Diagnostics
    from archc.compiler.parse import parse_text

    a, b = parse_text(new, "<a>", Diagnostics()), parse_text(old, "<b>", Diagnostics())
    return a is not None and b is not None and ir.structure(a) == ir.structure(b)
