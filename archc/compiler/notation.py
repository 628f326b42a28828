"""The papers' notation: `conv3-64`, `maxpool3-2`, `FC-{n}`, `conv1x7-192`, `soft-max`.

One module knows how a layer kind is written as one word, and every reader and writer of
.arch text asks it:

- the parser expands a word into a kind and its arguments (`read_word`; parse.py turns each
  part's text into an expression and reports what is wrong, with `sugar_hint`);
- the unparser contracts a layer's arguments back into a word (`sugar_taken`, `join_word`)
  and keeps the kind's spelling as the source wrote it (`written_kind`);
- the highlighter (and its TextMate grammar) matches the same words (`kind_pattern`, and the
  token patterns below, which grammar.lark's terminals spell with capturing groups:
  tests/test_notation.py keeps the two the same);
- the language server finds the word, label, string or `table[variant]` under the cursor
  with those token patterns, and the YAML schema builds its looser word from `loose_word`.

A kind's sugar is its registry row's `sugar = (head, dashes)`: the parameter the digits
right after the name give (`conv3` → kernel), then those the `-` parts give in order
(`-64` → out). Names ignore case, `-` and `_` (`Max-Pool`, `max_pool`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from archc.layers import KINDS, LayerKind, lookup, normalize

BRACED = r"\{[^{}\n]*\}"  # an `{expression}` inside a word, a shape or a repeat
DIM = rf"(?:\d+|{BRACED})"  # a number or an `{expression}`: `64`, `{c*4}`
START = r"[A-Za-z_]"  # the first character of a name, a word or a label
NAME = rf"{START}\w*"


def loose_word(chars: str = r"[\w-]", braced: str = BRACED) -> str:
    """A regex for a name's first character and then any of `chars` and `{expression}`s in
    any order: the name of a label (`stage-{i}`), and, with `.` among `chars`, the looser
    word an editor matches where it cannot follow the dash structure of `WORD` (the YAML
    schema, whose `braced` lets an expression span lines)."""
    return rf"{START}(?:{chars}|{braced})*"


WORD = rf"{START}(?:\w|{BRACED})*(?:-(?:\w|\.|{BRACED})+)*"  # `conv3-64`, `FC-{n}`
# a label may be a dotted path, `convs.{i}:`: the module's place in the state_dict
LABEL_NAME = rf"{loose_word()}(?:\.(?:[\w-]|{BRACED})+)*"
LABEL = rf"{LABEL_NAME}:"  # `conv1:`, `stage{i}:`, `convs.0:`
REPEAT = rf"[x×]{DIM}(?![\w{{-])"  # `x3`, `x{n}`
TABLE_REF = rf"{NAME}\[[^\[\]\n]*\]"  # `vgg[D]`
REF = rf"@{NAME}"  # `@skip`: a named tensor
FLOAT = r"(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+"
STRING = r"\"[^\"\n]*\"|'[^'\n]*'"


def shape(space: str = r"\s*") -> str:
    """A shape such as `3x224x224` or `3 x {size} x {size}`, with `space` around each `x`."""
    return rf"{DIM}(?:{space}[x×]{space}{DIM})+"


# the digits after a kind's name (`conv3`, `maxpool{k}`), or an (h, w) pair (`conv1x7`), not
# after `_` (a block called conv_1x1 is no conv)
_HEAD_DIGITS = re.compile(rf"([A-Za-z_][A-Za-z_-]*?)(\d+|{BRACED})")
_HEAD_PAIR = re.compile(r"([A-Za-z_][A-Za-z_-]*?[A-Za-z])(\d+x\d+)")
_DIMS = re.compile(rf"\d+|{BRACED}")


@dataclass(frozen=True)
class Part:
    """One argument written inside a word: the parameter it gives, its text, and where that
    text stands in the word (characters [start, end))."""

    param: str
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Reading:
    """A word read as paper notation: the kind it names and the arguments it writes."""

    kind: LayerKind
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class TooManyParts:
    """A word naming `kind` with more `-` parts than its notation takes; the first extra
    part starts at `at`. `head` is the part the digits after the name write, if any."""

    kind: LayerKind
    at: int
    head: Part | None = None


def split_dashes(text: str) -> list[tuple[str, int]]:
    """Split a word at dashes that are not inside braces, keeping each part's offset."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "-" and depth == 0:
            parts.append((text[start:i], start))
            start = i + 1
    parts.append((text[start:], start))
    return parts


def read_word(text: str) -> Reading | TooManyParts | None:
    """How a word reads as paper notation: `conv3-64` → conv with kernel `3` and out `64`.

    The longest dash-joined head that names a kind wins (`max-pool3-2` is maxpool, `soft-max`
    is softmax). None when no head names a kind (a block call or an unknown name); the parts'
    texts are not checked here (the parser turns each into an expression)."""
    pieces = split_dashes(text)
    for cut in range(len(pieces), 0, -1):
        head = "-".join(piece for piece, _ in pieces[:cut])
        rest = pieces[cut:]
        kind = lookup(head) if "{" not in head else None
        head_part: list[Part] = []
        if kind is None:
            m = _HEAD_DIGITS.fullmatch(head) or _HEAD_PAIR.fullmatch(head)
            if not m:
                continue
            kind = lookup(m.group(1))
            if kind is None or kind.sugar[0] is None:
                continue
            head_part = [Part(kind.sugar[0], m.group(2), m.start(2), len(head))]
        dashes = kind.sugar[1]
        if len(rest) > len(dashes):
            if cut == 1:
                return TooManyParts(kind, rest[len(dashes)][1], *head_part)
            continue
        parts = [Part(param, piece, at, at + len(piece))
                 for (piece, at), param in zip(rest, dashes)]
        return Reading(kind, (*head_part, *parts))
    return None


def dims(text: str) -> list[tuple[str, int, int]]:
    """The dimensions of a shape (`3x{s}x{s}`) or the count of a repeat: each part's text,
    start and end."""
    return [(m.group(), m.start(), m.end()) for m in _DIMS.finditer(text)]


def short_form(kind: LayerKind) -> str:
    """A kind's notation with its parameters named: `convK-OUT`, `maxpoolK-STRIDE`."""
    head, dashes = kind.sugar
    return kind.name + ("K" if head else "") + "".join(f"-{d.upper()}" for d in dashes)


def sugar_hint(kind: LayerKind) -> str:
    """The hint of a word with more parts than its kind's notation takes."""
    return f"the short form is `{short_form(kind)}`; give other parameters in parentheses"


def sugar_taken(kind: LayerKind, names: Sequence[str | None]) -> int:
    """How many of a layer's leading arguments (named `names`, in order) its word can write:
    those that come first and in the notation's order, so that reading the word back gives
    exactly these arguments in this order. The dash parts follow the head's digits, never
    stand alone: a kind with a head takes none when its first argument is not the head."""
    head, dashes = kind.sugar
    order = ([head] if head else []) + list(dashes)
    taken = 0
    for param, name in zip(order, names):
        if name != param:
            break
        taken += 1
    return taken


def join_word(name: str, kind: LayerKind, parts: Sequence[str]) -> str:
    """The word for kind `kind` spelled `name` with these argument texts (`sugar_taken` of
    them): `join_word("conv", conv, ["3", "64"])` → `conv3-64`."""
    rest = list(parts)
    word = name + (rest.pop(0) if kind.sugar[0] and rest else "")
    return word + "".join("-" + p for p in rest)


def written_kind(word: str | None, callee: str) -> str | None:
    """The kind name at the head of `word` when it spells `callee` otherwise: `FC` in
    `FC-4096` for fc, `adaptive-avgpool` for adaptiveavgpool; None when it is the same."""
    if word is None:
        return None
    for end in range(len(word), 0, -1):
        head, rest = word[:end], word[end:]
        if head[-1] in "-_" or (rest and not (rest[0].isdigit() or rest[0] in "-{")):
            continue
        kind = lookup(head)
        if kind is not None and kind.name == callee:
            return None if head == callee else head
    return None


def kind_keys(kinds: Iterable[LayerKind] = KINDS) -> list[str]:
    """The lookup keys of the kinds' names and aliases (`maxpool`, `fc`), longest first (a
    regex alternation takes the first that matches), ties alphabetically (so generated
    files do not depend on a set's order)."""
    keys = {normalize(n) for k in kinds for n in (k.name, *k.aliases)}
    return sorted(keys, key=lambda k: (-len(k), k))


def spelled(key: str, letter: Callable[[str], str] = str) -> str:
    """A regex for the ways a key may be written: the parser ignores `-` and `_` between its
    letters (`max-pool`, `max_pool`); `letter` writes each character (for case)."""
    return "[-_]?".join(letter(c) for c in key)


def notation_suffix(braced: str = BRACED) -> str:
    """A regex for what paper notation adds after a kind's name: `3`, `-64`, `-{c*2}`."""
    return rf"(?:\d+|{braced})*(?:-(?:[\w.]|{braced})+)*"


@lru_cache(maxsize=None)
def kind_pattern() -> str:
    """A regex for a word that names a layer kind, paper notation included (`conv3-64`)."""
    names = "|".join(spelled(key) for key in kind_keys())
    return rf"(?i:{names}){notation_suffix()}(?![\w{{.-])"
